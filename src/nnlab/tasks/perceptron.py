"""The perceptron learning rule as a LightningModule: manual optimization, no autograd."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score
from torchmetrics.wrappers import MetricInputTransformer

from nnlab.nn.networks import Perceptron
from nnlab.tasks.binary import BinaryTask


class StepOutput(MetricInputTransformer):
    """A binary metric on the perceptron's step output, 1[score ≥ 0], from its scores."""

    def transform_pred(self, pred: torch.Tensor) -> torch.Tensor:
        return Perceptron.step(pred).long()


class Probability(MetricInputTransformer):
    """A binary metric on sigmoid(score): AUROC ranks by the score, thresholds in [0, 1]."""

    def transform_pred(self, pred: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(pred)


class PerceptronTask(BinaryTask):
    """The perceptron: a linear score and the step output, trained by its own rule rather
    than by a likelihood's gradient (its probabilities, the sigmoid of the score, are a gauge).

    Applies w := w + lr·(y − ŷ)·x sample by sample, ŷ = 1[w·x + b ≥ 0] (accuracy and F1
    are of that step output); stops once an epoch makes no mistake
    (on linearly separable data it always does: the perceptron convergence theorem).

    Logs train/mistakes (per epoch) besides the binary metrics; optimizer, scheduler and
    loss configs do not apply (val/test still log the task's loss on the scores, as a gauge).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.net, Perceptron):
            raise ValueError("PerceptronTask trains model=perceptron only")
        self.automatic_optimization = False
        self.register_buffer("epoch_mistakes", torch.zeros((), dtype=torch.long), persistent=False)

    def make_metrics(self) -> MetricCollection:
        # Accuracy and F1 of the step output, whose boundary (score ≥ 0) a probability
        # threshold of 0.5 would get wrong at a score of exactly 0 (the rule's start). Wrappers
        # hold no state of their own, so compute groups would leave all but one never updated.
        return MetricCollection(
            {
                "acc": StepOutput(BinaryAccuracy()),
                "f1": StepOutput(BinaryF1Score()),
                "auroc": Probability(BinaryAUROC(thresholds=200)),
            },
            compute_groups=False,
        )

    def metric_inputs(self, output, y):
        return output.squeeze(-1), y.long()

    def train_sums(self, output, y):
        return {"acc": (self.predicted(output) == y.long()).sum(dtype=torch.float32)}

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        """The step output 1[score ≥ 0] (the score is the single output)."""
        return Perceptron.step(output.squeeze(-1)).long()

    def on_train_epoch_start(self) -> None:
        self.epoch_mistakes.zero_()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        delta_w, delta_b, mistakes = self.net.rule_update(x, y)
        # The rule's change is applied by SGD(lr=1) as the "gradient" −Δ, so that Lightning
        # counts a step (checkpointing, max_steps and logging key off optimizer steps).
        optimizer = self.optimizers()
        self.net.linear.weight.grad = -delta_w
        self.net.linear.bias.grad = -delta_b
        optimizer.step()
        optimizer.zero_grad()
        self.epoch_mistakes += mistakes
        self.log("train/mistakes", mistakes.float(), on_step=False, on_epoch=True, reduce_fx="sum")
        with torch.no_grad():
            self.shared_step(batch, "train")

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        # One host sync per epoch. Under DDP, Lightning stops only when every rank agrees.
        if int(self.epoch_mistakes) == 0:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.net.parameters(), lr=1.0)
