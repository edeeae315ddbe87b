"""The fast training step of a task module: manual optimization, several exact optimizer steps
per Lightning batch (speed.steps_per_batch), or the whole step replayed as a CUDA graph
(speed.cuda_graph on a GPU).

Lightning's per-batch work (hooks, callbacks, progress bar: ~1 ms on a CPU core) costs as much
as a small network's whole step. A StepRunner takes a group of batches (BatchGroup) per
Lightning batch and runs one optimizer step on each, counted by Lightning as if its own
optimizer wrapper had taken it (global_step, max_steps, checkpoints, logged steps). Where no
hook or plugin would act on a step, it also skips Lightning's step wrappers. See
docs/speed.md for measurements.
"""

from __future__ import annotations

from typing import Any, Protocol

import lightning as L
import torch

from nnlab.compat import add_logged_steps, step_counters, step_wrappers_idle
from nnlab.core import ConfigError
from nnlab.data.loaders import Batch, BatchGroup
from nnlab.speed.graphed import GraphedStep


class SteppedModule(Protocol):
    """What a StepRunner uses of its task module (nnlab.tasks.base.TaskModule)."""

    trainer: L.Trainer
    net: torch.nn.Module
    sums: Any  # nnlab.tasks.metrics.EpochSums: add(), zero(), samples

    def shared_step(self, batch: Batch, stage: str, count: bool = True) -> torch.Tensor: ...
    def optimizers(self) -> Any: ...
    def lr_schedulers(self) -> Any: ...
    def manual_backward(self, loss: torch.Tensor) -> None: ...


class StepRunner:
    """Runs a task module's training steps under manual optimization: one exact optimizer step
    per batch, `per_batch` batches per Lightning batch, each replayed from a CUDA graph when
    `graph`. Made by `for_fit` in the module's setup; `start` at train start (once the
    optimizer exists), `run` as its training_step, `step_schedulers` at each epoch's end."""

    def __init__(self, module: SteppedModule, per_batch: int, graph: bool) -> None:
        self.module, self.per_batch, self.graph = module, per_batch, graph
        self.graphed: GraphedStep | None = None  # captured at train start when `graph`
        self.plain = False  # steps skip Lightning's wrappers (decided at train start)

    @classmethod
    def for_fit(cls, module: SteppedModule, speed: dict[str, Any]) -> StepRunner | None:
        """The runner that the speed config and the trainer ask for: groups where the
        datamodule hands over several batches per item (its train_batches_per_item), a CUDA
        graph with speed.cuda_graph on a GPU; None for neither (Lightning's automatic
        optimization). Refuses trainer options that such steps cannot honour."""
        trainer = module.trainer
        per_batch = getattr(trainer.datamodule, "train_batches_per_item", 1)
        graph = bool(speed.get("cuda_graph")) and trainer.strategy.root_device.type == "cuda"
        if not (graph or per_batch > 1):
            return None
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
        if per_batch > 1 and not isinstance(trainer.val_check_interval, float):
            raise ConfigError(
                "speed.steps_per_batch > 1 counts Lightning batches in groups of steps: set "
                "trainer.val_check_interval as a fraction of the epoch (float), or "
                "speed.steps_per_batch=1"
            )
        return cls(module, per_batch, graph)

    def start(self) -> None:
        """At train start: whether steps may skip Lightning's wrappers, and the graph's
        capture (at its first step) over the optimizer that now exists."""
        module = self.module
        self.plain = step_wrappers_idle(module.trainer)
        if self.graph:
            optimizer = module.optimizers().optimizer
            self.graphed = GraphedStep(module.net, optimizer, self._captured, self._reset_sums)

    def run(self, batch: Batch | BatchGroup) -> None:
        """One Lightning batch: a batch or a group of them, one optimizer step each."""
        module, trainer = self.module, self.module.trainer
        batches = batch if isinstance(batch, BatchGroup) else [batch]
        optimizer = module.optimizers()
        # Lightning counts optimizer steps (global_step: max_steps, checkpoints) through these,
        # which its wrapper calls around a step; steps without the wrapper call them too.
        before_step, after_step = step_counters(optimizer)
        max_steps = trainer.max_steps
        done = 0
        for x, y in batches:
            if 0 <= max_steps <= trainer.global_step:
                break  # max_steps is exact even mid-group
            done += 1
            if self.graphed is not None:
                before_step()
                self.graphed(x, y)  # the whole step, sums included
                after_step()
                module.sums.samples["train"] += len(x)
                continue
            optimizer.zero_grad()
            loss = module.shared_step((x, y), "train")
            if self.plain:
                loss.backward()
                before_step()
                optimizer.optimizer.step()
                after_step()
            else:
                module.manual_backward(loss)
                optimizer.step()
        if done > 1:
            # Lightning adds 1 per batch to the step that loggers record metrics at; add the
            # group's other steps, so that logged steps count optimizer steps as without groups.
            add_logged_steps(trainer, done - 1)

    def step_schedulers(self) -> None:
        """Steps the LR scheduler at an epoch's end, as automatic optimization would (manual
        optimization leaves it to the module). Called after validation, so that a
        ReduceLROnPlateau sees this epoch's val/loss."""
        module = self.module
        scheduler = module.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = module.trainer.callback_metrics.get("val/loss")
            if value is not None:
                scheduler.step(value)
        else:
            scheduler.step()

    def _captured(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The module's training step, as the graph captures it: its loss and sums, without the
        host-side sample count (which a replay would not repeat; `run` counts it)."""
        return self.module.shared_step((x, y), "train", count=False)

    def _reset_sums(self) -> None:
        self.module.sums.zero("train")
