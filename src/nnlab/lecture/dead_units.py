"""Claim 6, dead ReLUs: the larger the learning rate, the more ReLU units die (output 0 with
zero gradient for every training example); leaky ReLU, PReLU and ELU have no dead units, with
the same steps. The sweep clips each step's gradient norm (GRAD_CLIP), so that the large
learning rates kill ReLU units without making any run diverge. A run whose weights still went
non-finite diverged: it is reported as such, never counted as dead units.

No step of plain SGD revives a dead unit of the FIRST hidden layer: every gradient reaching its
weights is 0, and its input, the data, never changes (weight decay or momentum could still move
its weights). A deeper unit's input is the layer below, which keeps learning: its pre-activation
can turn positive again, and the unit comes back. The study tracks ReLU's dead units per layer,
step by step, and counts both."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from nnlab.lecture.fitting import build, compose_config, fit
from nnlab.lecture.study import Claim, Run

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu")
DIVERGED_Y = 1.12  # where diverged runs are drawn, above the [0, 1] fractions
GRAD_CLIP = 1.0  # each step's gradient norm is clipped to this (Trainer gradient_clip_val)
MARKERS = {"relu": "o", "leaky_relu": "s", "prelu": "D", "elu": "^"}


@torch.no_grad()
def _finite(net: nn.Module) -> bool:
    return all(bool(p.isfinite().all()) for p in net.parameters())


def dead_masks(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor] | None:
    """Per hidden layer, which units are dead over the batch x: output exactly 0 and
    derivative exactly 0 for every example. None when the weights or activations are not
    finite (a diverged run: its units are broken, not dead)."""
    if not _finite(net):
        return None
    masks = []
    with torch.enable_grad():
        for module in net:
            if isinstance(module, nn.Linear | nn.Flatten):
                x = module(x).detach()
                continue
            z = x.detach().requires_grad_()
            a = module(z)
            (slope,) = torch.autograd.grad(a.sum(), z)  # f′(z), elementwise
            if not (a.isfinite().all() and z.isfinite().all()):
                return None
            masks.append((a == 0).all(0) & (slope == 0).all(0))
            x = a.detach()
    return masks


def dead_units(net: nn.Sequential, x: torch.Tensor) -> list[float] | None:
    """Per hidden layer, the share of dead units over the batch x (see dead_masks)."""
    masks = dead_masks(net, x)
    return None if masks is None else [m.float().mean().item() for m in masks]


class DeadTracker(L.Callback):
    """Records which units are dead (dead_masks over `x`) before training and after every
    optimizer step."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.masks: list[list[torch.Tensor]] = []

    def _record(self, pl_module: L.LightningModule) -> None:
        masks = dead_masks(pl_module.net, self.x)
        if masks is not None:
            self.masks.append(masks)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._record(pl_module)


def digits_config(run: Run, activation: str, lr: float) -> Any:
    """An MLP (2 × 64 units, Kaiming init) on digits, trained by plain SGD at `lr`."""
    return compose_config(
        f"seed={run.seed}",
        "data=digits",
        "model.hidden_sizes=[64,64]",
        f"activation={activation}",
        "init=kaiming",
        "optimizer=sgd",
        f"optimizer.lr={lr}",
    )


def train_inputs(data: Any) -> torch.Tensor:
    """A datamodule's training inputs as the network sees them (normalized)."""
    x, _ = data.splits["train"]
    return data.normalizer(x) if data.normalizer is not None else x.float()


def train(run: Run, activation: str, lr: float) -> dict[str, Any]:
    """The digits MLP trained at `lr` (gradient norm clipped to GRAD_CLIP); its dead units
    over the whole training split."""
    model = fit(
        digits_config(run, activation, lr),
        run.size(1, 5),
        validate=False,
        gradient_clip_val=GRAD_CLIP,
    )
    model.module.eval()
    shares = dead_units(model.module.net, train_inputs(model.data))
    loss = model.loss("train")
    diverged = shares is None or not math.isfinite(loss)
    return {
        "activation": activation,
        "lr": lr,
        "diverged": diverged,
        "dead_fraction": math.nan if diverged else sum(shares) / len(shares),
        "dead_by_layer": None if diverged else shares,
        "train_loss": loss,
        "test_accuracy": model.accuracy("test"),
    }


def revival(run: Run, lr: float) -> list[dict[str, Any]]:
    """ReLU's dead units per hidden layer after every step of a training at `lr` (clipped):
    how many are dead, and how many of those ever dead so far are alive again (revived)."""
    cfg = digits_config(run, "relu", lr)
    tracker = DeadTracker(train_inputs(build(cfg)[0]))
    fit(cfg, run.size(3, 5), validate=False, callbacks=(tracker,), gradient_clip_val=GRAD_CLIP)
    rows = []
    for layer in range(len(tracker.masks[0])):
        ever = torch.zeros_like(tracker.masks[0][layer])
        back = torch.zeros_like(ever)
        for step, masks in enumerate(tracker.masks):
            dead = masks[layer]
            back |= ever & ~dead
            ever |= dead
            rows.append(
                {
                    "layer": layer + 1,
                    "step": step,
                    "dead": int(dead.sum()),
                    "ever_dead": int(ever.sum()),
                    "revived": int(back.sum()),
                    "units": len(dead),
                }
            )
    return rows


def draw(run: Run, frame: Any, revived: Any, revival_lr: float) -> None:
    _, (ax, steps) = run.figure("dead_units", ncols=2, size=(6.0, 4.4))
    for i, activation in enumerate(ACTIVATIONS):
        part = frame[frame.activation == activation]
        ok, bad = part[~part.diverged], part[part.diverged]
        # Markers of decreasing size, and diverged marks stacked: curves at 0 stay visible.
        style = {"marker": MARKERS[activation], "color": f"C{i}", "ms": 10 - 2 * i}
        none = len(ok) > 0 and bool((ok.dead_fraction == 0).all())
        ax.plot(
            ok.lr, ok.dead_fraction, label=activation + (": none dead" if none else ""), **style
        )
        ax.plot(bad.lr, [DIVERGED_Y - 0.03 * i] * len(bad), ls="none", mew=2, **style)
    if frame.diverged.any():
        ax.axhline(1.0, color="gray", lw=0.5)
        ax.text(
            0.01,
            DIVERGED_Y,
            "above the line: diverged (non-finite weights)",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=8,
        )
    ax.set(
        xscale="log",
        ylim=(-0.05, 1.17 if frame.diverged.any() else 1.05),
        xlabel=f"learning rate (SGD, gradient norm clipped to {GRAD_CLIP:g}; log scale)",
        ylabel="share of dead hidden units, both layers",
    )
    ax.set_title("Dead units after training on digits\n(output 0, gradient 0, every example)")
    ax.legend(fontsize=8, loc="upper left", title="activation", title_fontsize=8)
    for layer, part in revived.groupby("layer"):
        color, ls = f"C{layer + 3}", "-" if layer == 1 else "--"
        steps.plot(part.step, part.dead, color=color, ls=ls, lw=2, label=f"layer {layer}: dead now")
        steps.plot(
            part.step,
            part.revived,
            color=color,
            ls=":",
            marker="o" if layer == 1 else "s",
            ms=3,
            markevery=max(1, len(part) // 15),
            label=f"layer {layer}: dead once, alive again ({part.revived.iloc[-1]})",
        )
    steps.set(
        xlabel="optimizer step",
        ylabel=f"ReLU units (of {int(revived.units.iloc[0])} per layer)",
    )
    steps.set_title(
        f"ReLU, lr {revival_lr:g}: layer 1's dead units never come back,\n"
        "layer 2's do (the layer below them keeps changing)"
    )
    steps.legend(fontsize=8)
    run.save("dead_units")


def study(run: Run, lrs: list[float] | None = None, revival_lr: float = 3.0) -> Claim:
    """Dead-unit share against the learning rate for ReLU, leaky ReLU, PReLU and ELU; then
    ReLU's dead units per layer, step by step, at `revival_lr`."""
    lrs = lrs or run.size([0.03, 1.0, 3.0, 10.0], [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
    rows = [train(run, activation, lr) for activation in ACTIVATIONS for lr in lrs]
    frame = run.table("dead_units", rows)
    revived = run.table("revival", revival(run, revival_lr))
    draw(run, frame, revived, revival_lr)

    relu = frame[(frame.activation == "relu") & ~frame.diverged]
    others = frame[(frame.activation != "relu") & ~frame.diverged]
    diverged = frame[frame.diverged]
    relu_low, relu_high = float(relu.dead_fraction.iloc[0]), float(relu.dead_fraction.max())
    last = revived.groupby("layer").last()
    back = {int(k): int(v) for k, v in last.revived.items()}
    ever = {int(k): int(v) for k, v in last.ever_dead.items()}
    held = (
        relu_low <= 0.1
        and relu_high >= 0.3
        and float(relu.lr[relu.dead_fraction.idxmax()]) > float(relu.lr.iloc[0])
        and len(others) > 0
        and bool((others.dead_fraction == 0).all())
        and bool(diverged.dead_fraction.isna().all())
        and ever[1] > 0
        and back[1] == 0
        and back[2] > 0
    )
    statement = (
        f"ReLU dead units: {relu_low:.0%} at lr {relu.lr.iloc[0]:g}, up to {relu_high:.0%} at lr "
        f"{relu.lr[relu.dead_fraction.idxmax()]:g} (gradient norm clipped to {GRAD_CLIP:g}); "
        f"leaky ReLU, PReLU, ELU: {others.dead_fraction.max():.0%} in {len(others)} runs; "
        "diverged (reported apart): "
        + (", ".join(f"{r.activation} at lr {r.lr:g}" for r in diverged.itertuples()) or "none")
        + f"; at lr {revival_lr:g}, of the units ever dead, layer 1: {back[1]} of {ever[1]} "
        f"came back, layer 2: {back[2]} of {ever[2]}"
    )
    return run.claim(
        held,
        statement,
        relu_dead_low_lr=relu_low,
        relu_dead_max=relu_high,
        others_dead_max=float(others.dead_fraction.max()),
        diverged=[(r.activation, r.lr) for r in diverged.itertuples()],
        ever_dead=ever,
        revived=back,
    )
