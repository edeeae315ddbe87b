"""Callbacks a run can add through the callbacks config group (configs/callbacks/): stopping
early when the optimized metric stops improving, and the learning rate logged per epoch.
RichModelSummary (callbacks=model_summary) is Lightning's own."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

log = logging.getLogger(__name__)


class EarlyStop(EarlyStopping):
    """Lightning's EarlyStopping (stops when `monitor` has not improved by more than
    `min_delta` for `patience` validations) that says so in one line when it stops, and
    tells results.json the epoch it stopped after (`stopped_after_epoch`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("verbose", False)  # Lightning's own lines; ours is the one below
        super().__init__(**kwargs)
        self.stopped_after_epoch: int | None = None  # 1-based; None: ran to the end

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stopping = trainer.should_stop
        super().on_train_epoch_end(trainer, pl_module)
        self._note_stop(trainer, stopping)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stopping = trainer.should_stop
        super().on_validation_end(trainer, pl_module)
        self._note_stop(trainer, stopping)

    def _note_stop(self, trainer: L.Trainer, was_stopping: bool) -> None:
        """Records and announces the check that just asked the trainer to stop (if it did)."""
        if was_stopping or not trainer.should_stop or self.stopping_reason_message is None:
            return
        self.stopped_after_epoch = trainer.current_epoch + 1
        if not trainer.is_global_zero:
            return
        where = f"stopped after epoch {self.stopped_after_epoch} of {trainer.max_epochs}"
        if self.stopping_reason != EarlyStoppingReason.PATIENCE_EXHAUSTED:
            log.info("early stopping: %s: %s", where, self.stopping_reason_message)
            return
        log.info(
            "early stopping: %s did not improve by more than %g for %d epochs; %s (best %.6g)",
            self.monitor,
            abs(self.min_delta),
            self.patience,
            where,
            float(self.best_score),
        )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stopped_after_epoch": self.stopped_after_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.stopped_after_epoch = state_dict.get("stopped_after_epoch")


def stopped_after_epoch(trainer: L.Trainer) -> int | None:
    """The epoch (1-based) after which an EarlyStop callback stopped fitting; None when none
    did. Read it before loading a checkpoint (that restores callback state)."""
    epochs = [c.stopped_after_epoch for c in trainer.callbacks if isinstance(c, EarlyStop)]
    return next((e for e in epochs if e is not None), None)


class LearningRateLog(Callback):
    """Logs each optimizer's learning rate once per training epoch, as `lr` (one optimizer
    with one parameter group) or `lr/<optimizer>/<group>`: a column of metrics.csv and a
    chart in the other loggers. The value is the one the epoch trains with, before an
    epoch-interval scheduler steps at its end."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rates = {}
        for i, optimizer in enumerate(trainer.optimizers):
            for j, group in enumerate(optimizer.param_groups):
                # float64: a float32 tensor would log 1e-3 as 0.0010000000474974513.
                rates[f"lr/{i}/{j}"] = torch.tensor(float(group["lr"]), dtype=torch.float64)
        if len(rates) == 1:
            rates = {"lr": next(iter(rates.values()))}
        # Computed identically on every rank: nothing to reduce.
        pl_module.log_dict(
            rates, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=False
        )
