"""One run per folder, names that stay names, results.json like every other file: the run
folder's lock (nnlab.core.paths.lock_folder) in-process and between real train.py processes,
the refusal of task_name and other name keys that are paths, and results.json's permissions."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from nnlab.core import ConfigError
from nnlab.core.paths import LOCK, check_name, lock_folder, process_alive, unlock_folder
from nnlab.core.results_file import read_results, write_results_file

from .conftest import ROOT, run_script

QUICK = ("data=xor", "logger=none", "diagnostics=none", "callbacks.progress_bar=null")


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def test_a_folder_is_locked_with_the_pid_and_released(tmp_path):
    folder = tmp_path / "run"
    lock_folder(folder)
    assert (folder / LOCK).read_text() == f"{os.getpid()}\n"
    lock_folder(folder)  # reentrant in one process: the callback, then nnlab.cli
    unlock_folder(folder)
    assert (folder / LOCK).exists()
    unlock_folder(folder)
    assert not (folder / LOCK).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    pid = dead_pid()
    (folder / LOCK).write_text(f"{pid}\n")
    assert not process_alive(pid)
    with caplog.at_level(logging.WARNING, logger="nnlab.core.paths"):
        lock_folder(folder)
    try:
        assert f"taking over the lock left by pid {pid}" in caplog.text
        assert (folder / LOCK).read_text() == f"{os.getpid()}\n"
    finally:
        unlock_folder(folder)


def test_a_lock_held_by_a_live_process_is_refused_naming_folder_and_pid(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nnlab.core.paths import lock_folder;"
         f"lock_folder({str(folder)!r}); print('locked', flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError) as refused:
            lock_folder(folder)
        assert str(refused.value) == (
            f"hydra.run.dir={folder}: another run (pid {holder.pid}) is using this folder; "
            "wait for it to end, or pick another folder"
        )
        assert (folder / LOCK).read_text() == f"{holder.pid}\n"  # left as it was
    finally:
        holder.kill()
        holder.wait()
    lock_folder(folder)  # its holder is gone: the system dropped its flock
    unlock_folder(folder)


def test_ddp_ranks_after_the_first_take_no_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    lock_folder(tmp_path / "run")
    assert not (tmp_path / "run" / LOCK).exists()


@pytest.mark.parametrize(
    "value", ["", "../../../escaped", "/abs", "a/b", "a\\b", "..", ".", "x..y"], ids=repr
)
def test_a_name_key_is_a_name_not_a_path(value):
    with pytest.raises(ConfigError, match=r"task_name=.* is not a name: it names a folder"):
        check_name("task_name", value)


@pytest.mark.parametrize("value", ["train", "digits_mlp", "run-2.v1", "études"])
def test_plain_names_pass(value):
    check_name("task_name", value)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_results_json_follows_the_umask_like_every_other_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_results_file(tmp_path, {"status": "done"})
        other = tmp_path / "other.txt"
        other.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == other.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_a_corrupt_results_json_reads_as_none_or_strictly_as_an_error(tmp_path):
    (tmp_path / "results.json").write_text('{"status": "do')
    assert read_results(tmp_path) is None
    with pytest.raises(ValueError, match=r"results\.json is corrupt"):
        read_results(tmp_path, strict=True)
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="a JSON list, not an object"):
        read_results(tmp_path, strict=True)
    assert read_results(tmp_path / "missing", strict=True) is None


def test_a_second_train_py_on_a_running_runs_folder_is_one_error_line(tmp_path):
    """Two train.py with one hydra.run.dir: the second stops before touching anything, with
    the folder and the first's pid; the first finishes as if alone (no best-v1.ckpt); then a
    resume in that folder runs (the lock was released)."""
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *QUICK, "trainer.max_epochs=40",
         f"hydra.run.dir={run}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "config_tree.txt").exists():  # started, its files written
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        hydra_files = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
        second = run_script(
            "train.py", *QUICK, "trainer.max_epochs=1", "seed=7", f"hydra.run.dir={run}",
            cwd=tmp_path, check=False,
        )  # fmt: skip
        assert second.returncode == 1 and "Traceback" not in second.stdout + second.stderr
        assert [line for line in second.stderr.splitlines() if line.startswith("error:")] == [
            f"error: hydra.run.dir={run}: another run (pid {first.pid}) is using this folder; "
            "wait for it to end, or pick another folder"
        ]
        assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == hydra_files
        assert first.wait(timeout=300) == 0
    finally:
        first.kill()
        first.wait()
    assert "seed=7" not in (run / "train.log").read_text()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not (run / LOCK).exists()
    assert json.loads((run / "results.json").read_text())["epochs"] == 40
    resumed = run_script(
        "train.py", *QUICK, "trainer.max_epochs=41", "ckpt_path=last", f"hydra.run.dir={run}",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 41
