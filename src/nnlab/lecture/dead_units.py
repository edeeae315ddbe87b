"""Claim 6, dead ReLUs: the larger the learning rate, the more ReLU units die (output 0 with
zero gradient for every training example, so no step can revive them); leaky ReLU, PReLU and
ELU have no dead units. A run whose weights went non-finite diverged: it is reported as such,
never counted as dead units."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnlab.lecture.fitting import Fit, compose_config, fit
from nnlab.lecture.study import Claim, Run

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu")
DIVERGED_Y = 1.12  # where diverged runs are drawn, above the [0, 1] fractions


@torch.no_grad()
def _finite(net: nn.Module) -> bool:
    return all(bool(p.isfinite().all()) for p in net.parameters())


def dead_units(net: nn.Sequential, x: torch.Tensor) -> list[float] | None:
    """Per hidden layer, the share of dead units over the batch x: output exactly 0 and
    derivative exactly 0 for every example. None when the weights or activations are not
    finite (a diverged run: its units are broken, not dead)."""
    if not _finite(net):
        return None
    shares = []
    for module in net:
        if isinstance(module, nn.Linear | nn.Flatten):
            x = module(x).detach()
            continue
        z = x.requires_grad_()
        a = module(z)
        (slope,) = torch.autograd.grad(a.sum(), z)  # f′(z), elementwise
        if not (a.isfinite().all() and z.isfinite().all()):
            return None
        shares.append(((a == 0).all(0) & (slope == 0).all(0)).float().mean().item())
        x = a.detach()
    return shares


def train(run: Run, activation: str, lr: float) -> dict[str, Any]:
    """An MLP (2 × 64 units, Kaiming init) trained on digits by SGD at `lr`; its dead units
    over the whole training split."""
    cfg = compose_config(
        f"seed={run.seed}",
        "data=digits",
        "model.hidden_sizes=[64,64]",
        f"activation={activation}",
        "init=kaiming",
        "optimizer=sgd",
        f"optimizer.lr={lr}",
    )
    model: Fit = fit(cfg, run.size(1, 5), validate=False)
    x, _ = model.data.splits["train"]
    x = model.data.normalizer(x) if model.data.normalizer is not None else x.float()
    model.module.eval()
    shares = dead_units(model.module.net, x)
    loss = model.loss("train")
    diverged = shares is None or not math.isfinite(loss)
    return {
        "activation": activation,
        "lr": lr,
        "diverged": diverged,
        "dead_fraction": math.nan if diverged else sum(shares) / len(shares),
        "dead_by_layer": None if diverged else shares,
        "train_loss": loss,
    }


def draw(run: Run, frame: Any) -> None:
    _, (ax,) = run.figure("dead_units", size=(6.4, 4.2))
    for i, activation in enumerate(ACTIVATIONS):
        part = frame[frame.activation == activation]
        ok, bad = part[~part.diverged], part[part.diverged]
        # Markers of decreasing size, and diverged marks stacked: curves at 0 stay visible.
        style = {"marker": "osD^"[i], "color": f"C{i}", "ms": 9 - 1.5 * i}
        ax.plot(ok.lr, ok.dead_fraction, label=activation, **style)
        ax.plot(bad.lr, [DIVERGED_Y - 0.03 * i] * len(bad), ls="none", mew=2, **style)
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
        ylim=(-0.05, 1.17),
        xlabel="learning rate (SGD)",
        ylabel="share of dead hidden units",
    )
    ax.set_title("Dead units after training on digits (output 0, gradient 0, every example)")
    ax.legend(fontsize=8, loc="center left")
    run.save("dead_units")


def study(run: Run, lrs: list[float] | None = None) -> Claim:
    """Dead-unit share against the learning rate for ReLU, leaky ReLU, PReLU and ELU."""
    lrs = lrs or run.size([0.03, 1.0, 3.0], [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
    rows = [train(run, activation, lr) for activation in ACTIVATIONS for lr in lrs]
    frame = run.table("dead_units", rows)
    draw(run, frame)

    relu = frame[(frame.activation == "relu") & ~frame.diverged]
    others = frame[(frame.activation != "relu") & ~frame.diverged]
    diverged = frame[frame.diverged]
    relu_low, relu_high = float(relu.dead_fraction.iloc[0]), float(relu.dead_fraction.max())
    held = (
        relu_low <= 0.1
        and relu_high >= 0.3
        and float(relu.lr[relu.dead_fraction.idxmax()]) > float(relu.lr.iloc[0])
        and bool((others.dead_fraction == 0).all())
        and bool(diverged.dead_fraction.isna().all())
    )
    statement = (
        f"ReLU dead units: {relu_low:.0%} at lr {relu.lr.iloc[0]:g}, up to {relu_high:.0%} at lr "
        f"{relu.lr[relu.dead_fraction.idxmax()]:g}; leaky ReLU, PReLU, ELU: "
        f"{others.dead_fraction.max():.0%} in {len(others)} runs; diverged (reported apart): "
        + (", ".join(f"{r.activation} at lr {r.lr:g}" for r in diverged.itertuples()) or "none")
    )
    return run.claim(
        held,
        statement,
        relu_dead_low_lr=relu_low,
        relu_dead_max=relu_high,
        others_dead_max=float(others.dead_fraction.max()),
        diverged=[(r.activation, r.lr) for r in diverged.itertuples()],
    )
