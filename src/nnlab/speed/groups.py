"""Groups of training batches per Lightning batch (speed.steps_per_batch), made by wrapping the
datamodule's training loader from outside (StepGroups, applied by nnlab.speed.FastPath).

A group lets the fast path take several exact optimizer steps per Lightning batch
(nnlab.speed.steps), so that Lightning's per-batch work (about 1 ms on a CPU core) costs a
sixteenth of that per step (docs/speed.md). Only loaders of resident data (TensorBatches) are
grouped: their batches are gathered lazily, one at a time, as the step takes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nnlab.data.loaders import BatchGroup, TensorBatches

# Optimizer steps per Lightning batch for steps_per_batch="auto".
AUTO_STEPS_PER_BATCH = 16


def counts_batches(trainer: Any) -> bool:
    """Whether a trainer option counts Lightning batches or needs one optimizer step per batch
    (limit_train_batches, val_check_interval, overfit_batches, fast_dev_run, gradient clipping
    or accumulation): grouping would change what it means."""
    return bool(
        trainer.limit_train_batches != 1.0
        or not isinstance(trainer.limit_train_batches, float)
        or trainer.val_check_interval != 1.0
        or not isinstance(trainer.val_check_interval, float)
        or trainer.overfit_batches
        or trainer.fast_dev_run
        or trainer.gradient_clip_val
        or trainer.accumulate_grad_batches != 1
    )


def group_size(steps_per_batch: int | str, trainer: Any, resident: bool) -> int:
    """Training batches per Lightning batch: `steps_per_batch` itself, or for "auto"
    AUTO_STEPS_PER_BATCH where grouping changes nothing asked for (resident data, a trainer
    whose options count no batches), else 1. `steps_per_batch` is trusted:
    nnlab.speed.check_speed validated it."""
    if steps_per_batch != "auto":
        return int(steps_per_batch)
    if not resident or counts_batches(trainer):
        return 1
    return AUTO_STEPS_PER_BATCH


class StepGroups:
    """A TensorBatches loader whose items are BatchGroups of `size` consecutive batches (the
    epoch's last group may be shorter). Lightning sees it as the loader: it reads `sampler`
    (set_epoch per epoch, so the order is the loader's own) and its length in groups."""

    def __init__(self, loader: TensorBatches, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.loader, self.batches_per_item = loader, size
        self.sampler = loader.sampler
        self.batch_sampler = None  # Lightning inspects loaders like DataLoaders

    @property
    def num_batches(self) -> int:
        """Batches per epoch (however many make up one group)."""
        return self.loader.num_batches

    def __len__(self) -> int:
        return -(-self.num_batches // self.batches_per_item)

    def __iter__(self) -> Iterator[BatchGroup]:
        order = self.loader.sampler.indices(self.loader.x.device)  # after set_epoch
        starts = range(0, len(self.loader.sampler), self.loader.batch_size)
        for i in range(0, len(starts), self.batches_per_item):
            yield BatchGroup(self.loader, order, starts[i : i + self.batches_per_item])
