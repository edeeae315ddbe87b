"""The shared LightningModule: builds its network and loss from plain configs, so a checkpoint
alone (its saved hyperparameters) rebuilds the module; logs loss and metrics per epoch.

Steps never sync with the host nor call `self.log` (whose per-call bookkeeping costs more than a
small network's whole step): metrics and loss sums accumulate on the device, and are computed,
logged and reset once per epoch. Training logs train/loss and the task's cheap metric
(`train_sums`: acc or mse), a few tensor ops per step; validation and test log the task's full
torchmetrics collection. The module is plain Lightning: the speed group's fast path (groups
of steps per Lightning batch, a whole-step CUDA graph, fused optimizers) is applied from
outside, by train.py's nnlab.speed.FastPath callback.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MaxMetric, MetricCollection, MinMetric

from nnlab.checkpoints import MODULE_KEY
from nnlab.core import ConfigError
from nnlab.core.components import NETWORKS
from nnlab.data.loaders import Batch
from nnlab.data.spec import DataSpec
from nnlab.nn.losses import create_loss
from nnlab.tasks.divergence import DivergenceWatch
from nnlab.tasks.metrics import (
    SAME_ON_EVERY_RANK,
    EpochSums,
    check_monitor,
    sum_over_ranks,
)

STAGES = ("train", "val", "test")


class TaskModule(L.LightningModule):
    """Trains `model` on a task described by `spec` with `loss` and `optimizer`.

    Args are plain dicts (the resolved configs), saved as hyperparameters:
        spec: the DataSpec as a dict (task, input_shape, num_targets, class_names).
        model: a network config with `_target_` (sizes are filled in from `spec`).
        loss: a loss config ({name, **options}); name "auto" picks the task's own.
        optimizer: a `_partial_` optimizer config.
        scheduler: a `_partial_` LR-scheduler config, or None.
        data: the data config the module was trained on (eval.py rebuilds the data from it).
        speed: the run's speed config (configs/speed), recorded with the others; the module
            does not read it (nnlab.speed.FastPath applies it from outside).
    """

    task: ClassVar[str]
    # Its maximum-likelihood loss: what loss=auto trains with (a name in nnlab.nn.losses).
    default_loss: ClassVar[str]
    # The metric that picks the best checkpoint unless optimized_metric says otherwise, and
    # which way it should go ("max" or "min").
    monitor: ClassVar[str]
    monitor_mode: ClassVar[str]

    def __init__(
        self,
        spec: dict[str, Any],
        model: dict[str, Any],
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        speed: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = DataSpec.from_dict(spec)
        if self.spec.task != self.task:
            name = type(self).__name__
            raise ValueError(f"{name} trains {self.task} tasks, not {self.spec.task}")
        self.num_outputs = self.output_size(self.spec)
        sizes = {
            "in_features": self.spec.in_features,
            "out_features": self.num_outputs,
            "input_shape": tuple(self.spec.input_shape),  # to a network that names it
        }
        # Through the network registry, never Hydra: a checkpoint's config names no import path.
        self.net = NETWORKS.build(model, "model", **sizes)
        self.loss_fn = create_loss(loss, self.task, self.num_outputs, self.default_loss)
        metrics = self.make_metrics()
        # One collection per evaluation stage (keys "val" etc. would clash with nn.Module).
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in STAGES[1:]}
        )
        self.best = MaxMetric() if self.monitor_mode == "max" else MinMetric()
        # Set from outside for a fit by a fast path (nnlab.speed.FastPath): extra keyword
        # arguments of the optimizer's constructor (fused=True, say), and whether training
        # steps are replayed from a CUDA graph, which runs no Python hook (a forward hook, say)
        # and would bake one present at capture into every replay.
        self.optimizer_options: dict[str, Any] = {}
        self.captures_step = False
        self.sums = EpochSums(STAGES)  # loss and train_sums over each stage's epoch
        # Stops training at a non-finite loss or weights (nnlab.tasks.divergence).
        self.divergence = DivergenceWatch()

    # -- what a task provides -----------------------------------------------------------------
    @classmethod
    def output_size(cls, spec: DataSpec) -> int:
        """How many outputs the network needs for this task's targets (spec: the data's)."""
        raise NotImplementedError

    def make_metrics(self) -> MetricCollection:
        raise NotImplementedError

    def metric_inputs(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(predictions, targets) in the form the task's metrics take."""
        raise NotImplementedError

    def train_sums(self, output: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Per-batch sums whose epoch total over the sample count is a train metric (e.g.
        {"acc": number correct}); what a captured step logs, since torchmetrics' updates
        cannot be captured."""
        raise NotImplementedError

    def link(self, output: Tensor) -> Tensor:
        """The link: the mean of the likelihood's distribution from the network's raw outputs
        (identity, sigmoid or softmax)."""
        raise NotImplementedError

    def predicted(self, output: Tensor) -> Tensor:
        """The task's prediction from raw outputs (a value, a class, or a 0/1 label)."""
        raise NotImplementedError

    def prediction_columns(self, all_probabilities: bool, classes: list[str]) -> list[str]:
        """The value columns of predict.py's CSV (between the input's and the error's):
        `classes` names the classes; `all_probabilities` adds one column per class."""
        raise NotImplementedError

    def prediction_values(
        self, output: Tensor, predicted: Tensor, labels: list[str], all_probabilities: bool
    ) -> tuple[list[list[Any]], Tensor]:
        """The value cells of each output row, in `prediction_columns` order (a class is
        written as its label in `labels`), and the float64 numbers they come from (one row
        each), whose finiteness decides whether the row is an error."""
        raise NotImplementedError

    def predict(self, x: Tensor) -> Tensor:
        """The task's prediction for inputs x (a value, a class, or a 0/1 label)."""
        return self.predicted(self(x))

    # -- forward, loss and metrics ------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def shared_step(self, batch: Batch, stage: str, count: bool = True) -> Tensor:
        """Loss of one batch; adds to the stage's epoch sums and metrics, and a training step
        to the divergence record. count=False leaves the sample count and the divergence record
        to the caller: a CUDA graph's replay repeats no host work, and the warm-up steps before
        its capture must not be recorded (nnlab.speed.steps)."""
        x, y = batch
        output = self(x)
        loss = self.loss_fn(output, y)
        if stage == "train":
            sums = self.train_sums(output.detach(), y)
        else:
            sums = {}
            self.metrics[f"{stage}_metrics"].update(*self.metric_inputs(output.detach(), y))
        self.sums.add(stage, loss.detach(), len(x), sums)
        if count:
            self.sums.samples[stage] += len(x)
            if stage == "train":
                self.divergence.after_step(self, loss.detach(), self._train_loss_sum(), batch)
        return loss

    def _train_loss_sum(self) -> Tensor | None:
        """The device sum of this training epoch's losses (× batch sizes), once a step made it."""
        return self.sums.totals["train"].get("loss")

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")  # Lightning does backward and step

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self.predict(x)

    # -- once per epoch -----------------------------------------------------------------------
    def _log_epoch(self, stage: str) -> dict[str, Tensor]:
        """Logs and resets the stage's epoch metrics; returns the logged values. Under DDP they
        are over all ranks' samples, the same on every rank (EpochSums sums over the ranks,
        torchmetrics syncs its states itself)."""
        means = self.sums.means(stage, sum_over_ranks(self.trainer, self.device))
        values = {}
        if stage != "train":
            metrics = self.metrics[f"{stage}_metrics"]
            values = metrics.compute() if means else {}  # no means: no rank had a sample
            metrics.reset()
        self.log_dict({**values, **means}, **SAME_ON_EVERY_RANK)
        return {**values, **means}

    def on_train_epoch_end(self) -> None:
        # Before the loss sum is reset, and before checkpoint callbacks save (Lightning calls
        # them after the module's hook).
        self.divergence.check(self, self._train_loss_sum())
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        if self.trainer.sanity_checking or self.monitor not in values:
            return
        self.best.update(values[self.monitor])
        self.log(f"{self.monitor}_best", self.best.compute(), prog_bar=True, **SAME_ON_EVERY_RANK)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    # -- optimizers ---------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        if not hp.optimizer:
            raise ConfigError("no optimizer config given")
        optimizer = instantiate(hp.optimizer, _convert_="all")(
            params=self.parameters(), **self.optimizer_options
        )
        if not hp.scheduler:
            return optimizer
        scheduler = instantiate(hp.scheduler, _convert_="all")(optimizer=optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        # Lightning steps a plateau scheduler on this metric; under the fast path's manual
        # steps it does (and Lightning would warn about an unused monitor).
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and self.automatic_optimization:
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    # -- fitting ------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # The sanity-check validation before training must not count as a best value.
        self.best.reset()
        self.divergence.start(self.trainer, self.device)

    def on_validation_start(self) -> None:
        # Validation while fitting: never of non-finite weights, and before the checkpoint
        # callbacks save at its end.
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.divergence.check(self, self._train_loss_sum())

    def check_monitor(self, metric: str) -> None:
        """Refuses an optimized_metric that this module does not log each validation epoch."""
        logged = [*self.metrics["val_metrics"].keys(), "val/loss", f"{self.monitor}_best"]
        check_monitor(metric, self.task, logged)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets eval.py (or anyone) find the class that reloads this checkpoint.
        checkpoint[MODULE_KEY] = type(self).__name__  # a name (nnlab.tasks.loading), no path
