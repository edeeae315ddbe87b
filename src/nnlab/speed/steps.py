"""The fast training step of a task module: manual optimization, several exact optimizer steps
per Lightning batch (speed.steps_per_batch), or the whole step replayed as a CUDA graph
(speed.cuda_graph on a GPU). nnlab.speed.FastPath puts a StepRunner in place of the module's
training_step for a fit; the module itself is plain Lightning.

Lightning's per-batch work (hooks, callbacks, progress bar: ~1 ms on a CPU core) costs as much
as a small network's whole step. A StepRunner takes a group of batches (BatchGroup) per
Lightning batch and runs one optimizer step on each, counted by Lightning as if its own
optimizer wrapper had taken it (global_step, max_steps, checkpoints, logged steps). Where no
hook or plugin would act on a step, it also skips Lightning's step wrappers. A module that
takes its own steps (manual optimization: the perceptron's rule) gets its training_step called
once per batch of a group. See docs/speed.md for measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import lightning as L
import torch

from nnlab.compat import add_logged_steps, step_counters, step_wrappers_idle
from nnlab.core import ConfigError
from nnlab.data.loaders import Batch, BatchGroup
from nnlab.speed.graphed import GraphedStep


class SteppedModule(Protocol):
    """What a StepRunner uses of its task module (nnlab.tasks.base.TaskModule): its network,
    its epoch sums and divergence record (which a captured step must feed as the module's own
    training_step does), and Lightning's optimization API."""

    trainer: L.Trainer
    net: torch.nn.Module
    sums: Any  # nnlab.tasks.metrics.EpochSums: add(), zero(), samples
    divergence: Any  # nnlab.tasks.divergence.DivergenceWatch: after_step()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None: ...
    def shared_step(self, batch: Batch, stage: str, count: bool = True) -> torch.Tensor: ...
    def optimizers(self) -> Any: ...
    def lr_schedulers(self) -> Any: ...
    def manual_backward(self, loss: torch.Tensor) -> None: ...


class StepRunner:
    """Runs a task module's training steps under manual optimization: one exact optimizer step
    per batch, `per_batch` batches per Lightning batch, each replayed from a CUDA graph when
    `graph`. Made by `for_fit` (FastPath.setup); `start` at train start (once the optimizer
    exists), `run` as the module's training_step, `step_schedulers` at each epoch's end.

    `step` is the module's own training_step: for a module that takes its own optimizer steps
    (`own_steps`: the perceptron's rule) the runner calls it once per batch; otherwise it
    returns the batch's loss, and the runner takes the optimizer step."""

    def __init__(
        self,
        module: SteppedModule,
        per_batch: int,
        graph: bool,
        step: Callable[[Batch, int], torch.Tensor | None],
        own_steps: bool = False,
    ) -> None:
        self.module, self.per_batch, self.graph = module, per_batch, graph
        self.step, self.own_steps = step, own_steps
        self.graphed: GraphedStep | None = None  # captured at train start when `graph`
        self.plain = False  # steps skip Lightning's wrappers (decided at train start)

    @classmethod
    def for_fit(
        cls, module: SteppedModule, per_batch: int, cuda_graph: bool, own_steps: bool
    ) -> StepRunner | None:
        """The runner for `per_batch` batches per Lightning batch (nnlab.speed.groups) and a
        CUDA graph where `cuda_graph` (speed.cuda_graph) on a GPU, for a module that leaves
        its optimizer steps to Lightning (one that takes its own, `own_steps`, runs eagerly);
        None for neither (the module's own training_step, as Lightning calls it). Refuses
        trainer options that such steps cannot honour."""
        trainer = module.trainer
        on_gpu = trainer.strategy.root_device.type == "cuda"
        graph = cuda_graph and on_gpu and not own_steps
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
        return cls(module, per_batch, graph, module.training_step, own_steps)

    def start(self) -> None:
        """At train start: whether steps may skip Lightning's wrappers, and the graph's
        capture (at its first step) over the optimizer that now exists."""
        module = self.module
        self.plain = step_wrappers_idle(module.trainer) and not self.own_steps
        if self.graph:
            optimizer = module.optimizers().optimizer
            self.graphed = GraphedStep(module.net, optimizer, self._captured, self._reset_sums)

    def run(self, batch: Batch | BatchGroup, batch_idx: int = 0) -> None:
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
            if self.own_steps:
                self.step((x, y), batch_idx)  # the module steps its optimizer itself
                continue
            if self.graphed is not None:
                before_step()
                self.graphed(x, y)  # the whole step, sums included
                after_step()
                module.sums.samples["train"] += len(x)
                continue
            optimizer.zero_grad()
            loss = self.step((x, y), batch_idx)
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
        """The module's training step as the graph captures it: its loss and sums, without the
        host-side sample count (which a replay would not repeat; `run` counts it), and its
        divergence record in the capture only (the warm-up steps before it are undone)."""
        module = self.module
        loss = module.shared_step((x, y), "train", count=False)
        if torch.cuda.is_current_stream_capturing():
            loss_sum = module.sums.totals["train"]["loss"]
            module.divergence.after_step(module, loss.detach(), loss_sum, (x, y))
        return loss

    def _reset_sums(self) -> None:
        self.module.sums.zero("train")
