"""What a model needs to know about its data, and nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TASKS = ("regression", "binary", "multiclass")


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
        )
