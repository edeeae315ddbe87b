"""Experiment tracking, read back from what was written: real wandb offline runs (the run file,
parsed with wandb's own protobuf records), TensorBoard event files (EventAccumulator), and the
CSV logger's metrics.csv. Nothing here touches the network."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch import Callback
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnlab.callbacks import output
from nnlab.tracking import EpochCSVLogger, flatten, run_identity
from nnlab.train import train

from .conftest import ROOT, run_script
from .helpers.wandb_records import read_run

CHOICES = {
    "data": "digits",
    "model": "mlp",
    "activation": "relu",
    "init": "kaiming",
    "loss": "auto",
    "optimizer": "adam",
    "trainer": "default",
}
QUIET = ("+trainer.enable_model_summary=false",)
FEW_BATCHES = (
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
)


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment with no W&B credentials anywhere (empty HOME, no WANDB_* variables) and
    wandb's own folders in tmp; applied to this process too."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("WANDB_") or key == "NETRC":
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


def run_train(*args: str, cwd: Path, env: dict[str, str], timeout: float = 240):
    """train.py in a fresh interpreter with no stdin: a prompt would fail or hang, not wait."""
    return run_script("train.py", *args, cwd=cwd, env=env, timeout=timeout)


def offline_runs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("offline-run-*"))


# -- run identity (pure) ------------------------------------------------------------------------
def test_run_identity_names_and_tags_from_the_chosen_groups():
    identity = run_identity(CHOICES, "train")
    assert identity == {
        "name": "digits-mlp-relu-kaiming-adam",
        "tags": [
            "data=digits",
            "model=mlp",
            "activation=relu",
            "init=kaiming",
            "loss=auto",
            "optimizer=adam",
        ],
        "group": None,
        "job_type": "train",
    }
    assert run_identity({**CHOICES, "loss": "huber"}, "train")["name"] == (
        "digits-mlp-relu-kaiming-huber-adam"
    )


def test_multirun_jobs_share_a_group_and_get_distinct_names():
    sweep = "/logs/train/multiruns/2026-01-01_00-00-00_abc123"
    a = run_identity(CHOICES, "train", sweep, 0)
    b = run_identity(CHOICES, "train", sweep, 1)  # e.g. seed=1,2: same choices
    assert a["group"] == b["group"] == "train-2026-01-01_00-00-00_abc123"
    assert a["name"] != b["name"]


def test_flatten_gives_the_keys_a_command_line_override_uses():
    nested = {"model": {"hidden_sizes": [128, 64], "activation": {"name": "relu"}}, "seed": 0}
    assert flatten(nested) == {
        "model.hidden_sizes": [128, 64],
        "model.activation.name": "relu",
        "seed": 0,
    }


# -- W&B mode ---------------------------------------------------------------------------------
MODES = """
import os
from nnlab.tracking import resolve_wandb_mode

print(resolve_wandb_mode(None))  # no credentials anywhere
os.environ["WANDB_MODE"] = "disabled"
print(resolve_wandb_mode(None))  # WANDB_MODE wins
del os.environ["WANDB_MODE"]
# A key (never sent anywhere: the check only reads it) means online.
os.environ["WANDB_API_KEY"] = "a" * 40
print(resolve_wandb_mode(None))
print(resolve_wandb_mode("offline"))  # an explicit mode wins over credentials
try:
    resolve_wandb_mode("sometimes")
except ValueError as e:
    print(e)
"""


def test_wandb_mode_follows_credentials_and_wandb_mode(wandb_env):
    proc = subprocess.run(
        [sys.executable, "-c", MODES],
        env=wandb_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    *modes, error = proc.stdout.strip().splitlines()
    assert modes == ["offline", "disabled", "online", "offline"]
    assert "null (auto) or one of online, offline, disabled" in error


# -- W&B runs, read back ------------------------------------------------------------------------
def test_wandb_without_credentials_runs_offline_with_everything_logged(tmp_path, wandb_env):
    out = tmp_path / "run"
    proc = run_train(
        "logger=wandb",
        "diagnostics=basic",
        "diagnostics.layers.every_n_steps=10",
        "trainer.max_epochs=2",
        "logger.wandb.tags=[lecture3]",
        "logger.wandb.log_model=true",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        env=wandb_env,
    )
    (run_dir,) = offline_runs(out)
    assert f"wandb sync {run_dir}" in proc.stdout
    run = read_run(run_dir)
    assert run.run.display_name == "digits-mlp-relu-default-adam"
    assert list(run.run.tags) == [
        "data=digits",
        "model=mlp",
        "activation=relu",
        "init=default",
        "loss=auto",
        "optimizer=adam",
        "lecture3",
    ]
    assert run.run.job_type == "train" and run.run.run_group == ""
    assert run.config["model.hidden_sizes"] == [128, 64]
    assert run.config["choices.activation"] == "relu"
    assert run.config["optimized_metric"] == "val/acc"
    logged = set().union(*run.history)
    assert {"train/loss", "val/acc", "test/acc"} <= logged
    for key in ("activation_std", "activation_mean", "dead_fraction"):
        assert {f"{key}/layer1", f"{key}/layer2"} <= logged
    assert {"grad_norm/output", "weight_norm/layer1"} <= logged
    assert "diagnostics/confusion_matrix/_type" in logged  # the PNG as a W&B image
    steps = sorted(h["trainer/global_step"] for h in run.history if "activation_std/layer1" in h)
    assert steps == [0, 10, 20, 30]  # 2 epochs of 20 steps, every 10 steps
    # log_model=true: the checkpoints as model artifacts, uploaded by `wandb sync` later.
    models = [a for a in run.artifacts if a.type == "model"]
    assert models and all([m.path for m in a.manifest.contents] == ["model.ckpt"] for a in models)
    # W&B's confusion-matrix chart is backed by a table, stored as a run_table artifact.
    assert any("confusion" in a.name for a in run.artifacts if a.type == "run_table")
    assert run.exit_code == 0


@pytest.mark.slow  # two W&B runs in a subprocess: ~15 s
def test_wandb_multirun_groups_the_sweep(tmp_path, wandb_env):
    sweep = tmp_path / "sweep"
    run_train(
        "-m",
        "logger=wandb",
        "diagnostics=none",
        "activation=relu,tanh",
        "debug=limit",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=wandb_env,
    )
    runs = [read_run(d) for d in offline_runs(sweep)]
    assert len(runs) == 2
    assert {r.run.run_group for r in runs} == {f"train-{sweep.name}"}
    assert {r.run.display_name for r in runs} == {
        "digits-mlp-relu-default-adam-0",
        "digits-mlp-tanh-default-adam-1",
    }
    assert {r.run.job_type for r in runs} == {"train"}
    assert {r.config["choices.activation"] for r in runs} == {"relu", "tanh"}


class Boom(Callback):
    """Fails training after the first epoch's metrics were logged."""

    def on_train_epoch_end(self, trainer, pl_module):
        raise RuntimeError("boom")


def test_wandb_run_is_marked_failed_when_training_raises(make_cfg, wandb_env):
    cfg = make_cfg(
        "logger=wandb",
        "diagnostics=none",
        "+callbacks.boom._target_=tests.test_tracking.Boom",
        *QUIET,
        *FEW_BATCHES,
    )
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    (run_dir,) = offline_runs(Path(cfg.paths.output_dir))
    run = read_run(run_dir)
    assert run.exit_code == 1
    assert any("val/acc" in h for h in run.history)  # what was logged before the failure


# -- CSV ------------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_writes_one_row_per_epoch(make_cfg):
    cfg = make_cfg("logger=csv", "diagnostics=none", "trainer.max_epochs=3", *QUIET, *FEW_BATCHES)
    train(cfg)
    rows = read_csv(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")
    fit_rows, final = rows[:-1], rows[-1]
    assert [r["epoch"] for r in fit_rows] == ["0", "1", "2"]
    for row in fit_rows:  # train and val metrics of an epoch side by side
        assert row["train/loss"] and row["val/loss"] and row["val/acc"] and not row["test/acc"]
    # After fitting: the best checkpoint's validation and test metrics, in one row.
    assert final["test/acc"] and final["val/acc"] and not final["train/loss"]


def test_epoch_csv_writer_merges_rows_and_rewrites_only_what_changed(tmp_path):
    logger = EpochCSVLogger(tmp_path, name="csv", version="")
    writer = logger.experiment
    path = Path(writer.metrics_file_path)
    logger.log_metrics({"val/loss": 1.0, "epoch": 0}, step=9)
    logger.save()
    logger.log_metrics({"train/loss": 2.0, "epoch": 0}, step=9)  # new column: header rewritten
    logger.save()
    logger.log_metrics({"val/loss": 0.5, "epoch": 1}, step=19)
    logger.save()
    logger.log_metrics({"train/loss": 1.5, "epoch": 1}, step=19)  # the last row grows
    logger.save()
    logger.log_metrics({"val/loss": 0.4, "epoch": 1}, step=19)  # same key again: a new row
    logger.save()
    assert path.read_text().splitlines() == [
        "epoch,step,train/loss,val/loss",
        "0,9,2.0,1.0",
        "1,19,1.5,0.5",
        "1,19,,0.4",
    ]


# -- TensorBoard ----------------------------------------------------------------------------------
def test_tensorboard_event_files_hold_scalars_histograms_and_images(make_cfg):
    cfg = make_cfg(
        "logger=tensorboard",
        "diagnostics=full",
        "diagnostics.layers.every_n_steps=5",
        "diagnostics.layers.histogram_every_n_steps=10",
        "trainer.max_epochs=1",
        *QUIET,
    )
    train(cfg)
    events = EventAccumulator(
        str(Path(cfg.paths.output_dir) / "tensorboard"),
        size_guidance={"scalars": 0, "histograms": 0, "images": 0},
    )
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "val/acc", "test/acc"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("activation_std/layer2")] == [0, 5, 10, 15]
    assert all(0.0 <= e.value <= 1.0 for e in events.Scalars("dead_fraction/layer1"))
    assert {"weights/layer1", "weights/output", "activations/layer2"} <= set(tags["histograms"])
    assert [e.step for e in events.Histograms("weights/layer1")] == [0, 10]
    histogram = events.Histograms("weights/layer1")[0].histogram_value
    assert histogram.num == 64 * 128  # every weight of the 64 → 128 layer
    assert {"diagnostics/confusion_matrix", "diagnostics/activation_std"} <= set(tags["images"])
    (image,) = events.Images("diagnostics/confusion_matrix")
    png = Path(cfg.paths.output_dir) / output.DIRNAME / "confusion_matrix.png"
    assert (image.width, image.height) == Image.open(png).size
