"""The console of a run: the composed config printed as a tree before it, and saved beside it
(print_config); the run's log file written by global rank 0 only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nnlab.console import print_config_tree, setup_console
from nnlab.train import train

TINY = ("trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1")


def test_tree_names_each_group_with_its_option_and_resolves_values(make_cfg, tmp_path, capsys):
    cfg = make_cfg("optimizer=sgd", "optimizer.lr=0.05", "activation=tanh")
    print_config_tree(cfg, tmp_path)
    shown = capsys.readouterr().out
    saved = (tmp_path / "config_tree.txt").read_text()
    for text in (shown, saved):
        assert "optimizer: sgd" in text and "lr: 0.05" in text and "activation: tanh" in text
        assert "${" not in text  # interpolations resolved: the values the run used
    assert "\x1b[" not in saved  # plain text on disk, colours only on the terminal


@pytest.mark.parametrize("print_config", [True, False])
def test_a_run_prints_and_saves_its_tree_unless_turned_off(make_cfg, capsys, print_config):
    cfg = make_cfg(*TINY, f"print_config={print_config}", "diagnostics=none")
    train(cfg)
    saved = Path(cfg.paths.output_dir) / "config_tree.txt"
    assert saved.is_file() == print_config
    assert ("data: digits" in capsys.readouterr().out) == print_config


@pytest.mark.parametrize("variable", ["RANK", "SLURM_PROCID"])
def test_only_global_rank_zero_writes_the_run_log(tmp_path, monkeypatch, variable):
    """torchrun and SLURM start every process in one run folder: ranks > 0 drop the log file."""
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "train.log")
    root.addHandler(handler)
    try:
        monkeypatch.setenv(variable, "0")
        setup_console()
        assert handler in root.handlers
        monkeypatch.setenv(variable, "3")
        setup_console()
        assert handler not in root.handlers
    finally:
        root.removeHandler(handler)
        handler.close()
