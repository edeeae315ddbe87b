"""What a run shows about its speed: SpeedReport (time to the first step, throughput, peak
memory; opt in with `+callbacks.speed_report._target_=nnlab.speed.SpeedReport`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

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
