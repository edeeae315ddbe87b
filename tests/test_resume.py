"""A resumed fit equals an uninterrupted one: the same best checkpoint, hence the same val and
test metrics, whether it resumes in its old run folder or a new one, after a clean stop or a
SIGKILL; checkpoint files are written atomically, and a kill leaves no partial file anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from nnlab.checkpoints import (
    copy_atomically,
    moved_state,
    remove_leftovers,
    resolve_last_checkpoint,
    save_atomically,
    write_atomically,
)
from nnlab.core import ConfigError
from nnlab.train import train

from .conftest import ROOT

# A deterministic CPU run whose val/acc peaks at epoch BEST of EPOCHS (0.9722), not reached
# again: an epoch after a kill that came after BEST must not count as the best by itself.
RUN = (
    "data=digits",
    "model.hidden_sizes=[32]",
    "optimizer.lr=0.02",
    "logger=none",
    "diagnostics=none",
    "speed.write_checkpoints_every_s=0",  # each checkpoint on disk when taken: a kill loses none
)
EPOCHS, BEST = 10, 6


def outcome(folder: str | Path) -> tuple[dict, dict, int]:
    """A run's val and test metrics (results.json) and its best checkpoint's epoch."""
    results = json.loads((Path(folder) / "results.json").read_text())
    epoch = torch.load(results["ckpt_path"], weights_only=True, mmap=True)["epoch"]
    return results["val"], results["test"], epoch


def epoch_of(path: str | Path) -> int:
    return torch.load(path, weights_only=True, mmap=True)["epoch"]


@pytest.mark.slow
def test_resumed_in_a_new_or_its_own_folder_equals_an_uninterrupted_run(make_cfg, recwarn):
    straight = make_cfg(*RUN, f"trainer.max_epochs={EPOCHS}")
    train(straight)
    assert outcome(straight.paths.output_dir)[2] == BEST
    # Stopped after epoch 7: the best so far, epoch 6, came before; epochs 8 and 9 are worse.
    first = make_cfg(*RUN, "trainer.max_epochs=8")
    train(first)
    old = Path(first.paths.output_dir) / "checkpoints"
    assert (epoch_of(old / "best.ckpt"), epoch_of(old / "last.ckpt")) == (BEST, 7)
    resumed = f"ckpt_path={old / 'last.ckpt'}"

    new = make_cfg(*RUN, f"trainer.max_epochs={EPOCHS}", resumed)
    train(new)
    assert outcome(new.paths.output_dir) == outcome(straight.paths.output_dir)
    results = json.loads((Path(new.paths.output_dir) / "results.json").read_text())
    assert Path(results["ckpt_path"]).parent == Path(new.paths.output_dir) / "checkpoints"
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]
    assert epoch_of(old / "last.ckpt") == 7  # the old folder is left as it was

    own = make_cfg(*RUN, f"trainer.max_epochs={EPOCHS}", resumed)
    with open_dict(own):
        own.paths.output_dir = first.paths.output_dir
    train(own)
    assert outcome(own.paths.output_dir) == outcome(straight.paths.output_dir)


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-temp", "named-temp"])
def test_a_file_is_never_seen_half_written(tmp_path, monkeypatch, unnamed):
    if not unnamed:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    path = tmp_path / "best.ckpt"
    path.write_bytes(b"old")
    seen = []

    def write(file) -> None:
        file.write(b"new, half")
        seen.append(sorted(os.listdir(tmp_path)))
        file.write(b" and the rest")

    write_atomically(str(path), write)
    assert path.read_bytes() == b"new, half and the rest"
    # While writing, the old file is whole; the new one has no name yet (or a temporary one).
    temp = [] if unnamed else [f".best.ckpt.{os.getpid()}.tmp"]
    assert seen == [sorted(["best.ckpt", *temp])]

    def fail(file) -> None:
        file.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(str(path), fail)
    assert os.listdir(tmp_path) == ["best.ckpt"] and path.read_bytes() == b"new, half and the rest"
    save_atomically({"epoch": 3}, str(tmp_path / "sub" / "last.ckpt"))
    copy_atomically(str(tmp_path / "sub" / "last.ckpt"), str(tmp_path / "copy.ckpt"))
    assert torch.load(tmp_path / "copy.ckpt", weights_only=True) == {"epoch": 3}
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "copy.ckpt", "sub"]


def test_only_leftovers_of_checkpoint_writes_are_removed(tmp_path):
    names = [".best.ckpt.12.tmp", ".last.ckpt.345.tmp", "best.ckpt", ".x.tmp", "y.1.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert sorted(remove_leftovers(tmp_path)) == [".best.ckpt.12.tmp", ".last.ckpt.345.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".x.tmp", "best.ckpt", "y.1.tmp"]
    assert remove_leftovers(tmp_path / "missing") == []


def test_ckpt_path_last_is_this_folders_last_checkpoint_else_the_latest_runs(tmp_path):
    runs = tmp_path / "logs" / "train" / "runs"

    def cfg(output_dir: Path, ckpt_path: str | None = "last"):
        paths = {"output_dir": str(output_dir), "log_dir": str(tmp_path / "logs")}
        return OmegaConf.create({"ckpt_path": ckpt_path, "task_name": "train", "paths": paths})

    new = cfg(runs / "c")
    with pytest.raises(ConfigError, match=r"ckpt_path=last: there is no checkpoints/last.ckpt"):
        resolve_last_checkpoint(new)
    for i, name in enumerate(["b", "a"]):  # a written last, though named first
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"")
        os.utime(runs / name / "checkpoints" / "last.ckpt", (1e9 + i, 1e9 + i))
    resolve_last_checkpoint(new)
    assert new.ckpt_path == str(runs / "a" / "checkpoints" / "last.ckpt")
    own = cfg(runs / "b")  # hydra.run.dir=<an earlier run>: its own last.ckpt
    resolve_last_checkpoint(own)
    assert own.ckpt_path == str(runs / "b" / "checkpoints" / "last.ckpt")
    for other in (None, "some.ckpt", "hpc"):
        unchanged = cfg(runs / "c", other)
        resolve_last_checkpoint(unchanged)
        assert unchanged.ckpt_path == other


def test_a_moved_state_keeps_the_files_found_and_ranks_what_remains(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    scores = {"e1.ckpt": 0.9, "e2.ckpt": 0.8, "e3.ckpt": 0.7}  # top 3 by val/acc (max)
    state = {
        "dirpath": str(old),
        "best_k_models": {str(old / n): torch.tensor(v) for n, v in scores.items()},
        "best_model_path": str(old / "e1.ckpt"),
        "best_model_score": torch.tensor(0.9),
        "kth_best_model_path": str(old / "e3.ckpt"),
        "kth_value": torch.tensor(0.7),
        "last_model_path": "",
    }
    (old / "e2.ckpt").write_bytes(b"two")  # copied over
    (new / "e3.ckpt").write_bytes(b"three")  # gone from the old folder, found in the new one
    moved, lost = moved_state(state, str(new), "max")
    assert lost == [str(old / "e1.ckpt")]  # the best: gone from both
    assert moved["dirpath"] == str(new) and (new / "e2.ckpt").read_bytes() == b"two"
    assert moved["best_k_models"] == {str(new / "e2.ckpt"): 0.8, str(new / "e3.ckpt"): 0.7}
    assert (moved["best_model_path"], float(moved["best_model_score"])) == (
        str(new / "e2.ckpt"),
        pytest.approx(0.8),
    )
    assert (moved["kth_best_model_path"], moved["kth_value"]) == (str(new / "e3.ckpt"), 0.7 * 1)
    # Another rank names the same files without copying them.
    (new / "e2.ckpt").unlink()
    assert moved_state(state, str(new), "max", copy=False)[0] == moved
    assert not (new / "e2.ckpt").exists()
    # Nothing left: no best, and a k-th value any checkpoint beats.
    (old / "e2.ckpt").unlink(), (new / "e3.ckpt").unlink()
    empty, lost = moved_state(state, str(new), "min")
    assert len(lost) == 3 and empty["best_k_models"] == {}
    assert (empty["best_model_path"], empty["best_model_score"]) == ("", None)
    assert (empty["kth_best_model_path"], float(empty["kth_value"])) == ("", float("inf"))


# Loaded by the killed train.py processes (on their PYTHONPATH), as `+callbacks.pause`.
PAUSE = '''
import io
import os
import time
from pathlib import Path

import lightning as L
import torch


class PauseAt(L.Callback):
    """Waits to be killed as epoch `epoch` starts (the earlier epochs' checkpoints written),
    or with `during_save`, halfway through writing that epoch's first checkpoint file;
    `named_temp` takes unnamed temporary files (O_TMPFILE) away first."""

    def __init__(self, epoch: int, ready: str, during_save: bool, named_temp: bool) -> None:
        self.epoch, self.ready = epoch, ready
        self.during_save, self.named_temp = during_save, named_temp

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != self.epoch:
            return
        if self.named_temp:
            del os.O_TMPFILE
        if not self.during_save:
            self.wait()
        save = torch.save

        def half_then_wait(obj, file, *args, **kwargs):
            whole = io.BytesIO()
            save(obj, whole, *args, **kwargs)
            file.write(whole.getvalue()[: len(whole.getvalue()) // 2])
            file.flush()
            self.wait()

        torch.save = half_then_wait

    def wait(self) -> None:
        Path(self.ready).write_text(str(os.getpid()))
        time.sleep(600)
'''


def killed_run(tmp_path: Path, epoch: int, during_save: bool, named_temp: bool = False) -> Path:
    """Runs train.py (EPOCHS epochs, logs under tmp_path/logs) until PauseAt waits, kills it
    with SIGKILL and returns its run folder; its TMPDIR, tmp_path/tmpdir, must stay empty."""
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "pause.py").write_text(PAUSE)
    (tmp_path / "tmpdir").mkdir()
    ready = tmp_path / "ready"
    pythonpath = os.pathsep.join([str(ROOT / "src"), str(tmp_path / "helpers")])
    env = {**os.environ, "PYTHONPATH": pythonpath, "TMPDIR": str(tmp_path / "tmpdir")}
    pause = {
        "_target_": "pause.PauseAt",
        "epoch": epoch,
        "ready": str(ready),
        "during_save": during_save,
        "named_temp": named_temp,
    }
    args = [f"+callbacks.pause.{key}={value}" for key, value in pause.items()]
    command = [sys.executable, str(ROOT / "train.py"), *RUN, f"trainer.max_epochs={EPOCHS}"]
    command += [*args, f"paths.log_dir={tmp_path / 'logs'}", "~callbacks.progress_bar"]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"train.py ended before being killed:\n{proc.stderr.read()}")
            assert time.monotonic() < deadline, "train.py never reached the epoch to kill at"
            time.sleep(0.05)
        proc.kill()  # SIGKILL (TerminateProcess on Windows): no handler, no cleanup runs
        killed = -signal.SIGKILL if hasattr(signal, "SIGKILL") else 1
        assert proc.wait(timeout=60) == killed
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert sorted(os.listdir(tmp_path / "tmpdir")) == []
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict, int]:
    """The outcome of an uninterrupted train.py run."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    command = [sys.executable, str(ROOT / "train.py"), *RUN, f"trainer.max_epochs={EPOCHS}"]
    command += [f"hydra.run.dir={folder}", "~callbacks.progress_bar"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return outcome(folder)


def resume(make_cfg, folder: Path | None = None):
    """Resumes with ckpt_path=last in a new run folder, or in `folder`; returns its outcome."""
    cfg = make_cfg(*RUN, f"trainer.max_epochs={EPOCHS}", "ckpt_path=last")
    if folder is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(folder)
    train(cfg)
    return outcome(cfg.paths.output_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("epoch", "during_save", "last"),
    [(BEST + 1, False, BEST), (BEST + 2, True, BEST + 1)],
    ids=["killed-after-the-best-epoch", "killed-saving-a-later-epoch"],
)
def test_a_killed_run_resumed_equals_an_uninterrupted_one(
    make_cfg, tmp_path, uninterrupted, epoch, during_save, last
):
    run = killed_run(tmp_path, epoch, during_save)
    checkpoints = run / "checkpoints"
    # Nothing partial anywhere: the file being written had no name yet.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert (epoch_of(checkpoints / "best.ckpt"), epoch_of(checkpoints / "last.ckpt")) == (
        BEST,
        last,
    )
    assert resume(make_cfg) == uninterrupted  # in a new run folder
    assert resume(make_cfg, run) == uninterrupted  # in its own


@pytest.mark.slow
def test_a_partial_file_left_by_a_kill_is_removed_when_the_run_resumes(
    make_cfg, tmp_path, uninterrupted
):
    # Without unnamed files, the file being written when killed is left under a temporary name.
    run = killed_run(tmp_path, BEST + 2, during_save=True, named_temp=True)
    (left,) = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert left.startswith(".last.ckpt.")
    assert resume(make_cfg, run) == uninterrupted
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
