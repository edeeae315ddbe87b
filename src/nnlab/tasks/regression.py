"""Regression: linear regression with model=linear, any MLP otherwise."""

from __future__ import annotations

from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from nnlab.tasks.base import TaskModule


class RegressionTask(TaskModule):
    task = "regression"
    monitor = "val/mse"

    def make_metrics(self) -> MetricCollection:
        n = self.spec.num_outputs
        # Several targets: R² averaged over them; one target: the usual R².
        r2 = R2Score(multioutput="uniform_average") if n > 1 else R2Score()
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": r2})

    def metric_inputs(self, output, y):
        return (output.squeeze(-1), y) if self.spec.num_outputs == 1 else (output, y)

    def train_sums(self, output, y):
        pred, target = self.metric_inputs(output, y)
        # Per-sample mean over targets, so that sum / samples is MeanSquaredError's value.
        se = (pred - target).square()
        return {"mse": (se if se.dim() == 1 else se.mean(dim=-1)).sum()}
