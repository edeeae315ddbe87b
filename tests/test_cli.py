"""The root entry points as a user runs them: fresh interpreters, real Hydra, real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
