"""What a run shows about its speed: SpeedReport (time to the first step, throughput, peak
memory; opt in with `+callbacks.speed_report._target_=nnlab.speed.SpeedReport`) and
StepProgressBar (Lightning's progress bar, counting optimizer steps also when
speed.steps_per_batch groups them)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import TQDMProgressBar

from nnlab.data.loaders import BatchGroup

log = logging.getLogger(__name__)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (NaN where the OS does not say: Windows)."""
    try:
        import resource  # POSIX only
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else kB


class SpeedReport(Callback):
    """Logs, from rank 0: seconds from process launch to the first training step, training
    throughput (samples/s over the fit, validation included), peak host RSS and peak GPU memory.

    Opt in with `+callbacks.speed_report._target_=nnlab.speed.SpeedReport`.
    """

    def __init__(self) -> None:
        self.first_step: float | None = None
        self.samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step is None:
            self.first_step = time.time()
            log.info(
                "speed: %.2f s from launch to the first training step",
                self.first_step - _launch_time(),
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # A batch, or a group of batches (speed.steps_per_batch).
        self.samples += batch.num_samples if isinstance(batch, BatchGroup) else len(batch[0])

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or self.first_step is None:
            return
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.time() - self.first_step
        rss = peak_rss_mib()
        gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
        log.info(
            "speed: %d samples in %.2f s (%.0f samples/s, validation included); peak RSS %.0f MiB;"
            " peak GPU memory %.0f MiB",
            self.samples,
            seconds,
            self.samples / seconds,
            rss,
            gpu,
        )


class StepProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar, counting training steps instead of Lightning batches.

    With speed.steps_per_batch above 1 a Lightning batch is a group of optimizer steps; this
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


def _launch_time() -> float:
    """When this process started (epoch seconds), from /proc (Linux); now elsewhere."""
    try:
        # Field 22 of /proc/<pid>/stat (starttime, clock ticks after boot); the fields after
        # the ")" that closes the command name start at field 3.
        stat = Path(f"/proc/{os.getpid()}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in lines if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
