"""The shared LightningModule: builds its network and loss from plain configs, so a checkpoint
alone (its saved hyperparameters) rebuilds the module; logs loss and metrics per epoch.

Logging never calls `.item()` in a step: Lightning and torchmetrics accumulate on the device and
synchronise once per epoch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from torchmetrics import MaxMetric, MetricCollection, MinMetric

from nnlab.data.spec import DataSpec
from nnlab.nn.losses import create_loss

STAGES = ("train", "val", "test")
# Direction of a metric, from the last part of its name (val/acc → acc).
HIGHER_IS_BETTER = {"acc", "f1", "auroc", "r2"}
LOWER_IS_BETTER = {"loss", "mse", "mae", "rmse", "mistakes", "rmse_orig", "mae_orig", "rmse_log"}


def metric_mode(metric: str) -> str:
    """ "max" or "min" for a logged metric name such as val/acc or val/loss."""
    leaf = metric.rsplit("/", 1)[-1].removesuffix("_best")
    if leaf in HIGHER_IS_BETTER:
        return "max"
    if leaf in LOWER_IS_BETTER:
        return "min"
    raise ValueError(
        f"cannot tell whether {metric!r} should go up or down; set optimized_mode=max or min"
    )


class TaskModule(L.LightningModule):
    """Trains `model` on a task described by `spec` with `loss` and `optimizer`.

    Args are plain dicts (the resolved configs), saved as hyperparameters:
        spec: the DataSpec as a dict (task, input_shape, num_outputs, class_names).
        model: a network config with `_target_` (sizes are filled in from `spec`).
        loss: a loss config ({name, **options}); name "auto" picks the task's own.
        optimizer: a `_partial_` optimizer config.
        scheduler: a `_partial_` LR-scheduler config, or None.
        data: the data config the module was trained on (eval.py rebuilds the data from it).
    """

    task: ClassVar[str]
    # The metric that picks the best checkpoint unless optimized_metric says otherwise.
    monitor: ClassVar[str]

    def __init__(
        self,
        spec: dict[str, Any],
        model: dict[str, Any],
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = DataSpec.from_dict(spec)
        if self.spec.task != self.task:
            raise ValueError(
                f"{type(self).__name__} trains {self.task} tasks, not {self.spec.task}"
            )
        self.net = instantiate(
            model,
            in_features=self.spec.in_features,
            out_features=self.spec.num_outputs,
            _convert_="all",
        )
        self.loss_fn = create_loss(loss, self.spec.task, self.spec.num_outputs)
        metrics = self.make_metrics()
        # One collection per stage (keys "train" etc. would clash with nn.Module.train).
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in STAGES}
        )
        self.best = MaxMetric() if metric_mode(self.monitor) == "max" else MinMetric()

    # -- what a task provides -----------------------------------------------------------------
    def make_metrics(self) -> MetricCollection:
        raise NotImplementedError

    def metric_inputs(
        self, output: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets) in the form the task's metrics take."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        output = self(x)
        loss = self.loss_fn(output, y)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(*self.metric_inputs(output.detach(), y))
        self.log(f"{stage}/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(x))
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self.predict(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The task's prediction for inputs x (a value, a class, or a 0/1 label)."""
        return self(x)

    def on_train_start(self) -> None:
        # The sanity-check validation before training must not count as a best value.
        self.best.reset()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # callback_metrics still hold the previous epoch here: compute this epoch's value.
        self.best.update(self.metrics["val_metrics"].compute()[self.monitor])
        self.log(f"{self.monitor}_best", self.best.compute(), prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        if not hp.optimizer:
            raise ValueError("no optimizer config given")
        optimizer = instantiate(hp.optimizer, _convert_="all")(params=self.parameters())
        if not hp.scheduler:
            return optimizer
        scheduler = instantiate(hp.scheduler, _convert_="all")(optimizer=optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets eval.py (or anyone) find the class that reloads this checkpoint.
        checkpoint["nnlab_module"] = f"{type(self).__module__}.{type(self).__qualname__}"


def module_class_path(checkpoint: dict[str, Any]) -> str:
    """The dotted class path stored in a checkpoint written by a TaskModule."""
    try:
        return checkpoint["nnlab_module"]
    except KeyError:
        raise ValueError("this checkpoint was not written by an nnlab task module") from None
