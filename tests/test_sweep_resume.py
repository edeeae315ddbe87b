"""Resuming a sweep: the same command into the same sweep folder (hydra.sweep.dir) skips the
jobs an earlier launch finished and reruns the others from a clean folder (no best-v1.ckpt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, run_script

SWEEP = (
    "-m",
    "loss=auto,mse",  # loss=mse cannot train xor (binary): those two jobs fail
    "activation=relu,tanh",
    "data=xor",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "diagnostics=none",
)


def mtimes(folder: Path) -> dict[str, int]:
    """Every file of a job folder but its log (which each launch appends to), with its mtime."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".log" and ".hydra" not in p.parts
    }


def test_a_rerun_skips_finished_jobs_and_reruns_the_rest_from_a_clean_folder(tmp_path):
    sweep = tmp_path / "grid"
    command = (*SWEEP, f"hydra.sweep.dir={sweep}")
    first = run_script("train.py", *command, cwd=tmp_path, check=False)
    assert first.returncode == 1, first.stderr
    assert first.stdout.splitlines()[-1].startswith("sweep: 4 jobs, 2 failed, 0 diverged")

    # Job 1 (loss=auto activation=tanh) as if the sweep had been stopped while it ran: its
    # checkpoints are there, its results.json is not. The report reads the folder as it is.
    (sweep / "1" / "results.json").unlink()
    assert (sweep / "1" / "checkpoints" / "best.ckpt").is_file()
    report = subprocess.run(
        [sys.executable, "-m", "nnlab.report", str(sweep)],
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0 and report.stdout.strip() == (
        f"sweep: 4 jobs, 2 failed, 0 diverged, 1 without results — report: {sweep}/report.md"
    )
    finished = mtimes(sweep / "0")
    assert "checkpoints/best.ckpt" in finished and "results.json" in finished

    second = run_script("train.py", *command, cwd=tmp_path, check=False)
    assert second.returncode == 1, second.stderr
    assert second.stdout.splitlines()[-1] == (
        f"sweep: 4 jobs, 2 failed, 0 diverged — report: {sweep}/report.md"
    )
    assert mtimes(sweep / "0") == finished  # not trained again
    assert "skipped: done in an earlier run" in (sweep / "0" / "train.log").read_text()
    rerun = json.loads((sweep / "1" / "results.json").read_text())
    assert rerun["status"] == "done" and rerun["overrides"][:2] == ["loss=auto", "activation=tanh"]
    assert sorted(p.name for p in (sweep / "1" / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]
    assert not [p for p in sweep.rglob("*") if "-v1" in p.name]  # nothing written twice
    for job in ("2", "3"):  # the failed jobs ran again (and failed again: loss=mse)
        log = (sweep / job / "train.log").read_text()
        assert log.count("error: loss=mse cannot train a binary task") == 2
        assert json.loads((sweep / job / "results.json").read_text())["status"] == "failed"
