"""Regression: linear regression with model=linear, any MLP otherwise."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.wrappers import MetricInputTransformer

from nnlab.core.tasks import REGRESSION
from nnlab.data.spec import DataSpec, TargetScale
from nnlab.tasks.base import TaskModule


class Rescaled(MetricInputTransformer):
    """A metric computed on predictions and targets mapped back from the training scale:
    to the original units (`log_scale=False`) or to the log scale of a log target."""

    def __init__(self, metric: MeanSquaredError | MeanAbsoluteError, scale: TargetScale,
                 log_scale: bool = False) -> None:  # fmt: skip
        super().__init__(metric)
        self.scale, self.log_scale = scale, log_scale

    def _map(self, t: torch.Tensor) -> torch.Tensor:
        # float64: exp of a log price in float32 would cost dollars of rounding.
        t = t.double()
        return self.scale.to_model_scale(t) if self.log_scale else self.scale.to_original(t)

    def transform_pred(self, pred: torch.Tensor) -> torch.Tensor:
        return self._map(pred)

    def transform_target(self, target: torch.Tensor) -> torch.Tensor:
        return self._map(target)


class RegressionTask(TaskModule):
    """Linear regression: a linear score, the identity link, the Gaussian likelihood, whose
    negative log is the MSE (up to constants; any network's output takes the score's place).

    Logs mse, mae and r2 on the training scale; when the data scaled its target (spec
    `target_scale`), also rmse_orig and mae_orig in the target's own units (e.g. dollars) and,
    for a log target, rmse_log (the RMSE of log values: Kaggle's house-price metric)."""

    task = REGRESSION
    default_loss = "mse"
    monitor, monitor_mode = "val/mse", "min"

    @classmethod
    def output_size(cls, spec: DataSpec) -> int:
        """One output per target: the mean of each one's Gaussian."""
        return spec.num_targets

    def link(self, output: torch.Tensor) -> torch.Tensor:
        """The Gaussian's mean is the output itself."""
        return output

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        return self.link(output)

    def in_target_units(self, t: torch.Tensor) -> torch.Tensor:
        """Outputs or targets in the target's own units (float64: exp of a float32 log price
        would cost dollars of rounding); as they are when the data did not scale its target."""
        scale = self.spec.target_scale
        return t if scale is None else scale.to_original(t.double())

    def prediction_columns(self, all_probabilities: bool, classes: list[str]) -> list[str]:
        k = self.num_outputs
        return ["prediction"] if k == 1 else [f"prediction_{i}" for i in range(k)]

    def prediction_values(
        self, output: torch.Tensor, predicted: torch.Tensor, labels: list[str],
        all_probabilities: bool,
    ) -> tuple[list[list[Any]], torch.Tensor]:  # fmt: skip
        y = self.in_target_units(output.double())
        return y.tolist(), y

    def make_metrics(self) -> MetricCollection:
        n = self.num_outputs
        # Several targets: R² averaged over them; one target: the usual R².
        r2 = R2Score(multioutput="uniform_average") if n > 1 else R2Score()
        metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": r2}
        scale = self.spec.target_scale
        if scale is not None:
            metrics["rmse_orig"] = Rescaled(MeanSquaredError(squared=False), scale)
            metrics["mae_orig"] = Rescaled(MeanAbsoluteError(), scale)
            if scale.log:
                metrics["rmse_log"] = Rescaled(MeanSquaredError(squared=False), scale, True)
        # Compute groups share state between metrics whose states look alike; wrappers hold no
        # state of their own, so grouping would leave all but one of them never updated.
        return MetricCollection(metrics, compute_groups=False)

    def metric_inputs(self, output, y):
        return (output.squeeze(-1), y) if self.num_outputs == 1 else (output, y)

    def train_sums(self, output, y):
        pred, target = self.metric_inputs(output, y)
        # Per-sample mean over targets, so that sum / samples is MeanSquaredError's value.
        se = (pred - target).square()
        return {"mse": (se if se.dim() == 1 else se.mean(dim=-1)).sum()}
