"""How many training batches the resident loader hands each training step: the datamodule's
`steps_per_batch` (speed.steps_per_batch), "auto" resolved for the trainer it is fitted by.

Groups of batches (BatchGroup) let a task module take several exact optimizer steps per
Lightning batch (nnlab.speed.steps), so that Lightning's per-batch work (about 1 ms on a CPU
core) costs a sixteenth of that per step (docs/speed.md).
"""

from __future__ import annotations

from typing import Any

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


def batches_per_step_group(steps_per_batch: int | str, trainer: Any, resident: bool) -> int:
    """Training batches per loader item: `steps_per_batch` itself, or for "auto"
    AUTO_STEPS_PER_BATCH where grouping changes nothing asked for (resident data, a trainer
    whose options count no batches), else 1. Without a trainer (no fit) "auto" is 1.
    `steps_per_batch` is trusted: nnlab.speed.check_speed validated it."""
    if steps_per_batch != "auto":
        return int(steps_per_batch)
    if trainer is None or not resident or counts_batches(trainer):
        return 1
    return AUTO_STEPS_PER_BATCH
