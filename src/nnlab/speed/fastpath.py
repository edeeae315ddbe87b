"""The fast path, applied from outside: FastPath, the one Lightning callback through which
train.py makes a fit fast without changing what it computes. The task module stays plain
Lightning (forward, loss, metrics, optimizers); for the fit, FastPath

- compiles its network (speed.compile),
- gives its optimizer the implementation asked for (speed.optimizer_impl: fused, foreach) and,
  for a captured step, a device-tensor learning rate (nnlab.speed.optim),
- groups the training loader's batches (speed.steps_per_batch: nnlab.speed.groups),
- and hands its training_step to a StepRunner (nnlab.speed.steps) where groups or a CUDA graph
  (speed.cuda_graph on a GPU) ask for manual steps, stepping the LR schedulers that Lightning
  leaves to manual optimization.

What it changes (the module's training_step, optimizer_options and captures_step, the
datamodule's train_dataloader) it puts back when the fit ends or fails. A module it gave manual
steps stays under manual optimization (Lightning reads trainer.global_step through it, also in
the validation and test that follow the fit); its own choice is kept in OWN_STEPS for a later
fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch import Callback
from omegaconf import DictConfig, OmegaConf

from nnlab.data.base import ArrayDataModule
from nnlab.data.loaders import TensorBatches
from nnlab.speed.compiled import compile_network
from nnlab.speed.groups import StepGroups, group_size
from nnlab.speed.optim import optimizer_options
from nnlab.speed.steps import StepRunner

# The task module's attributes that FastPath sets for a fit, and puts back after it.
MODULE_ATTRIBUTES = ("optimizer_options", "captures_step")
# Whether the module takes its own optimizer steps (manual optimization before any fit).
OWN_STEPS = "nnlab_own_steps"


class FastPath(Callback):
    """Applies the speed group (configs/speed; validated by nnlab.speed.check_speed) to the
    task module and datamodule of each fit. `runner` is the fit's StepRunner (None: Lightning's
    own steps) and `group` its batches per Lightning batch."""

    def __init__(self, speed: Mapping[str, Any] | DictConfig) -> None:
        if isinstance(speed, DictConfig):
            speed = OmegaConf.to_container(speed, resolve=True)
        self.speed: dict[str, Any] = dict(speed)
        self.runner: StepRunner | None = None
        self.group = 1
        self._saved: dict[str, Any] = {}
        self._grouped_data: Any = None  # the datamodule whose loader it grouped

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        speed, module, data = self.speed, pl_module, trainer.datamodule
        if speed.get("compile"):
            compile_network(module.net)  # in place; the checkpoint's names stay the same
        resident = isinstance(data, ArrayDataModule) and data.is_resident(
            trainer.strategy.root_device
        )
        self.group = group_size(speed.get("steps_per_batch", 1), trainer, resident)
        own_steps = module.__dict__.setdefault(OWN_STEPS, not module.automatic_optimization)
        graph_asked = bool(speed.get("cuda_graph"))
        self.runner = StepRunner.for_fit(module, self.group, graph_asked, own_steps)
        graph = self.runner is not None and self.runner.graph
        self._saved = {name: getattr(module, name) for name in MODULE_ATTRIBUTES}
        optimizer = module.hparams.get("optimizer")
        if optimizer:  # None: configure_optimizers refuses it, naming what is missing
            device, impl = trainer.strategy.root_device, speed.get("optimizer_impl")
            module.optimizer_options = optimizer_options(optimizer, device, impl, graph)
        module.captures_step = graph
        # Manual steps: the runner's, or the module's own (an earlier fit may have left it so).
        module.automatic_optimization = not own_steps and self.runner is None
        if self.runner is not None:
            module.training_step = self.runner.run  # an instance attribute: the class's stays
        if self.group > 1 and resident:
            train_loader = data.train_dataloader
            data.train_dataloader = lambda: _grouped(train_loader(), self.group)
            self._grouped_data = data

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.runner is not None:
            self.runner.start()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After validation (a ReduceLROnPlateau sees this epoch's val/loss), before the
        # checkpoint callbacks save: as the module's own epoch end did under manual steps.
        if self.runner is not None and not self.runner.own_steps:
            self.runner.step_schedulers()  # manual optimization: Lightning leaves it to us

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._put_back(trainer, pl_module)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Lightning calls no teardown hook after an exception (a divergence, say); train.py
        # still evaluates the best checkpoint with this module.
        if self._saved:
            self._put_back(trainer, pl_module)

    def _put_back(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """The module and datamodule as they were before the fit."""
        module.__dict__.pop("training_step", None)
        for name, value in self._saved.items():
            setattr(module, name, value)
        self._saved = {}
        if self._grouped_data is not None:
            del self._grouped_data.train_dataloader  # the class's own again
            self._grouped_data = None


def _grouped(loader: Any, size: int) -> Any:
    """The training loader in groups of `size` batches (resident data's loader only)."""
    return StepGroups(loader, size) if isinstance(loader, TensorBatches) else loader
