"""The loss registry: a loss's name (the file name in configs/loss/) maps to a TaskLoss class,
which knows the tasks it fits and how their targets are shaped. Every one is a negative
log-likelihood: MSE ⇔ Gaussian, L1 ⇔ Laplace, BCE ⇔ Bernoulli, cross-entropy ⇔ categorical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.core import ConfigError
from nnlab.core.registry import Entry, Registry
from nnlab.core.tasks import BINARY, MULTICLASS, REGRESSION, TASKS


class TaskLoss(nn.Module):
    """A loss on (network output, target) for the tasks in `tasks`."""

    tasks: ClassVar[tuple[str, ...]]


class MSELoss(TaskLoss):
    tasks = (REGRESSION,)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.view_as(output))


class L1Loss(TaskLoss):
    tasks = (REGRESSION,)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target.view_as(output))


class HuberLoss(TaskLoss):
    tasks = (REGRESSION,)

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        if not delta > 0:
            raise ConfigError(f"loss.delta must be > 0, got {delta}")
        self.delta = delta

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(output, target.view_as(output), delta=self.delta)


class BCEWithLogitsLoss(TaskLoss):
    """Bernoulli NLL of sigmoid(logit): softplus(z) − y·z, stable for any z."""

    tasks = (BINARY,)

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
    """Categorical NLL of softmax(logits), via log-sum-exp. `num_classes` is None while the
    data is not loaded yet (config checks): the class weights' count is then not checked."""

    tasks = (MULTICLASS,)

    def __init__(
        self,
        num_classes: int | None,
        label_smoothing: float = 0.0,
        weight: list[float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        if weight is not None and num_classes is not None and len(weight) != num_classes:
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


@dataclass(frozen=True, kw_only=True)
class Loss(Entry):
    """A loss: its factory builds the TaskLoss, given the class count if it declares
    `num_classes` in passed_in."""

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks it can train: its TaskLoss class's (`auto`: every task)."""
        return getattr(self.factory, "tasks", TASKS)


def _auto(task: str, default: str | None, num_classes: int | None) -> TaskLoss:
    """loss=auto: `default`, the task's maximum-likelihood loss, which its task module names
    (nnlab.tasks: each task's `default_loss`)."""
    if default is None:
        raise ValueError(f"loss=auto needs the {task} task's default loss")
    return LOSSES.build(default, num_classes=num_classes)


LOSSES: Registry[Loss] = Registry(
    "loss",
    [
        Loss(name="auto", factory=_auto, passed_in=("task", "default", "num_classes")),
        Loss(name="mse", factory=MSELoss),
        Loss(name="l1", factory=L1Loss),
        Loss(name="huber", factory=HuberLoss),
        Loss(name="bce_with_logits", factory=BCEWithLogitsLoss),
        Loss(name="cross_entropy", factory=CrossEntropyLoss, passed_in=("num_classes",)),
    ],
    default="auto",
)


def valid_losses(task: str) -> list[str]:
    """The loss options that can train a `task`."""
    return [entry.name for entry in LOSSES if task in entry.tasks]


def check_task(cfg: str | dict[str, Any] | None, task: str) -> Loss:
    """The registry entry of a loss config; raises if the loss cannot train a `task`."""
    entry, _ = LOSSES.parse(cfg)
    if task not in entry.tasks:
        raise ConfigError(
            f"loss={entry.name} cannot train a {task} task; valid losses for {task}: "
            f"{', '.join(valid_losses(task))}"
        )
    return entry


def create_loss(
    cfg: str | dict[str, Any] | None,
    task: str,
    num_outputs: int | None = None,
    default: str | None = None,
) -> TaskLoss:
    """The loss module for a loss config (a name or {name, **options}) on a task with
    `num_outputs`; None while the data is not loaded yet (config checks): class counts are
    then not checked. loss=auto builds `default`, the task's own loss (its `default_loss`)."""
    check_task(cfg, task)
    return LOSSES.build(cfg, task=task, default=default, num_classes=num_outputs)
