"""Losses by name (the file names in configs/loss/), each knowing which tasks it fits and how
that task's targets are shaped. Every one is a negative log-likelihood:
MSE ⇔ Gaussian, L1 ⇔ Laplace, BCE ⇔ Bernoulli, cross-entropy ⇔ categorical.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.core import ConfigError


class TaskLoss(nn.Module):
    """A loss on (network output, target) for the tasks in `tasks`."""

    tasks: ClassVar[tuple[str, ...]]


class MSELoss(TaskLoss):
    tasks = ("regression",)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.view_as(output))


class L1Loss(TaskLoss):
    tasks = ("regression",)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target.view_as(output))


class HuberLoss(TaskLoss):
    tasks = ("regression",)

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        if not delta > 0:
            raise ConfigError(f"loss.delta must be > 0, got {delta}")
        self.delta = delta

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(output, target.view_as(output), delta=self.delta)


class BCEWithLogitsLoss(TaskLoss):
    """Bernoulli NLL of sigmoid(logit): softplus(z) − y·z, stable for any z."""

    tasks = ("binary",)

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        if pos_weight is not None and pos_weight <= 0:
            raise ConfigError(f"loss.pos_weight must be > 0, got {pos_weight}")
        weight = torch.tensor(1.0 if pos_weight is None else float(pos_weight))
        self.register_buffer("pos_weight", weight, persistent=False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            output.squeeze(-1), target.to(output.dtype), pos_weight=self.pos_weight
        )


class CrossEntropyLoss(TaskLoss):
    """Categorical NLL of softmax(logits), via log-sum-exp."""

    tasks = ("multiclass",)

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.0,
        weight: list[float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        if weight is not None and len(weight) != num_classes:
            raise ConfigError(
                f"loss.weight has {len(weight)} entries but the data has {num_classes} classes"
            )
        self.label_smoothing = label_smoothing
        w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", w, persistent=False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            output, target, weight=self.weight, label_smoothing=self.label_smoothing
        )


LOSSES: dict[str, type[TaskLoss]] = {
    "mse": MSELoss,
    "l1": L1Loss,
    "huber": HuberLoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "cross_entropy": CrossEntropyLoss,
}
# loss=auto: each task's maximum-likelihood loss.
DEFAULT_LOSS = {"regression": "mse", "binary": "bce_with_logits", "multiclass": "cross_entropy"}


def valid_losses(task: str) -> list[str]:
    """The loss options that can train a `task`."""
    return ["auto", *(name for name, cls in LOSSES.items() if task in cls.tasks)]


def resolve_name(cfg: dict[str, Any] | None, task: str) -> str:
    """The registry name of a loss config for `task`; raises if the loss cannot train it."""
    name = (cfg or {}).get("name", "auto")
    if name == "auto":
        return DEFAULT_LOSS[task]
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid: auto, {', '.join(LOSSES)}")
    if task not in LOSSES[name].tasks:
        raise ConfigError(
            f"loss={name} cannot train a {task} task; valid losses for {task}: "
            f"{', '.join(valid_losses(task))}"
        )
    return name


def create_loss(cfg: dict[str, Any] | None, task: str, num_outputs: int | None) -> TaskLoss:
    """The loss module for a loss config ({name, **options}) on a task with `num_outputs`;
    None while the data is not loaded yet (config checks): class counts are then not checked."""
    name = resolve_name(cfg, task)
    options = {k: v for k, v in (cfg or {}).items() if k != "name"}
    if (cfg or {}).get("name", "auto") == "auto":
        options = {}
    if name == "cross_entropy":
        weight = options.get("weight")
        unknown = len(weight) if isinstance(weight, list) else 2
        options["num_classes"] = unknown if num_outputs is None else num_outputs
    return LOSSES[name](**options)
