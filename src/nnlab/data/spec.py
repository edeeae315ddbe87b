"""What a model needs to know about its data, and nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nnlab.core.tasks import TASKS


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
    """The task, the shape of one input and the number of network outputs.

    num_outputs: regression targets (1 for a scalar), 1 for binary (one logit), the class count
    for multiclass.
    """

    task: str
    input_shape: tuple[int, ...]
    num_outputs: int
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
        return cls(
            task=d["task"],
            input_shape=tuple(d["input_shape"]),
            num_outputs=int(d["num_outputs"]),
            class_names=tuple(d.get("class_names", ())),
            target_scale=TargetScale(**d["target_scale"]) if d.get("target_scale") else None,
        )
