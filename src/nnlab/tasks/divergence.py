"""Divergence: a non-finite training loss, or non-finite weights, stops training at once with
one line naming where it happened and its likely cause (nnlab.core.Diverged).

On the CPU of a single-process run each step reads its loss (`loss.item()` costs what the step
would spend anyway) and a non-finite one stops training at that very step, its batch in hand.
Elsewhere (a GPU, several processes) a step reads nothing back: it records on the device the
last step after which the epoch's loss sum was still finite (a non-finite sum stays non-finite,
so the first non-finite loss is the step after it), three scalar kernels that a captured CUDA
graph replays too. That record, the loss sum and the largest absolute weight are read in one
host read at the epoch's end and before each validation, the points where the host waits for
the device anyway, and always before a checkpoint callback saves: no checkpoint with
non-finite weights is ever taken.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from nnlab.core import Diverged

# Conventional learning rates to suggest after a divergence (the optimizer's class name).
TYPICAL_LR = {"SGD": 1e-2, "Adam": 1e-3, "AdamW": 1e-3}


class DivergenceWatch:
    """What a task module's training steps record of non-finite losses, and the checks that
    raise Diverged. `start` at train start, `after_step` in every training step (after the
    epoch's loss sum took this step's loss), `check` at each read point. `enabled = False`
    lets training run on through non-finite values (the lecture's studies watch it happen)."""

    def __init__(self) -> None:
        self.enabled = True
        # Whether each step reads its loss (a single-process CPU run): set by `start`.
        self.eager = True
        # Device records (not eager): the index of the step being taken, and the last step
        # after which the epoch's loss sum was finite (both float64: exact integers).
        self.clock: Tensor | None = None
        self.last_finite: Tensor | None = None
        self.first_step = 0  # the global step this fit started at
        self.checked_at: int | None = None  # the global step at the last read

    def start(self, trainer: L.Trainer, device: torch.device) -> None:
        """At train start: how steps record (see the module's docstring), from this step on."""
        self.eager = reads_each_step(trainer, device)
        self.first_step = trainer.global_step
        self.checked_at = None
        if self.eager:
            self.clock = self.last_finite = None
            return
        self.clock = torch.full((), trainer.global_step, dtype=exact(device), device=device)
        self.last_finite = self.clock - 1

    def after_step(
        self, module: L.LightningModule, loss: Tensor, loss_sum: Tensor, batch: Any
    ) -> None:
        """Records one training step: `loss` its loss, `loss_sum` the epoch's sum so far (a
        device tensor, non-finite from the first non-finite loss on). Raises Diverged at
        once when eager and the loss is not finite."""
        if not self.enabled:
            return
        if self.eager:
            value = loss.item()
            if not math.isfinite(value):
                step = module.trainer.global_step
                raise Diverged(message(module, "loss", str(value), step, self.first_step, batch))
            return
        if self.clock is None:  # a step outside fitting (never, in nnlab)
            return
        # clock + 0·sum is the clock while the sum is finite, else NaN, which fmax skips.
        torch.fmax(self.last_finite, torch.add(self.clock, loss_sum, alpha=0), out=self.last_finite)
        self.clock.add_(1)

    @torch.no_grad()
    def check(self, module: L.LightningModule, loss_sum: Tensor | None) -> None:
        """One host read: raises Diverged if the epoch's loss sum or any weight is not finite
        (on any rank). Nothing to do when no step was taken since the last check."""
        trainer = module.trainer
        if not self.enabled or trainer.global_step == self.checked_at:
            return
        self.checked_at = trainer.global_step
        params = list(module.parameters())
        # The largest |weight| of each tensor (NaN if it holds one): never overflows, unlike a
        # sum of squares of large but finite weights.
        peaks = torch._foreach_norm(params, ord=math.inf) if params else []
        zero = torch.zeros((), device=module.device)
        values = [
            zero if loss_sum is None else loss_sum,
            torch.stack([p.float() for p in peaks]).amax() if peaks else zero,
            zero if self.last_finite is None else self.last_finite,
        ]
        dtype = exact(zero.device)
        loss_value, peak, last_finite = torch.stack([v.to(dtype) for v in values]).tolist()
        bad = not (math.isfinite(loss_value) and math.isfinite(peak))
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        last_step = trainer.global_step - 1  # the step that was taken last
        if not math.isfinite(loss_value):
            step = int(last_finite) + 1
            line = message(module, "loss", "non-finite", step, self.first_step)
        elif not math.isfinite(peak):
            line = message(module, "weights", str(peak), last_step, self.first_step, by=True)
        else:  # another process's weights or loss
            line = message(module, "loss of another process", "non-finite", last_step, None)
        raise Diverged(line)


def reads_each_step(trainer: L.Trainer, device: torch.device) -> bool:
    """Whether each step reads its loss: on the CPU of a single-process run. Not under autograd
    anomaly detection (debug=anomaly): a non-finite loss then goes on to the backward pass,
    whose check names the operation that made it (anomaly_diverged)."""
    single = trainer.world_size == 1 and not torch.is_anomaly_enabled()
    return device.type == "cpu" and single


def exact(device: torch.device) -> torch.dtype:
    """The float type that holds step indices exactly on `device` (MPS has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def message(
    module: L.LightningModule,
    what: str,
    value: str,
    step: int,
    first_step: int | None,
    batch: Any = None,
    by: bool = False,
    cause: str | None = None,
) -> str:
    """The one line a divergence is reported by: what became non-finite, where, with which
    learning rate and optimizer, and its likely cause (found here unless given)."""
    trainer = module.trainer
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    settings = ""
    if optimizer is not None:
        settings = f" (lr={learning_rate(optimizer):g}, optimizer {type(optimizer).__name__})"
    where = f"at epoch {trainer.current_epoch}, {'by ' if by else ''}step {step}"
    cause = cause or likely_cause(module, batch, step == first_step)
    return f"diverged: the {what} became {value} {where}{settings}: {cause}"


def anomaly_diverged(module: L.LightningModule, error: RuntimeError) -> Diverged | None:
    """The divergence that autograd anomaly detection (trainer.detect_anomaly) reported as
    `error` while fitting `module`, or None if `error` is something else."""
    text = " ".join(str(error).split())
    if "returned nan values" not in text:  # torch's anomaly mode: "Function 'X' returned nan ..."
        return None
    cause = f"autograd anomaly detection: {text} (the warning above shows its forward call)"
    step = module.trainer.global_step
    return Diverged(message(module, "gradient", "nan", step, None, cause=cause))


def likely_cause(module: L.LightningModule, batch: Any, first: bool) -> str:
    """The likely cause: non-finite data, else (at the first step, before any update) the
    model's outputs or a loss that does not fit the targets, else a learning rate too large."""
    data = data_cause(module, batch)
    if data:
        return data
    hp = module.hparams
    if first:
        init = (hp["model"].get("init") or {}).get("name", "the model's own")
        return (
            "it was not finite at the first step, before any update, so it is not the learning "
            f"rate: check the initialization (init={init}) and that "
            f"loss={(hp.get('loss') or {}).get('name', 'auto')} fits these "
            f"{hp['spec']['task']} targets; debug=anomaly names the operation that made it"
        )
    optimizer = module.trainer.optimizers[0]
    lr = learning_rate(optimizer)
    suggested = min(lr / 10, TYPICAL_LR.get(type(optimizer).__name__, lr / 10))
    precision = str(module.trainer.precision)
    hint = f", or train in 32-true precision (now {precision})" if precision[:2] == "16" else ""
    return (
        "the learning rate is likely too large for this model and data; try "
        f"optimizer.lr={suggested:g} or lower, or clip gradients "
        f"(trainer.gradient_clip_val=1.0){hint}"
    )


def learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The optimizer's (first group's) learning rate: a device tensor under a CUDA graph."""
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item() if isinstance(lr, Tensor) else lr)


def data_cause(module: L.LightningModule, batch: Any) -> str | None:
    """Names non-finite values in the training data as loaded (the datamodule's raw training
    split, where it keeps one) or in the batch that diverged; None when both are finite."""
    split = getattr(module.trainer.datamodule, "splits", {}).get("train")
    if split is not None:
        x, y = split[0], split[1]
        bad_x, bad_y = nonfinite_rows(x), nonfinite_rows(y)
        if bad_x or bad_y:
            return (
                f"the training data hold nan/inf values ({bad_x} of {len(x)} inputs and "
                f"{bad_y} targets, as loaded): the data, not the training, is the cause; "
                "remove or impute those rows"
            )
    if batch is not None:
        x, y = batch
        bad_x, bad_y = nonfinite_rows(x), nonfinite_rows(y)
        if bad_x or bad_y:
            return (
                f"the inputs of that batch hold nan/inf values ({bad_x} of {len(x)} inputs "
                f"and {bad_y} targets), though the data as loaded do not: the preprocessing "
                "(data.normalize, a transform) made them"
            )
    return None


def nonfinite_rows(t: Tensor) -> int:
    """How many rows (first dimension) of `t` hold a nan or an inf."""
    if not t.is_floating_point() or len(t) == 0:
        return 0
    return int((~torch.isfinite(t.reshape(len(t), -1))).any(dim=1).sum())
