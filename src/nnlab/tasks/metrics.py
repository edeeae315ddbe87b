"""What a task module logs: which way a metric should go, which ones may pick the best
checkpoint, and the epoch sums that training and evaluation steps add to."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from nnlab.core import ConfigError

# Direction of a metric, from the last part of its name (val/acc → acc).
HIGHER_IS_BETTER = {"acc", "f1", "auroc", "r2"}
LOWER_IS_BETTER = {"loss", "mse", "mae", "rmse", "mistakes", "rmse_orig", "mae_orig", "rmse_log"}


def metric_mode(metric: str) -> str:
    """ "max" or "min" for a logged metric name such as val/acc or val/loss."""
    leaf = metric.rsplit("/", 1)[-1].removesuffix("_best")
    if leaf in HIGHER_IS_BETTER:
        return "max"
    if leaf in LOWER_IS_BETTER:
        return "min"
    raise ConfigError(
        f"cannot tell whether {metric!r} should go up or down; set optimized_mode=max or min"
    )


def check_monitor(metric: str, task: str, logged: Iterable[str]) -> None:
    """Refuses a metric to pick checkpoints by (optimized_metric) that a `task` module does not
    log each validation epoch (`logged`), naming those it does; train/ metrics are not judged."""
    if metric.startswith("train/"):
        return
    valid = sorted(set(logged))
    if metric not in valid:
        raise ConfigError(
            f"optimized_metric={metric} is not logged by a {task} task; "
            f"valid: {', '.join(valid)} (or a train/ metric)"
        )


class EpochSums:
    """Per stage ("train", "val", "test"): sums over the epoch's samples, on the device (the
    loss × batch size, and for training a task's `train_sums`), and the sample count, on the
    host. A step adds to them without reading anything back; the epoch's means are computed
    once, at its end."""

    def __init__(self, stages: Iterable[str]) -> None:
        self.totals: dict[str, dict[str, torch.Tensor]] = {stage: {} for stage in stages}
        self.samples = dict.fromkeys(self.totals, 0)

    def add(self, stage: str, loss: torch.Tensor, n: int, sums: dict[str, torch.Tensor]) -> None:
        """Adds a batch's mean loss × its n samples, and its other sums, into the stage's
        totals (device tensors, made at first use). The sample count is the caller's to add:
        a CUDA graph replays this, but not host-side counting."""
        totals = self.totals[stage]
        if "loss" not in totals:
            for name in ("loss", *sums):
                totals[name] = torch.zeros((), dtype=torch.float32, device=loss.device)
        totals["loss"].add_(loss, alpha=n)  # one kernel: no separate loss * n
        for name, value in sums.items():
            totals[name].add_(value)

    def means(self, stage: str) -> dict[str, torch.Tensor]:
        """The stage's epoch means ({"val/loss": ...}; none without samples), then zeroes it."""
        n = self.samples[stage]
        totals = self.totals[stage]
        means = {f"{stage}/{name}": total / n for name, total in totals.items()} if n else {}
        self.zero(stage)
        self.samples[stage] = 0
        return means

    def zero(self, stage: str) -> None:
        """Zeroes the stage's totals in place (a captured step holds their addresses)."""
        for total in self.totals[stage].values():
            total.zero_()
