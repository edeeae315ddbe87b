"""LightningModules: one per task, sharing one small base. `module_class` is the one place that
picks the module for a data set's task and a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab.core.components import NETWORKS
from nnlab.data.spec import DataSpec
from nnlab.nn.networks import Perceptron
from nnlab.tasks.base import TaskModule
from nnlab.tasks.binary import BinaryTask
from nnlab.tasks.multiclass import MulticlassTask
from nnlab.tasks.perceptron import PerceptronTask
from nnlab.tasks.regression import RegressionTask

__all__ = [
    "BinaryTask",
    "MulticlassTask",
    "PerceptronTask",
    "RegressionTask",
    "TaskModule",
    "build_module",
    "module_class",
]

# The gradient-trained module of each task (nnlab.core.tasks.TASKS).
BY_TASK: dict[str, type[TaskModule]] = {
    cls.task: cls for cls in (RegressionTask, BinaryTask, MulticlassTask)
}


def module_class(model: Mapping[str, Any], task: str) -> type[TaskModule]:
    """The task module that trains the network of a model config (its `_target_`) on a `task`:
    the perceptron learning rule for the Perceptron, else the task's gradient-trained module."""
    if issubclass(NETWORKS.lookup(model.get("_target_"), "model._target_"), Perceptron):
        return PerceptronTask
    return BY_TASK[task]


def build_module(cfg: DictConfig, spec: DataSpec) -> TaskModule:
    """The task module for a run config and its data's spec (see module_class)."""
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    return module_class(container["model"], spec.task)(
        spec=spec.to_dict(),
        model=container["model"],
        loss=container.get("loss"),
        optimizer=container.get("optimizer"),
        scheduler=container.get("scheduler") or None,
        data=container["data"],
        speed=container.get("speed"),
    )
