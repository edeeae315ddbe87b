"""Multiclass classification: one logit per class; softmax regression with model=linear."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from nnlab.core.tasks import MULTICLASS
from nnlab.data.spec import DataSpec
from nnlab.tasks.classifier import ClassifierTask


class MulticlassTask(ClassifierTask):
    """Softmax regression: a linear score per class, the softmax link, the categorical
    likelihood, whose negative log is the cross-entropy (any network's logits take the linear
    scores' place)."""

    task = MULTICLASS
    default_loss = "cross_entropy"
    monitor, monitor_mode = "val/acc", "max"

    @classmethod
    def output_size(cls, spec: DataSpec) -> int:
        """One logit per class."""
        return len(spec.class_names)

    def link(self, output: torch.Tensor) -> torch.Tensor:
        """P(y = k | x) = softmax(z)_k, z the logits."""
        return torch.softmax(output, dim=-1)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        return self.link(output)

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        """The class of the largest logit (the most probable)."""
        return output.argmax(dim=-1)

    def make_metrics(self) -> MetricCollection:
        n = self.num_outputs
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=n, average="micro"),
                "f1": MulticlassF1Score(num_classes=n, average="macro"),
            }
        )

    def metric_inputs(self, output, y):
        return output, y

    def train_sums(self, output, y):
        return {"acc": (self.predicted(output) == y).sum(dtype=torch.float32)}
