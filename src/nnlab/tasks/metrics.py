"""What a task module logs: which way a metric should go, which ones may pick the best
checkpoint, and the epoch sums that training and evaluation steps add to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

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


# self.log options for a value already the same on every DDP rank: "synced" with max over the
# ranks, which keeps it exact (a mean rounds), where logging without sync_dist makes Lightning
# warn that epoch values should be synced.
SAME_ON_EVERY_RANK: dict[str, Any] = {"sync_dist": True, "reduce_fx": "max"}


def sum_over_ranks(trainer: Any, device: torch.device) -> Callable[[Tensor], Tensor] | None:
    """What sums a tensor over the DDP ranks of `trainer` (moved to `device`, where the
    backend reduces); None in a single process."""
    if trainer.world_size == 1:
        return None
    return lambda t: trainer.strategy.reduce(t.to(device), reduce_op="sum")


class EpochSums:
    """Per stage ("train", "val", "test"): sums over the epoch's samples, on the device (the
    loss × batch size, and for training a task's `train_sums`), and the sample count, on the
    host. A step adds to them without reading anything back; the epoch's means are computed
    once, at its end.

    Under DDP the means are over every rank's samples: the sums and counts are summed over the
    ranks first (`means(stage, reduce)`), never averaged as per-rank means, so ranks holding
    different numbers of samples (unpadded evaluation shards) weigh each sample once."""

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

    def means(
        self, stage: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The stage's epoch means ({"val/loss": ...}; none without samples), then zeroes it.

        reduce: sums a tensor over the DDP ranks (`sum_over_ranks`), called once
        on every rank with the totals and the count packed together; None: one process. Every
        rank then returns the same means, over all ranks' samples. A rank without samples
        contributes zeros (it must still call this: the reduction is collective)."""
        totals, n = self.totals[stage], self.samples[stage]
        if reduce is not None:
            totals, n = self._summed(totals, n, reduce)
        means = {f"{stage}/{name}": total / n for name, total in totals.items()} if n else {}
        self.zero(stage)
        self.samples[stage] = 0
        return means

    def _summed(
        self,
        totals: dict[str, torch.Tensor],
        n: int,
        reduce: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[dict[str, torch.Tensor], int]:
        """(totals, count) summed over the ranks in one collective. float64 holds counts and
        float32 sums exactly; the sums go back to float32 so that dividing them rounds as one
        process's float32 totals do (a count of correct answers gives the same accuracy)."""
        if "loss" not in totals:  # no sample on this rank (evaluation shards are uneven)
            device = next((t.device for t in totals.values()), None)
            totals = {"loss": torch.zeros((), dtype=torch.float32, device=device)}
        names = list(totals)
        packed = torch.stack([totals[name].double() for name in names])
        packed = reduce(torch.cat([packed, packed.new_tensor([n])]))
        summed = packed[:-1].float()
        return dict(zip(names, summed, strict=True)), int(packed[-1].item())

    def zero(self, stage: str) -> None:
        """Zeroes the stage's totals in place (a captured step holds their addresses)."""
        for total in self.totals[stage].values():
            total.zero_()
