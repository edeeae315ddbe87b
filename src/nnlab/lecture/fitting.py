"""Training for the studies, through nnlab's own pieces: the real Hydra configs composed as
`python train.py <overrides>` would compose them, the datamodule and task module they name, and
a Lightning Trainer whose per-epoch history (losses, updates, training time) is kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from nnlab.core.hydra import instantiate_config, register_resolvers
from nnlab.tasks import TaskModule, build_module

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
# The parts of a run config that build the data and the task module (what build_module reads,
# and what their interpolations name); the rest (paths, hydra, loggers) is a run folder's.
MODULE_KEYS = ("seed", "data", "model", "activation", "init", "loss", "optimizer", "scheduler")


def compose_config(*overrides: str) -> DictConfig:
    """configs/train.yaml with `overrides` (e.g. "experiment=xor_mlp", "optimizer.lr=0.1"),
    reduced to MODULE_KEYS. Clears Hydra's global state (as the test fixtures do)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=list(overrides))
    return OmegaConf.masked_copy(cfg, [k for k in MODULE_KEYS if k in cfg])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Runs torch on one CPU thread. The studies' networks are tiny: on a shared CPU, a second
    intra-op thread only adds synchronization (an XOR fit took 8.4 s with 2 threads, 1.8 s with
    one, measured under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silences Lightning's banner (GPU available, ...) and its warnings about tiny data sets
    (few batches, no workers): a study prints its verdict, nothing else."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class History(L.Callback):
    """Per epoch: the logged epoch metrics (train/loss, val/loss, ...), the optimizer steps so
    far (`updates`) and the training time so far (`seconds`, validation excluded).

    An epoch's metrics are read when the next epoch starts, or when training ends: the task
    module logs them in its own on_train_epoch_end, which Lightning calls after callbacks'.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0
        self._started: float | None = None

    def _pause(self) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def _record(self, trainer: L.Trainer) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row = {"epoch": trainer.current_epoch, "updates": trainer.global_step}
        self.rows.append({**row, "seconds": self.seconds, **metrics})

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > len(self.rows):
            self._record(trainer)
        self._started = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def frame(self) -> pd.DataFrame:
        """The rows as a table, epochs numbered from 1."""
        frame = pd.DataFrame(self.rows)
        frame["epoch"] = range(1, len(frame) + 1)
        return frame


@dataclass
class Fit:
    """A trained task module, its datamodule (set up) and its per-epoch history."""

    module: TaskModule
    data: Any
    history: pd.DataFrame

    @torch.no_grad()
    def outputs(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(network outputs, targets) on a whole split."""
        x, y = self.data.splits[split]
        return self.network(x), y

    @torch.no_grad()
    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output for raw inputs x (normalized as the datamodule does)."""
        normalize = self.data.normalizer
        self.module.eval()
        return self.module(x.float() if normalize is None else normalize(x))

    @torch.no_grad()
    def loss(self, split: str) -> float:
        """The task module's loss on a whole split, with the weights as trained."""
        out, y = self.outputs(split)
        return self.module.loss_fn(out, y).item()

    def accuracy(self, split: str) -> float:
        """Classification accuracy on a split (binary: score > 0 is class 1)."""
        out, y = self.outputs(split)
        pred = (out.squeeze(-1) > 0).long() if out.shape[-1] == 1 else out.argmax(-1)
        return (pred == y).float().mean().item()


def build(cfg: DictConfig) -> tuple[Any, TaskModule]:
    """The config's datamodule (set up) and its task module, seeded by the config's seed."""
    L.seed_everything(cfg.seed, verbose=False)
    data = instantiate_config(cfg.data)
    data.setup("fit")
    return data, build_module(cfg, data.spec)


def fit(
    cfg: DictConfig,
    epochs: int,
    validate: bool = True,
    callbacks: tuple[L.Callback, ...] = (),
    **trainer: Any,
) -> Fit:
    """Trains the config's network on its data for `epochs` epochs on the CPU (the studies'
    networks are tiny), seeded by the config's seed, with nothing written to disk.
    `validate=False` skips the validation loop; `callbacks` watch the training besides the
    history; `trainer` adds or overrides Trainer options."""
    data, module = build(cfg)
    module.divergence.enabled = False  # the studies watch divergence happen (too big an lr)
    history = History()
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": None if validate else 0,
        "callbacks": [history, *callbacks],
        **trainer,
    }
    with quiet():
        L.Trainer(**options).fit(module, datamodule=data)
    return Fit(module, data, history.frame())
