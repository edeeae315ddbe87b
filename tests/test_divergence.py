"""Divergence: a non-finite loss or non-finite weights stop training at once with one line
naming where and why; results.json says `status: diverged` with the worst value, and no
checkpoint with non-finite weights is kept. Also the results.json contract of a run that ends
well, and debug=anomaly."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightning as L
import pytest
import torch

from nnlab.core import ConfigError, Diverged
from nnlab.data.toy import DigitsDataModule
from nnlab.tasks import divergence
from nnlab.train import train

from .conftest import run_script

# Fast fits on the CPU (each step reads its loss there; test_cuda_... checks the GPU's way): no
# logger files, no diagnostics.
QUIET = ("logger=none", "diagnostics=none", "trainer.accelerator=cpu")
DIVERGING = ("optimizer=sgd", "optimizer.lr=1e6")
# The message's shape: what, where, the learning rate and optimizer, then the likely cause.
LINE = re.compile(
    r"^diverged: the (loss|weights|gradient) became (nan|inf|-inf|non-finite) at epoch (\d+), "
    r"(by )?step (\d+) \(lr=([^,]+), optimizer (\w+)\): .+"
)


def results_of(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())


def diverge(cfg) -> tuple[re.Match, dict]:
    """Trains cfg, which must diverge: the message's parts, and results.json."""
    with pytest.raises(Diverged) as raised:
        train(cfg)
    line = str(raised.value)
    match = LINE.match(line)
    assert match, line
    results = results_of(cfg)
    assert results["status"] == "diverged" and results["error"] == line
    assert results["wall_time_s"] > 0
    return match, results


def assert_checkpoints_finite(cfg) -> list[Path]:
    """Every checkpoint the run left holds finite weights; returns them."""
    paths = sorted(Path(cfg.paths.output_dir).rglob("*.ckpt"))
    for path in paths:
        state = torch.load(path, weights_only=True)["state_dict"]
        for name, tensor in state.items():
            if tensor.is_floating_point():
                assert torch.isfinite(tensor).all(), f"{path.name}: {name} is not finite"
    return paths


def test_a_huge_learning_rate_stops_training_at_the_step_it_diverges(make_cfg):
    cfg = make_cfg(*DIVERGING, "trainer.max_epochs=3", *QUIET)
    match, results = diverge(cfg)
    what, value, epoch, _, step, lr, optimizer = match.groups()
    assert (what, epoch, lr, optimizer) == ("loss", "0", "1e+06", "SGD")
    assert value in ("nan", "inf") and int(step) >= 1  # the first step starts from finite weights
    assert "learning rate is likely too large" in results["error"]
    assert "optimizer.lr=0.01" in results["error"]
    # Sweepers get the worst value for val/acc (max), never a score or NaN.
    assert results["optimized_mode"] == "max" and results["value"] == "-inf"
    assert results["val"] == {} and results["test"] == {}
    assert results["best_ckpt_before_divergence"] is None and results["epochs"] == 0
    assert assert_checkpoints_finite(cfg) == []  # it diverged before the first epoch's end


def test_device_records_name_the_same_step_as_reading_every_step(make_cfg, monkeypatch):
    """On a GPU steps record on the device and the host reads at the epoch's end; forced here
    on the CPU, it names the very step that reading each loss names."""
    cfg = make_cfg(*DIVERGING, "trainer.max_epochs=3", *QUIET)
    eager, _ = diverge(cfg)
    monkeypatch.setattr(divergence, "reads_each_step", lambda trainer, device: False)
    cfg = make_cfg(*DIVERGING, "trainer.max_epochs=3", *QUIET)
    recorded, results = diverge(cfg)
    assert recorded.group(2) == "non-finite" and recorded.group(4) is None  # not "by"
    assert recorded.group(5) == eager.group(5)  # the step
    assert results["value"] == "-inf"
    assert assert_checkpoints_finite(cfg) == []


def test_a_regression_that_diverges_reports_inf_for_its_minimized_metric(make_cfg):
    cfg = make_cfg("data=linear_regression", "model=linear", *DIVERGING, *QUIET)
    match, results = diverge(cfg)
    assert match.group(1) == "loss" and match.group(6) == "1e+06"
    assert results["optimized_metric"] == "val/mse" and results["value"] == "inf"
    assert_checkpoints_finite(cfg)


def test_the_best_checkpoint_before_a_divergence_is_kept_and_evaluated(make_cfg):
    # The learning rate grows 10⁷-fold after the first epoch (0.01, then 1e5).
    cfg = make_cfg(
        "optimizer=sgd",
        "optimizer.lr=0.01",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=1e7",
        "trainer.max_epochs=3",
        *QUIET,
    )
    match, results = diverge(cfg)
    assert match.group(3) == "1" and match.group(6) == "100000"  # epoch 1, the grown lr
    best = results["best_ckpt_before_divergence"]
    assert best and Path(best).is_file() and results["ckpt_path"] == best
    # val and test are the best checkpoint's; the value is still the worst.
    assert 0 < results["val"]["val/acc"] <= 1 and "test/acc" in results["test"]
    assert results["value"] == "-inf"
    checkpoints = assert_checkpoints_finite(cfg)
    assert {p.name for p in checkpoints} == {"best.ckpt", "last.ckpt"}
    assert torch.load(best, weights_only=True)["epoch"] == 0


class PoisonWeights(L.Callback):
    """Makes a weight NaN after the last step of epoch `epoch` (non-monitoring callbacks run
    before the module's on_train_epoch_end, and checkpoint callbacks after it)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = math.nan


def test_non_finite_weights_stop_training_before_any_checkpoint_takes_them(make_cfg):
    cfg = make_cfg(
        "trainer.max_epochs=3",
        "+callbacks.poison._target_=tests.test_divergence.PoisonWeights",
        "+callbacks.poison.epoch=1",
        # No validation: checkpoints are saved in on_train_epoch_end, after the module's hook.
        "+trainer.limit_val_batches=0",
        "optimized_metric=train/loss",
        *QUIET,
    )
    match, results = diverge(cfg)
    what, value, epoch, by, step = match.groups()[:5]
    assert (what, value, epoch, by) == ("weights", "nan", "1", "by ")
    # best.ckpt and last.ckpt are epoch 0's: epoch 1's end saved nothing.
    last = torch.load(results["last_ckpt_path"], weights_only=True)
    assert last["epoch"] == 0
    assert int(step) == 2 * last["global_step"] - 1  # the last step of epoch 1
    assert torch.load(results["best_ckpt_before_divergence"], weights_only=True)["epoch"] == 0
    assert "test/acc" in results["test"] and results["value"] == "inf"  # train/loss: min
    assert len(assert_checkpoints_finite(cfg)) == 2


def test_non_finite_data_is_named_as_the_cause(make_cfg, monkeypatch):
    def corrupt(self, train):
        x, y = train
        x = x.float().clone()
        x[3, 0, 2, 2] = math.inf
        return x, y

    monkeypatch.setattr(DigitsDataModule, "corrupt_train", corrupt)
    cfg = make_cfg("data.normalize=none", *QUIET)
    match, results = diverge(cfg)
    assert match.group(1) == "loss" and match.group(3) == "0"
    assert "the training data hold nan/inf values (1 of " in results["error"]
    assert "0 targets" in results["error"] and "not the training" in results["error"]
    assert "learning rate" not in results["error"]


def test_a_loss_not_finite_before_any_update_is_not_blamed_on_the_learning_rate(make_cfg):
    cfg = make_cfg("init=constant", "init.value=1e30", *QUIET)  # logits overflow at once
    match, results = diverge(cfg)
    assert match.group(5) == "0"  # the first step
    assert "not the learning rate" in results["error"] and "init=constant" in results["error"]
    assert "loss=auto fits these multiclass targets" in results["error"]


def test_a_run_that_ends_well_says_done(make_cfg):
    overrides = ("trainer.max_epochs=1", *QUIET)
    cfg = make_cfg(*overrides)
    value = train(cfg)
    results = results_of(cfg)
    assert results["status"] == "done" and results["error"] is None
    assert results["wall_time_s"] > 0 and results["overrides"] == list(overrides)
    assert results["value"] == value == results["val"]["val/acc"]
    assert "best_ckpt_before_divergence" not in results


def test_debug_anomaly_turns_on_anomaly_detection_and_trains(make_cfg):
    cfg = make_cfg("debug=anomaly", "+trainer.max_steps=3", *QUIET)
    assert cfg.trainer.detect_anomaly is True
    train(cfg)
    assert results_of(cfg)["status"] == "done"


def test_under_debug_anomaly_the_backward_pass_names_the_operation(make_cfg):
    cfg = make_cfg("debug=anomaly", *DIVERGING, *QUIET)
    match, results = diverge(cfg)
    assert match.group(1) == "gradient" and match.group(2) == "nan"
    assert "autograd anomaly detection: Function '" in results["error"]
    assert results["value"] == "-inf"


def test_debug_anomaly_is_refused_with_a_cuda_graph(make_cfg, monkeypatch):
    from nnlab.speed import config as speed_config

    monkeypatch.setattr(speed_config, "uses_gpu", lambda trainer_cfg: True)  # as on a GPU
    with pytest.raises(ConfigError, match="cannot check a step captured as a CUDA graph"):
        train(make_cfg("debug=anomaly", "speed=max", *QUIET))
    speed_config.check_anomaly(make_cfg("debug=anomaly", *QUIET))  # speed=default: fine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("speed", ["default", "max"])
def test_cuda_steps_record_the_step_that_diverged(make_cfg, speed):
    """On a GPU steps read nothing back (speed=max replays them from a CUDA graph); the epoch's
    read names the same step as the CPU, which reads every loss."""
    cpu, _ = diverge(make_cfg(*DIVERGING, *QUIET))
    cfg = make_cfg(*DIVERGING, f"speed={speed}", *QUIET[:-1], "trainer.accelerator=gpu")
    gpu, results = diverge(cfg)
    assert gpu.group(2) == "non-finite" and gpu.group(5) == cpu.group(5)
    assert results["value"] == "-inf"
    assert assert_checkpoints_finite(cfg) == []


def test_train_py_exits_with_the_error_line_and_keeps_the_run_folder(tmp_path):
    proc = run_script(
        "train.py", *DIVERGING, *QUIET, "callbacks.progress_bar=null", cwd=tmp_path, check=False
    )
    assert proc.returncode != 0
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert LINE.match(line.removeprefix("error: ")), line
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert json.loads((run / "results.json").read_text())["status"] == "diverged"
