"""What a model needs to know about its data, and nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nnlab.core.tasks import REGRESSION, TASKS


@dataclass(frozen=True)
class TargetScale:
    """How a regression target y was turned into the training target t, so that metrics can be
    reported in y's own units (dollars, for house prices):

        t = (f(y) − mean) / std,  f = log if `log` else the identity,

    with mean and std from the training split only.
    """

    mean: float
    std: float
    log: bool = False

    def to_model_scale(self, t: Any) -> Any:
        """f(y): the training target before standardization (log dollars when `log`)."""
        return t * self.std + self.mean

    def to_original(self, t: Any) -> Any:
        """y, in the target's own units."""
        u = self.to_model_scale(t)
        return u.exp() if self.log else u


@dataclass(frozen=True)
class DataSpec:
    """The task, the shape of one input, and the targets: how many numbers one target holds
    (`num_targets`: k for k regression targets, 1 for a scalar target or a class label) and
    the classes' names (classification). How many outputs a network needs for them is the
    task's to say (nnlab.tasks: TaskModule.output_size).
    """

    task: str
    input_shape: tuple[int, ...]
    num_targets: int = 1
    class_names: tuple[str, ...] = field(default=())
    # Regression only: how targets were scaled for training (None: used as given).
    target_scale: TargetScale | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")

    @property
    def in_features(self) -> int:
        n = 1
        for d in self.input_shape:
            n *= d
        return n

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        """The spec of `to_dict`; also an older checkpoint's, which gives the network's outputs
        (`num_outputs`) instead of the targets' count (the same for regression)."""
        class_names = tuple(d.get("class_names", ()))
        if "num_targets" in d:
            num_targets = int(d["num_targets"])
        elif d["task"] == REGRESSION:
            num_targets = int(d["num_outputs"])
        else:  # a class label; classes unnamed then are named as data sets name them now
            num_targets = 1
            count = max(int(d["num_outputs"]), 2)
            class_names = class_names or tuple(str(i) for i in range(count))
        return cls(
            task=d["task"],
            input_shape=tuple(d["input_shape"]),
            num_targets=num_targets,
            class_names=class_names,
            target_scale=TargetScale(**d["target_scale"]) if d.get("target_scale") else None,
        )
