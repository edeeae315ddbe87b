"""What tests that drive a real Lightning Trainer share: a composed config's data and module,
and a Trainer that writes nothing and prints nothing unless asked."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from nnlab.speed import data_options
from nnlab.tasks import build_module

# Trainer options of a test fit: no logger, checkpoints, progress bar or model summary.
QUIET = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def data_and_module(cfg: DictConfig) -> tuple[Any, L.LightningModule]:
    """The config's datamodule, set up for fitting, and the task module built for its data."""
    data = instantiate(cfg.data, _convert_="all", **data_options(cfg))
    data.setup("fit")
    return data, build_module(cfg, data.spec)


def quiet_trainer(**options: Any) -> L.Trainer:
    """A Trainer with QUIET's options; `options` add to them or override them."""
    return L.Trainer(**{**QUIET, **options})
