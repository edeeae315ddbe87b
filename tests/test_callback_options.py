"""The optional callbacks of the callbacks group (early_stopping, lr_monitor, model_summary),
composed with the default ones and trained with a real Trainer, speed=max's grouped steps
included."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from nnlab.core import ConfigError
from nnlab.train import train

from .conftest import run_script

ALL = "callbacks=[default,early_stopping,lr_monitor,model_summary]"
TINY = ("data=xor", "model=mlp", "diagnostics=none", "print_config=false")


def epoch_rows(output_dir: str) -> list[dict[str, str]]:
    """metrics.csv's training rows (the last row is the best checkpoint's evaluation)."""
    with open(Path(output_dir) / "csv" / "metrics.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["train/loss"]]


@pytest.mark.parametrize("speed", ["default", "max"])
def test_early_stopping_stops_says_so_and_results_record_the_epoch(make_cfg, caplog, speed):
    # min_delta=1: no accuracy can improve by more than 1, so the first validation sets the
    # best and the second, with patience=1, stops fitting: after epoch 2 of 30.
    cfg = make_cfg(
        *TINY,
        ALL,
        f"speed={speed}",
        "trainer.max_epochs=30",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=1.0",
    )
    assert cfg.callbacks.keys() >= {"model_checkpoint", "last_checkpoint", "early_stopping"}
    with caplog.at_level(logging.INFO, logger="nnlab.callbacks.training"):
        train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["stopped_after_epoch"] == 2
    assert results["epochs"] == 2
    assert len(epoch_rows(cfg.paths.output_dir)) == 2
    lines = [r.getMessage() for r in caplog.records if "early stopping" in r.getMessage()]
    assert len(lines) == 1  # one line, naming the metric, the limits and the epoch
    assert (
        "val/acc did not improve by more than 1 for 1 epochs; stopped after epoch 2 of 30"
        in (lines[0])
    )
    # The default callbacks still ran alongside: best and last checkpoints exist.
    assert Path(results["ckpt_path"]).name == "best.ckpt"
    assert Path(results["last_ckpt_path"]).name == "last.ckpt"


def test_a_run_that_keeps_improving_records_no_stop(make_cfg):
    cfg = make_cfg(*TINY, "callbacks=[default,early_stopping]", "trainer.max_epochs=3")
    train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["stopped_after_epoch"] is None
    assert results["epochs"] == 3


@pytest.mark.parametrize("speed", ["default", "max"])
def test_lr_monitor_logs_the_learning_rate_each_epoch_trains_with(make_cfg, speed):
    cfg = make_cfg(
        *TINY,
        "callbacks=[default,lr_monitor]",
        f"speed={speed}",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=0.5",
        "optimizer.lr=0.01",
        "trainer.max_epochs=4",
    )
    train(cfg)
    rates = [float(row["lr"]) for row in epoch_rows(cfg.paths.output_dir)]
    assert rates == [0.01, 0.005, 0.0025, 0.00125]


def test_model_summary_prints_a_rich_table_of_the_configured_depth(make_cfg, capsys):
    cfg = make_cfg(*TINY, "callbacks=[default,model_summary]", "trainer.max_epochs=1")
    train(cfg)
    shallow = capsys.readouterr().out
    cfg = make_cfg(
        *TINY,
        "callbacks=[default,model_summary]",
        "trainer.max_epochs=1",
        "callbacks.model_summary.max_depth=1",
    )
    train(cfg)
    top = capsys.readouterr().out
    assert "┃ Name" in shallow and "net.1" in shallow  # depth 2: the network's layers
    assert "┃ Name" in top and "net.1" not in top  # depth 1: the network alone


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience must be >= 0"),
        ("callbacks.early_stopping.min_delta=-0.1", "early_stopping.min_delta must be >= 0"),
    ],
)
def test_bad_early_stopping_values_are_refused_before_fitting(make_cfg, override, message):
    cfg = make_cfg(*TINY, "callbacks=[default,early_stopping]", override)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "results.json").exists()


def test_a_bad_patience_is_one_error_line_on_the_command_line(tmp_path):
    proc = run_script(
        "train.py",
        *TINY,
        "callbacks=[default,early_stopping]",
        "callbacks.early_stopping.patience=soon",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in (proc.stderr + proc.stdout).splitlines() if "error:" in line]
    assert len(errors) == 1 and "callbacks.early_stopping.patience" in errors[0]
