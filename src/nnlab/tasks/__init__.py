"""LightningModules: one per task, sharing one small base."""

from nnlab.tasks.base import TaskModule
from nnlab.tasks.binary import BinaryTask
from nnlab.tasks.multiclass import MulticlassTask
from nnlab.tasks.perceptron import PerceptronTask
from nnlab.tasks.regression import RegressionTask

__all__ = ["BinaryTask", "MulticlassTask", "PerceptronTask", "RegressionTask", "TaskModule"]
