"""The shared LightningModule: builds its network and loss from plain configs, so a checkpoint
alone (its saved hyperparameters) rebuilds the module; logs loss and metrics per epoch.

Steps never sync with the host nor call `self.log` (whose per-call bookkeeping costs more than a
small network's whole step): metrics and loss sums accumulate on the device, and are computed,
logged and reset once per epoch. Training logs train/loss and the task's cheap metric
(`train_sums`: acc or mse), a few tensor ops per step; validation and test log the task's full
torchmetrics collection. With `speed.cuda_graph` on a GPU the whole training step, sums
included, is one replayed CUDA graph (nnlab.tasks.graphed).
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torchmetrics import MaxMetric, MetricCollection, MinMetric

from nnlab.checkpoints import MODULE_KEY
from nnlab.core import ConfigError, is_int
from nnlab.data.loaders import BatchGroup
from nnlab.data.spec import DataSpec
from nnlab.nn.losses import create_loss
from nnlab.tasks.graphed import GraphedStep, optimizer_options

STAGES = ("train", "val", "test")
# Direction of a metric, from the last part of its name (val/acc → acc).
HIGHER_IS_BETTER = {"acc", "f1", "auroc", "r2"}
LOWER_IS_BETTER = {"loss", "mse", "mae", "rmse", "mistakes", "rmse_orig", "mae_orig", "rmse_log"}


# Optimizer steps per Lightning batch for speed.steps_per_batch=auto: Lightning's per-batch work
# (about 1 ms on a CPU core) then costs a sixteenth of that per step (docs/speed.md).
AUTO_STEPS_PER_BATCH = 16
# The hooks that Lightning's manual_backward and LightningOptimizer.step call every step.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# Marks a module whose step will be captured once the optimizer exists (at train start).
_PENDING: Any = object()


def step_hooks_idle(trainer: L.Trainer) -> bool:
    """Whether Lightning's per-step wrappers (manual_backward, LightningOptimizer.step) would do
    nothing but count the step for this trainer: one process, no gradient scaler, no profiler,
    and no callback or module implementing a hook they call (on_before_backward,
    on_after_backward, on_before_optimizer_step, backward). Then a manual step may call
    loss.backward() and the optimizer itself, saving ~0.1 ms of hook dispatch per step (the
    cost of a small network's whole step is ~1.5 ms on a CPU core)."""
    module = trainer.lightning_module
    precision = trainer.precision_plugin
    plain_precision = type(precision) is Precision or (
        type(precision) is MixedPrecision and precision.scaler is None
    )
    if not (
        plain_precision
        and type(trainer.strategy) is SingleDeviceStrategy
        and isinstance(trainer.profiler, PassThroughProfiler)
        and not is_overridden("backward", module)
    ):
        return False
    return not any(
        is_overridden(hook, module) or any(is_overridden(hook, cb) for cb in trainer.callbacks)
        for hook in STEP_HOOKS
    )


def metric_mode(metric: str) -> str:
    """ "max" or "min" for a logged metric name such as val/acc or val/loss."""
    leaf = metric.rsplit("/", 1)[-1].removesuffix("_best")
    if leaf in HIGHER_IS_BETTER:
        return "max"
    if leaf in LOWER_IS_BETTER:
        return "min"
    raise ConfigError(
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
        speed: the speed config (configs/speed): optimizer implementation and whole-step CUDA
            graph capture; None is speed=default.
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
        speed: dict[str, Any] | None = None,
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
        # One collection per evaluation stage (keys "val" etc. would clash with nn.Module).
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in STAGES[1:]}
        )
        self.best = MaxMetric() if metric_mode(self.monitor) == "max" else MinMetric()
        self.graphed: GraphedStep | None = None  # made in setup() when the step is captured
        # Manual steps skip Lightning's backward and optimizer wrappers (set at train start).
        self._plain_steps = False
        # Per stage: sums over the epoch's samples, on the device ({"loss": ..., for training
        # also the `train_sums`}), and the sample count, on the host.
        self.sums: dict[str, dict[str, torch.Tensor]] = {stage: {} for stage in STAGES}
        self.samples = dict.fromkeys(STAGES, 0)

    # -- what a task provides -----------------------------------------------------------------
    def make_metrics(self) -> MetricCollection:
        raise NotImplementedError

    def metric_inputs(
        self, output: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets) in the form the task's metrics take."""
        raise NotImplementedError

    def train_sums(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-batch sums whose epoch total over the sample count is a train metric (e.g.
        {"acc": number correct}); what a captured step logs, since torchmetrics' updates
        cannot be captured."""
        raise NotImplementedError

    def check_monitor(self, metric: str) -> None:
        """Refuses a metric to pick checkpoints by (optimized_metric) that this module does not
        log each validation epoch, naming those it does; train/ metrics are not judged."""
        if metric.startswith("train/"):
            return
        logged = sorted({*self.metrics["val_metrics"].keys(), "val/loss", f"{self.monitor}_best"})
        if metric not in logged:
            raise ConfigError(
                f"optimized_metric={metric} is not logged by a {self.task} task; "
                f"valid: {', '.join(logged)} (or a train/ metric)"
            )

    # -- shared -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        output = self(x)
        loss = self.loss_fn(output, y)
        if stage == "train":
            sums = self.train_sums(output.detach(), y)
        else:
            sums = {}
            self.metrics[f"{stage}_metrics"].update(*self.metric_inputs(output.detach(), y))
        self.accumulate(stage, loss.detach(), len(x), sums)
        self.samples[stage] += len(x)
        return loss

    def accumulate(
        self, stage: str, loss: torch.Tensor, n: int, sums: dict[str, torch.Tensor]
    ) -> None:
        """Adds a batch's mean loss × its n samples, and its other sums, into the stage's epoch
        sums (device tensors, made at first use)."""
        totals = self.sums[stage]
        if "loss" not in totals:
            for name in ("loss", *sums):
                totals[name] = torch.zeros((), dtype=torch.float32, device=loss.device)
        totals["loss"].add_(loss, alpha=n)  # one kernel: no separate loss * n
        for name, value in sums.items():
            totals[name].add_(value)

    def _log_epoch(self, stage: str) -> dict[str, torch.Tensor]:
        """Logs and resets the stage's epoch metrics; returns the logged values."""
        values = {}
        if stage != "train":
            metrics = self.metrics[f"{stage}_metrics"]
            # torchmetrics syncs its states across ranks itself.
            values = metrics.compute() if self.samples[stage] else {}
            metrics.reset()
            self.log_dict(values)
        n = self.samples[stage]
        for name, total in self.sums[stage].items():
            if n:
                # Every rank sees as many samples (sharding pads), so the mean over ranks of the
                # per-rank means is the mean over all samples.
                values[f"{stage}/{name}"] = total / n
                self.log(f"{stage}/{name}", values[f"{stage}/{name}"], sync_dist=True)
            total.zero_()
        self.samples[stage] = 0
        return values

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor] | BatchGroup, batch_idx: int):
        if self.automatic_optimization:
            return self._step(batch, "train")
        # One batch, or a group of them (speed.steps_per_batch): one optimizer step each.
        batches = batch if isinstance(batch, BatchGroup) else [batch]
        optimizer = self.optimizers()
        max_steps = self.trainer.max_steps
        done = 0
        for x, y in batches:
            if 0 <= max_steps <= self.trainer.global_step:
                break  # max_steps is exact even mid-list
            done += 1
            if self.graphed is None:
                optimizer.zero_grad()
                loss = self._step((x, y), "train")
                if self._plain_steps:
                    loss.backward()
                    optimizer._on_before_step()
                    optimizer.optimizer.step()
                    optimizer._on_after_step()
                else:
                    self.manual_backward(loss)
                    optimizer.step()
                continue
            # Lightning counts optimizer steps (global_step: max_steps, checkpoints) through
            # these hooks of its optimizer wrapper; the step itself is inside the graph.
            optimizer._on_before_step()
            self.graphed(x, y)
            optimizer._on_after_step()
            self.samples["train"] += len(x)
        if done > 1:
            # Lightning adds 1 per batch to the step that loggers record metrics at; add the
            # group's other steps, so that logged steps count optimizer steps as without groups.
            self.trainer.fit_loop.epoch_loop._batches_that_stepped += done - 1

    def _graph_step_fn(self, x: torch.Tensor, y: torch.Tensor):
        output = self(x)
        loss = self.loss_fn(output, y)
        self.accumulate("train", loss.detach(), len(x), self.train_sums(output.detach(), y))
        return loss

    def setup(self, stage: str) -> None:
        """Chooses the training step from `speed`: Lightning's automatic optimization, or
        manual steps (several per batch with steps_per_batch > 1), captured in a CUDA graph
        with cuda_graph on a GPU."""
        speed = self.hparams.get("speed") or {}
        trainer = self.trainer
        datamodule = trainer.datamodule
        groups = hasattr(datamodule, "train_batches_per_item")
        if groups:
            datamodule.train_batches_per_item = 1  # unless set below
        if stage != "fit":
            return
        per_batch = self._steps_per_batch(speed.get("steps_per_batch", 1), groups)
        graph = bool(speed.get("cuda_graph")) and trainer.strategy.root_device.type == "cuda"
        grouped = per_batch > 1 and groups
        if not (graph or grouped):
            return
        if graph and trainer.world_size > 1:
            raise ConfigError(
                "speed.cuda_graph does not run under multi-process (DDP) training yet: its "
                "gradients would skip the all-reduce. Use speed.cuda_graph=false with DDP."
            )
        if trainer.gradient_clip_val or trainer.accumulate_grad_batches != 1:
            raise ConfigError(
                "speed.cuda_graph and speed.steps_per_batch > 1 take one optimizer step per "
                "batch: they cannot clip gradients (trainer.gradient_clip_val) or accumulate "
                "them (trainer.accumulate_grad_batches); use speed=default for those"
            )
        if grouped:
            if not isinstance(trainer.val_check_interval, float):
                raise ConfigError(
                    "speed.steps_per_batch > 1 counts Lightning batches in groups of steps: set "
                    "trainer.val_check_interval as a fraction of the epoch (float), or "
                    "speed.steps_per_batch=1"
                )
            datamodule.train_batches_per_item = per_batch
        self.automatic_optimization = False
        if graph:
            self.graphed = _PENDING

    def _steps_per_batch(self, value: int | str, groups: bool) -> int:
        """speed.steps_per_batch as a number; "auto" is AUTO_STEPS_PER_BATCH where grouping
        changes nothing a user asked for, else 1."""
        if value != "auto":
            if not is_int(value) or value < 1:
                raise ConfigError(f"speed.steps_per_batch must be auto or >= 1, got {value!r}")
            return value
        trainer = self.trainer
        # Each of these counts Lightning batches, or needs one step per batch: grouping would
        # change what it means, so it gets plain batches.
        counted = (
            trainer.limit_train_batches != 1.0
            or not isinstance(trainer.limit_train_batches, float)
            or trainer.val_check_interval != 1.0
            or not isinstance(trainer.val_check_interval, float)
            or trainer.overfit_batches
            or trainer.fast_dev_run
            or trainer.gradient_clip_val
            or trainer.accumulate_grad_batches != 1
        )
        resident = groups and self.trainer.datamodule.is_resident(trainer.strategy.root_device)
        return AUTO_STEPS_PER_BATCH if resident and not counted else 1

    def on_train_start(self) -> None:
        # The sanity-check validation before training must not count as a best value.
        self.best.reset()
        self._plain_steps = not self.automatic_optimization and step_hooks_idle(self.trainer)
        if self.graphed is _PENDING:
            optimizer = self.optimizers().optimizer
            self.graphed = GraphedStep(
                self.net, optimizer, self._graph_step_fn, reset=self._reset_train_sums
            )

    def _reset_train_sums(self) -> None:
        for total in self.sums["train"].values():
            total.zero_()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        if self.automatic_optimization:
            return
        # Manual optimization: Lightning leaves the scheduler to us. After validation (which
        # runs before this hook), so ReduceLROnPlateau sees this epoch's val/loss.
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = self.trainer.callback_metrics.get("val/loss")
            if value is not None:
                scheduler.step(value)
        else:
            scheduler.step()

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

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        if self.trainer.sanity_checking or self.monitor not in values:
            return
        self.best.update(values[self.monitor])
        self.log(f"{self.monitor}_best", self.best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        hp = self.hparams
        if not hp.optimizer:
            raise ConfigError("no optimizer config given")
        speed = hp.get("speed") or {}
        options = optimizer_options(
            hp.optimizer, self.device, speed.get("optimizer_impl"), self.graphed is not None
        )
        optimizer = instantiate(hp.optimizer, _convert_="all")(params=self.parameters(), **options)
        if not hp.scheduler:
            return optimizer
        scheduler = instantiate(hp.scheduler, _convert_="all")(optimizer=optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        # Lightning steps a plateau scheduler on this metric; with manual optimization
        # on_train_epoch_end does (and Lightning warns about an unused monitor).
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and self.automatic_optimization:
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets eval.py (or anyone) find the class that reloads this checkpoint.
        checkpoint[MODULE_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"
