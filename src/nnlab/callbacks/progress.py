"""The progress bar of the default callbacks: Lightning's, counting optimizer steps also where
the fast path hands several to one Lightning batch (speed.steps_per_batch)."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar, counting training steps instead of Lightning batches.

    With speed.steps_per_batch above 1 a Lightning batch is a group of optimizer steps (its
    loader says how many: `batches_per_item`, nnlab.speed.groups.StepGroups); this
    bar still reads `Epoch 0: 399/399` for an epoch of 399 batches, and `refresh_rate` still
    counts steps. Without groups it is Lightning's bar unchanged.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_start_step = 0  # global_step when the epoch began
        self._shown = 0  # steps of this epoch the bar shows

    def _group(self) -> int:
        """Steps per Lightning batch (1 without groups)."""
        return getattr(self.trainer.train_dataloader, "batches_per_item", 1)

    @property
    def total_train_batches(self) -> int | float:
        total = super().total_train_batches
        group = self._group()
        if group == 1 or total == float("inf"):
            return total
        steps = self.trainer.num_training_batches * group
        batches = getattr(self.trainer.train_dataloader, "num_batches", steps)
        steps = min(steps, batches)  # the epoch's last group may be short
        max_steps = self.trainer.max_steps
        if self.trainer.max_epochs == -1 and max_steps is not None and max_steps > 0:
            steps = min(steps, max_steps - self.trainer.global_step)
        return steps

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_start_step, self._shown = trainer.global_step, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._group() == 1:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        bar = self.train_progress_bar
        if bar is None or not self.is_enabled:
            return
        n = trainer.global_step - self._epoch_start_step
        # Steps arrive in groups: redraw once at least refresh_rate steps were not shown.
        if n - self._shown >= self.refresh_rate or n == bar.total:
            self._shown = n
            if not bar.disable:
                bar.n = n
                bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))
