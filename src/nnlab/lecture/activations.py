"""Claim 4, activations: every activation of configs/activation/ and its derivative, where each
saturates (its derivative ≈ 0), and the gain that initializers scale its layers' weights by."""

from __future__ import annotations

import math
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from omegaconf import OmegaConf
from torch import nn

from nnlab.lecture.fitting import CONFIG_DIR
from nnlab.lecture.study import Claim, Run
from nnlab.nn.activations import ACTIVATIONS, Maxout, create_activation
from nnlab.nn.init import gain
from nnlab.nn.networks import MLP

X_RANGE = 8.0
# |f'(x)| below this is saturated: the gradient through the unit has (nearly) vanished. Below
# leaky ReLU's 0.01 slope on purpose: a small slope is what keeps leaky units learning.
SATURATED = 5e-3
# The course's saturation claims, as (saturates for x → −∞, saturates for x → +∞).
EXPECTED = {
    "sigmoid": (True, True),
    "tanh": (True, True),
    "relu": (True, False),
    "leaky_relu": (False, False),
    "identity": (False, False),
}
# The gains the literature gives (He et al. 2015; PyTorch's calculate_gain).
KNOWN_GAINS = {"identity": 1.0, "relu": math.sqrt(2), "tanh": 5 / 3, "sigmoid": 1.0}


def activation_configs() -> dict[str, dict[str, Any]]:
    """Each activation config of configs/activation/ (the one list of them), by file name, in
    the registry's (the course's) order: identity, sigmoid, tanh, the ReLU family, ..."""
    paths = {path.stem: path for path in (CONFIG_DIR / "activation").glob("*.yaml")}
    order = [entry.name for entry in ACTIVATIONS]
    return {
        name: OmegaConf.to_container(OmegaConf.load(paths[name]))  # type: ignore[misc]
        for name in sorted(paths, key=lambda n: (order.index(n) if n in order else len(order), n))
    }


def activation_layer(cfg: dict[str, Any], seed: int) -> nn.Module:
    """The layer applying the activation to a (N, 1) input: the elementwise layer, or for an
    activation that replaces the linear layer (maxout), a one-unit one with seeded pieces."""
    try:
        return create_activation(cfg, width=1)
    except ValueError:  # maxout: it is built as the hidden layer itself
        torch.manual_seed(seed)
        net = MLP(1, 1, hidden_sizes=[1], activation=cfg, init={"name": "default"})
        return next(m for m in net if isinstance(m, Maxout))


def he_gain(layer: nn.Module, z: torch.Tensor) -> float:
    """1/√E[f(z)²] over samples z ~ N(0, 1) (He's definition); for maxout, f is the max of its
    k pieces, each an N(0, 1) pre-activation."""
    with torch.no_grad():
        if isinstance(layer, Maxout):
            out = z[: len(z) // layer.k * layer.k].view(-1, layer.k).amax(1)
        else:
            out = layer(z[:, None])
    return 1 / math.sqrt(out.square().mean().item())


def curve(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), f'(x)) on a 1-D grid, the derivative by autograd."""
    x = x.clone().requires_grad_()
    y = layer(x[:, None]).squeeze(-1)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy


def saturation(x: torch.Tensor, dy: torch.Tensor) -> tuple[bool, bool]:
    """Whether the derivative is below SATURATED at each end of the grid."""
    low = dy.abs() < SATURATED
    return bool(low[x < 0][0]), bool(low[x > 0][-1])


def shade(ax: Axes, x: torch.Tensor, where: torch.Tensor, color: str, alpha: float) -> None:
    """Shades each run of grid points where `where` holds."""
    start = None
    for i, flag in enumerate([*where.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            ax.axvspan(x[start].item(), x[i - 1].item(), color=color, alpha=alpha, lw=0)
            start = None


def pieces(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Maxout's k affine pieces w_j·x + b_j on the grid, (N, k); None for other activations."""
    if not isinstance(layer, Maxout):
        return None
    with torch.no_grad():
        return layer.linear(x[:, None])


def draw(ax: Axes, name: str, x: torch.Tensor, y: torch.Tensor, dy: torch.Tensor, g: float) -> None:
    """f and f′ on the grid; red where f′ is exactly 0 (no gradient at all), orange where it is
    small but not 0 (saturated)."""
    shade(ax, x, dy == 0, "red", 0.22)
    shade(ax, x, (dy.abs() < SATURATED) & (dy != 0), "orange", 0.22)
    ax.axhline(0, color="gray", lw=0.5)
    ax.plot(x, y, lw=2, label="f(x)")
    ax.plot(x, dy, ls="--", lw=1.5, label="f′(x)")
    ax.set_ylim(-2.0, 3.0)
    ax.set_title(f"{name}   gain {g:.3f}", fontsize=10)
    ax.set_xlabel("pre-activation x")


def draw_maxout(ax: Axes, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Maxout's panel: its k pieces (dotted) under f, their max; says so in the title."""
    parts = pieces(layer, x)
    assert parts is not None
    for j in range(parts.shape[1]):
        ax.plot(x, parts[:, j], ls=":", lw=1.2, color="0.3", label=f"piece {j + 1}: w·x + b")
    ax.set_title(
        f"{ax.get_title()}\nf = the max of its {parts.shape[1]} affine pieces (dotted)", fontsize=9
    )


def study(run: Run) -> Claim:
    """Plots f and f′ of every activation config, shades |f′| < SATURATED, and lists gains:
    nnlab's (what its initializers use) and 1/√E[f(z)²] for z ~ N(0, 1) (He's definition)."""
    configs = activation_configs()
    x = torch.linspace(-X_RANGE, X_RANGE, 1601)
    z = torch.randn(1_000_000, generator=torch.Generator().manual_seed(run.seed))
    ncols = 5
    fig, axes = run.figure(
        "activations", ncols=ncols, nrows=math.ceil(len(configs) / ncols), size=(3.2, 2.8)
    )
    rows = []
    for ax, (name, cfg) in zip(axes, configs.items(), strict=False):
        layer = activation_layer(cfg, run.seed)
        y, dy = curve(layer, x)
        left, right = saturation(x, dy)
        rows.append(
            {
                "activation": name,
                "gain": gain(cfg),
                "gain_he": he_gain(layer, z),
                "saturates_left": left,
                "saturates_right": right,
                "slope_at_minus_x": dy[0].item(),
                "slope_at_plus_x": dy[-1].item(),
            }
        )
        draw(ax, name, x, y, dy, rows[-1]["gain"])
        if isinstance(layer, Maxout):
            draw_maxout(ax, layer, x, y)
    for ax in axes[len(configs) :]:
        ax.set_axis_off()
    for ax in axes[::ncols]:
        ax.set_ylabel("f(x) and f′(x)")
    handles = [
        Line2D([], [], color="C0", lw=2, label="f(x), the activation"),
        Line2D([], [], color="C1", ls="--", lw=1.5, label="f′(x), its slope (autograd)"),
        Line2D([], [], color="0.3", ls=":", label="maxout: its affine pieces w·x + b"),
        Patch(color="red", alpha=0.22, label="f′ = 0 exactly: no gradient (ReLU: dead if always)"),
        Patch(
            color="orange", alpha=0.22, label=f"0 < |f′| < {SATURATED}: saturated, tiny gradient"
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    fig.suptitle(
        "Activations f and their slopes f′, in the course's order. gain: Kaiming init draws the "
        "weights of the layer feeding f with std gain/√fan_in (ReLU √2, tanh 5/3; notebook 6)",
        fontsize=11,
    )
    run.save("activations")
    frame = run.table("activations", rows).set_index("activation")

    found = {n: (bool(frame.saturates_left[n]), bool(frame.saturates_right[n])) for n in EXPECTED}
    gains = {n: float(frame.gain[n]) for n in frame.index}
    gain_ok = all(abs(gains[n] - v) < 1e-6 for n, v in KNOWN_GAINS.items())
    held = found == EXPECTED and gain_ok and len(frame) == len(configs)

    def sides(n: str) -> str:
        left, right = found[n]
        return {(True, True): "both ends", (True, False): "x < 0"}.get((left, right), "nowhere")

    statement = (
        f"{len(frame)} activations from configs/activation/; saturated (|f′| < {SATURATED}) at: "
        + ", ".join(f"{n} {sides(n)}" for n in EXPECTED)
        + "; gains: "
        + ", ".join(f"{n} {g:.3f}" for n, g in gains.items())
    )
    return run.claim(
        held,
        statement,
        gains=gains,
        saturation=found,
        gain_he={n: float(v) for n, v in frame.gain_he.items()},
    )
