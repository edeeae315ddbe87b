"""Binary classification: one logit per sample; logistic regression with model=linear."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from nnlab.tasks.base import TaskModule


class BinaryTask(TaskModule):
    task = "binary"
    monitor = "val/acc"

    def make_metrics(self) -> MetricCollection:
        # A binned AUROC keeps constant memory instead of storing every score of the epoch.
        return MetricCollection(
            {"acc": BinaryAccuracy(), "f1": BinaryF1Score(), "auroc": BinaryAUROC(thresholds=200)}
        )

    def metric_inputs(self, output, y):
        return torch.sigmoid(output.squeeze(-1)), y.long()

    def train_sums(self, output, y):
        return {"acc": ((output.squeeze(-1) > 0).long() == y.long()).sum(dtype=torch.float32)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self(x).squeeze(-1) > 0).long()
