"""Binary classification: one logit per sample; logistic regression with model=linear."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from nnlab.core.tasks import BINARY
from nnlab.data.spec import DataSpec
from nnlab.tasks.classifier import ClassifierTask


class BinaryTask(ClassifierTask):
    """Logistic regression: a linear score, the sigmoid link, the Bernoulli likelihood, whose
    negative log is BCE (any network's single logit takes the linear score's place)."""

    task = BINARY
    default_loss = "bce_with_logits"
    monitor, monitor_mode = "val/acc", "max"

    @classmethod
    def output_size(cls, spec: DataSpec) -> int:
        """One logit z: the log-odds of class 1."""
        return 1

    def link(self, output: torch.Tensor) -> torch.Tensor:
        """P(y = 1 | x) = sigmoid(z), z the single logit."""
        return torch.sigmoid(output.squeeze(-1))

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        p1 = self.link(output)
        return torch.stack([1 - p1, p1], dim=-1)

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        """Class 1 where the logit is > 0 (its probability > 1/2)."""
        return (output.squeeze(-1) > 0).long()

    def make_metrics(self) -> MetricCollection:
        # A binned AUROC keeps constant memory instead of storing every score of the epoch.
        return MetricCollection(
            {"acc": BinaryAccuracy(), "f1": BinaryF1Score(), "auroc": BinaryAUROC(thresholds=200)}
        )

    def metric_inputs(self, output, y):
        return self.link(output), y.long()

    def train_sums(self, output, y):
        return {"acc": (self.predicted(output) == y.long()).sum(dtype=torch.float32)}
