"""What binary and multiclass classification share: predictions are classes, written with
their probability (predict.py's columns), from the link's class probabilities."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nnlab.tasks.base import TaskModule


class ClassifierTask(TaskModule):
    """A task whose prediction is a class, and whose link gives each class's probability."""

    def probabilities(self, output: Tensor) -> Tensor:
        """Each class's probability (N, classes) from the raw outputs, through the link."""
        raise NotImplementedError

    def confidence(self, output: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted class, its probability) from the raw outputs."""
        predicted = self.predicted(output)
        p = self.probabilities(output)
        return predicted, p.gather(-1, predicted.unsqueeze(-1)).squeeze(-1)

    def prediction_columns(self, all_probabilities: bool, classes: list[str]) -> list[str]:
        values = ["prediction", "probability"]
        return values + [f"probability_{c}" for c in classes] if all_probabilities else values

    def prediction_values(
        self, output: Tensor, predicted: Tensor, labels: list[str], all_probabilities: bool
    ) -> tuple[list[list[Any]], Tensor]:
        probabilities = self.probabilities(output.double())
        rows = []
        for p, label in zip(probabilities.tolist(), predicted.tolist(), strict=True):
            row = [labels[label], p[label]]
            rows.append(row + p if all_probabilities else row)
        return rows, probabilities
