"""Multiclass classification: one logit per class; softmax regression with model=linear."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from nnlab.tasks.base import TaskModule


class MulticlassTask(TaskModule):
    task = "multiclass"
    monitor = "val/acc"

    def make_metrics(self) -> MetricCollection:
        n = self.spec.num_outputs
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=n, average="micro"),
                "f1": MulticlassF1Score(num_classes=n, average="macro"),
            }
        )

    def metric_inputs(self, output, y):
        return output, y

    def train_sums(self, output, y):
        return {"acc": (output.argmax(dim=-1) == y).sum(dtype=torch.float32)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).argmax(dim=-1)
