"""Launchers of the sweeps extra: hydra/launcher=local_parallel (joblib) and submitit's local
executor run real sweeps in parallel processes; hydra/launcher=slurm writes the batch script a
cluster gets (DDP resources from the trainer, setup lines), checked with a stand-in sbatch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, run_script

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the sweeps extra")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the sweeps extra")

no_submitit_on_windows = pytest.mark.skipif(
    sys.platform == "win32", reason="submitit runs on Linux and macOS"
)
TINY = ("data=xor", "trainer.max_epochs=2", "logger=none", "diagnostics=none")


def two_job_sweep(tmp_path: Path, launcher: str, *args: str) -> list[dict]:
    """A 2-job multirun (seed=1,2) through `launcher`; the jobs' results.json files."""
    logs = tmp_path / "logs"
    run_script(
        "train.py", "-m", f"hydra/launcher={launcher}", *args, *TINY, "seed=1,2",
        f"paths.log_dir={logs}", cwd=tmp_path,
    )  # fmt: skip
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


@pytest.mark.slow
def test_local_parallel_runs_a_sweep_with_joblib(tmp_path):
    results = two_job_sweep(tmp_path, "local_parallel", "hydra.launcher.n_jobs=2")
    assert [(r["status"], r["seed"]) for r in results] == [("done", 1), ("done", 2)]


@pytest.mark.slow
@no_submitit_on_windows
def test_submitit_local_runs_a_sweep_in_subprocesses(tmp_path):
    """submitit's local executor: each job a real subprocess, as on a cluster node."""
    results = two_job_sweep(tmp_path, "submitit_local", "hydra.launcher.timeout_min=10")
    assert [(r["status"], r["seed"]) for r in results] == [("done", 1), ("done", 2)]
    assert list((tmp_path / "logs").glob("train/multiruns/*/.submitit/*/*_log.out"))


@no_submitit_on_windows
def test_slurm_submits_ddp_resources_and_setup_lines(tmp_path):
    """With a stand-in sbatch that keeps the script it is given (and refuses the job), the
    batch script asks for trainer.num_nodes nodes with trainer.devices GPUs and as many tasks
    on each (Lightning's DDP under SLURM), the partition, and runs the setup lines first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "sbatch_script.sh"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho refused >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it first
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = run_script(
        "train.py", "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
        'hydra.launcher.setup=["module load cuda/12.4","source .venv/bin/activate"]',
        "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "seed=1,2",
        f"paths.log_dir={tmp_path / 'logs'}", cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "refused" in proc.stdout + proc.stderr
    text = script.read_text()
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=60",
        "#SBATCH --array=0-1%2",
        "module load cuda/12.4\nsource .venv/bin/activate\n",
    ):
        assert line in text, text
    assert text.index("module load") < text.index("srun")
