"""The root entry points as a user runs them: fresh interpreters, real Hydra, real files."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from nnlab import cli
from nnlab.core import ConfigError, DataUnavailableError, Diverged
from nnlab.core.results_file import read_results

from .conftest import ROOT, run_script

FAST = ("trainer.max_epochs=2", "callbacks.progress_bar=null")


def only_run_dir(logs: Path) -> Path:
    (run,) = (logs / "train" / "runs").iterdir()
    return run


def test_cfg_job_prints_the_config_without_training(tmp_path):
    proc = run_script("train.py", "--cfg", "job", "model=mlp", "init=kaiming", cwd=tmp_path)
    assert (
        "name: kaiming_normal" in proc.stdout and "_target_: nnlab.nn.networks.MLP" in proc.stdout
    )
    assert not (tmp_path / "logs").exists()


def test_train_writes_results_and_eval_reproduces_the_test_metrics(tmp_path):
    proc = run_script("train.py", *FAST, cwd=tmp_path)
    console = proc.stdout + proc.stderr
    # Lightning's lines once each (config checks build a Trainer too), its advertisement never.
    assert console.count("GPU available:") == 1 and "litlogger" not in console
    run = only_run_dir(tmp_path / "logs")
    results = json.loads((run / "results.json").read_text())
    assert Path(results["ckpt_path"]).is_file()
    assert (
        results["optimized_metric"] == "val/acc" and results["value"] == results["val"]["val/acc"]
    )
    assert (run / ".hydra" / "config.yaml").is_file()

    run_script("eval.py", f"ckpt_path={results['ckpt_path']}", cwd=tmp_path)
    (eval_run,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    evaluated = json.loads((eval_run / "results.json").read_text())
    assert evaluated["test"] == pytest.approx(results["test"], abs=1e-6)


def test_invalid_combination_fails_with_a_clear_message(tmp_path):
    proc = run_script("train.py", "data=digits", "loss=mse", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "loss=mse cannot train a multiclass task" in proc.stderr
    assert "valid losses for multiclass: auto, cross_entropy" in proc.stderr
    assert not list((tmp_path / "logs").rglob("results.json"))


def test_eval_needs_an_existing_checkpoint(tmp_path):
    proc = run_script("eval.py", "ckpt_path=missing.ckpt", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "ckpt_path=missing.ckpt: no such file" in proc.stderr


def test_runs_started_together_get_their_own_folders(tmp_path):
    env_cmd = [sys.executable, str(ROOT / "train.py"), "debug=fdr", "logger=none"]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            env_cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "results.json").is_file() for r in runs)


def test_multirun_sweeps_activation_and_init(tmp_path):
    run_script(
        "train.py",
        "-m",
        "activation=tanh,relu",
        "init=xavier_normal,kaiming_normal",
        "debug=fdr",
        "logger=none",
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    combos = {(r["choices"]["activation"], r["choices"]["init"]) for r in results}
    assert combos == {(a, i) for a in ("tanh", "relu") for i in ("xavier_normal", "kaiming_normal")}


@pytest.mark.slow
def test_default_training_reaches_95_percent_on_digits(tmp_path):
    run_script("train.py", cwd=tmp_path)
    results = json.loads((only_run_dir(tmp_path / "logs") / "results.json").read_text())
    assert results["choices"]["data"] == "digits" and results["choices"]["model"] == "mlp"
    assert results["test"]["test/acc"] >= 0.95


@pytest.mark.slow
def test_seed_null_is_drawn_once_and_shared_by_ddp_ranks(tmp_path):
    """Two real DDP processes (gloo on CPU): the second, started by Lightning, uses the seed the
    first drew, so both split and shuffle the data alike."""
    args = (
        "trainer=ddp_cpu",
        "seed=null",
        "trainer.max_epochs=1",
        "logger=none",
        "diagnostics=none",
    )
    run_script("train.py", *args, cwd=tmp_path)
    run = only_run_dir(tmp_path / "logs")
    logs = "".join(log.read_text() for log in run.glob("*.log"))  # train_ddp_process_1.log too
    drawn = re.findall(r"this run drew seed=(\d+)", logs)
    results = json.loads((run / "results.json").read_text())
    assert len(drawn) == 2 and {int(s) for s in drawn} == {results["seed"]}


# nnlab.cli.run's failure semantics, in-process (no torch import per test): a single run ends
# with one error line and leaves no empty folder; a multirun job records its failure and goes on.


def hydra_only_folder(folder: Path) -> Path:
    """A run folder as Hydra leaves it before the job starts: .hydra/ and the log."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("[]\n")
    (folder / "train.log").write_text("")
    return folder


def raising(error: BaseException):
    def main(cfg):
        raise error

    return main


@pytest.mark.parametrize(
    "error, line",
    [
        (ConfigError("loss=mse cannot train"), "error: loss=mse cannot train"),
        (DataUnavailableError("no files"), "error: no files"),
        (FileNotFoundError("ckpt_path=x: no such file"), "error: ckpt_path=x: no such file"),
    ],
)
def test_single_run_mistake_is_one_line_and_leaves_no_folder(make_cfg, error, line):
    cfg = make_cfg()
    folder = hydra_only_folder(Path(cfg.paths.output_dir))
    with pytest.raises(SystemExit) as exit_:
        cli.run(raising(error), cfg)
    assert exit_.value.code == line and not folder.exists()


def test_single_run_refused_by_train_leaves_nothing(make_cfg):
    from nnlab.train import train

    cfg = make_cfg("data=xor", "loss=mse")
    folder = hydra_only_folder(Path(cfg.paths.output_dir))
    with pytest.raises(SystemExit, match=r"^error: loss=mse cannot train a binary task"):
        cli.run(train, cfg)
    assert not folder.exists()


def test_single_run_keeps_a_folder_that_holds_more_than_hydra_files(make_cfg):
    cfg = make_cfg()
    folder = hydra_only_folder(Path(cfg.paths.output_dir))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"an earlier run's")
    with pytest.raises(SystemExit):
        cli.run(raising(ConfigError("late")), cfg)
    assert (folder / "checkpoints" / "last.ckpt").read_bytes() == b"an earlier run's"


def test_single_run_removes_a_folder_whose_extra_folders_are_empty(make_cfg):
    cfg = make_cfg()
    folder = hydra_only_folder(Path(cfg.paths.output_dir))
    (folder / "checkpoints").mkdir()  # a run that failed before writing a checkpoint
    with pytest.raises(SystemExit):
        cli.run(raising(ConfigError("late")), cfg)
    assert not folder.exists()


def test_single_run_missing_value_and_wrapped_config_error(make_cfg):
    cfg = make_cfg()
    missing = OmegaConf.create({"ckpt_path": "???"})
    with pytest.raises(SystemExit) as exit_:
        cli.run(lambda c: missing.ckpt_path, cfg)
    assert exit_.value.code == "error: ckpt_path must be set, e.g. ckpt_path=..."
    wrapped = InstantiationException("Error in call to target")
    wrapped.__cause__ = ConfigError("bad width")
    with pytest.raises(SystemExit) as exit_:
        cli.run(raising(wrapped), cfg)
    assert exit_.value.code == "error: bad width"


def test_single_run_diverged_keeps_its_folder_and_exits(make_cfg):
    cfg = make_cfg()
    folder = hydra_only_folder(Path(cfg.paths.output_dir))
    with pytest.raises(SystemExit) as exit_:
        cli.run(raising(Diverged("loss is nan at epoch 3")), cfg)
    assert exit_.value.code == "error: loss is nan at epoch 3" and folder.is_dir()


def test_single_run_bug_keeps_its_traceback(make_cfg):
    with pytest.raises(ZeroDivisionError):
        cli.run(raising(ZeroDivisionError("bug")), make_cfg())


@pytest.fixture
def job_cfg(make_cfg, tmp_path):
    """A multirun job's config: Hydra in MULTIRUN mode, the job's folder inside the sweep's."""

    def make(*overrides: str) -> DictConfig:
        return make_cfg("hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path}", *overrides)

    return make


def test_multirun_job_refused_by_train_is_a_failed_row_with_the_worst_value(job_cfg):
    from nnlab.train import train

    cfg = job_cfg("data=xor", "loss=mse")
    assert cli.run(train, cfg) is None  # refused before the task, so its metric, was known
    results = read_results(Path(cfg.paths.output_dir))
    assert results["status"] == "failed" and results["value"] is None
    assert results["error"].startswith("loss=mse cannot train a binary task")
    assert results["overrides"] == ["data=xor", "loss=mse"]
    assert results["choices"]["data"] == "xor" and results["wall_time_s"] >= 0


@pytest.mark.parametrize(
    "overrides, worst",
    [
        (("optimized_mode=max",), -math.inf),
        (("optimized_metric=val/acc",), -math.inf),
        (("optimized_metric=val/loss",), math.inf),
        (("+hydra.sweeper.direction=maximize",), -math.inf),
        (("+hydra.sweeper.direction=[minimize,maximize]",), math.inf),
        ((), None),
    ],
)
def test_multirun_job_worst_value_follows_the_mode(job_cfg, overrides, worst):
    cfg = job_cfg(*overrides)
    assert cli.run(raising(ConfigError("no")), cfg) == worst
    written = read_results(Path(cfg.paths.output_dir))["value"]
    assert written == (None if worst is None else str(worst))


def test_multirun_job_bug_is_logged_with_its_traceback_and_the_sweep_goes_on(job_cfg, caplog):
    cfg = job_cfg("optimized_mode=max")
    with caplog.at_level(logging.ERROR, logger="nnlab.cli"):
        assert cli.run(raising(ZeroDivisionError("bug\nsecond line")), cfg) == -math.inf
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    results = read_results(Path(cfg.paths.output_dir))
    assert (
        results["status"] == "failed" and results["error"] == "ZeroDivisionError: bug second line"
    )


def test_multirun_job_diverged_keeps_trains_results_and_returns_the_worst(job_cfg):
    cfg = job_cfg("optimized_mode=min")
    folder = Path(cfg.paths.output_dir)

    def diverge(cfg):
        folder.mkdir(parents=True, exist_ok=True)  # made for the job's lock already
        (folder / "results.json").write_text('{"status": "diverged", "value": "inf"}')
        raise Diverged("loss is nan")

    assert cli.run(diverge, cfg) == math.inf
    assert read_results(folder) == {"status": "diverged", "value": "inf"}


def write_attempt(folder: Path, status: str, overrides: list[str]) -> Path:
    """An earlier attempt's files in a job folder: a checkpoint and results.json."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "best.ckpt").write_text("weights")
    results = {"status": status, "value": 0.75, "overrides": overrides}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_multirun_job_done_earlier_with_the_same_overrides_is_skipped(job_cfg, caplog):
    cfg = job_cfg("seed=1")
    folder = write_attempt(Path(cfg.paths.output_dir), "done", ["seed=1"])
    with caplog.at_level(logging.INFO, logger="nnlab.cli"):
        assert cli.run(raising(AssertionError("must not run")), cfg) == 0.75
    assert "skipped: done in an earlier run" in caplog.text
    assert (folder / "checkpoints" / "best.ckpt").read_text() == "weights"


@pytest.mark.parametrize(
    "status, overrides, logged",
    [
        ("failed", ["seed=1"], "rerunning this job: failed in an earlier run"),
        # Another command's job in the same sweep folder: replaced, not silently.
        ("done", ["seed=2"], "held another job's results (seed=2): replacing them"),
    ],
)
def test_multirun_job_reruns_after_clearing_the_earlier_attempt(
    job_cfg, caplog, status, overrides, logged
):
    cfg = job_cfg("seed=1")
    folder = write_attempt(Path(cfg.paths.output_dir), status, overrides)
    (folder / ".hydra").mkdir()
    (folder / "train.log").write_text("earlier attempt\n")

    def main(cfg):
        return sorted(p.name for p in folder.iterdir())

    with caplog.at_level(logging.INFO, logger="nnlab.cli"):
        # checkpoints, results.json: gone; the job's lock held while it runs
        assert cli.run(main, cfg) == [".hydra", ".nnlab.lock", "train.log"]
    assert not (folder / ".nnlab.lock").exists()  # released when the job ended
    assert logged in caplog.text
    assert f"earlier attempt's files from {folder}: checkpoints, results.json" in caplog.text
    assert (folder / "train.log").read_text() == "earlier attempt\n"


def test_multirun_job_folder_outside_the_sweep_folder_is_never_cleared(make_cfg, tmp_path):
    """A hydra.sweep.subdir that points elsewhere (or at the sweep folder itself): nothing is
    removed there."""
    cfg = make_cfg("hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path / 'elsewhere'}")
    folder = write_attempt(Path(cfg.paths.output_dir), "failed", [])
    assert cli.run(lambda cfg: 0.5, cfg) == 0.5
    assert (folder / "checkpoints" / "best.ckpt").is_file()
