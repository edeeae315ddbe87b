"""Claim 14, the optimizers: gradient descent's path on a 2-D quadratic bowl for a learning rate
too small (it crawls), right (it converges) and too big (it overshoots and diverges), as the
course draws it; then plain SGD, SGD with momentum and Adam in a ravine (a bowl 100 times
steeper across than along). Every step is taken by the optimizer nnlab's configs build
(configs/optimizer/: sgd, sgd_momentum, adam), on the exact gradient of f(w) = ½·wᵀAw."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from nnlab.core import is_int
from nnlab.core.hydra import instantiate_config
from nnlab.lecture.fitting import compose_config
from nnlab.lecture.study import Claim, Run


def rotated(eigenvalues: tuple[float, float], degrees: float) -> torch.Tensor:
    """The symmetric matrix with these eigenvalues, its eigenvectors turned by `degrees`."""
    t = math.radians(degrees)
    q = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


# The bowl: eigenvalues 1 and 4, so gradient descent is stable for lr < 2/4 and fastest at
# lr = 2/(1 + 4) (both directions then contract by 0.6 per step).
BOWL = rotated((1.0, 4.0), 30.0)
BOWL_START = (-2.5, 2.0)
# The ravine: curvature 0.1 along w₁, 10 across (condition number 100).
RAVINE = torch.diag(torch.tensor([0.1, 10.0], dtype=torch.float64))
RAVINE_START = (-4.5, 1.0)
# name → (optimizer config, its overrides). One learning rate for SGD with and without
# momentum: the momentum (0.9, the config's) is the only difference.
RAVINE_OPTIMIZERS: dict[str, tuple[str, dict[str, float]]] = {
    "SGD": ("sgd", {"lr": 0.18}),
    "SGD + momentum 0.9": ("sgd_momentum", {"lr": 0.18}),
    "Adam": ("adam", {"lr": 0.3}),
}
TARGET = 1e-3  # "converged": f at most this share of its starting value


def loss(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """f(w) = ½·wᵀAw, minimum 0 at w = 0."""
    return 0.5 * w @ a @ w


def descend(
    a: torch.Tensor, start: tuple[float, float], steps: int, name: str, **options: float
) -> pd.DataFrame:
    """The path of optimizer config `name` (with `options` overriding it) from `start`:
    one row per step (0 = the start) with w₁, w₂ and f(w)."""
    cfg = compose_config(f"optimizer={name}", *(f"optimizer.{k}={v}" for k, v in options.items()))
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = instantiate_config(cfg.optimizer)(params=[w])
    rows = []
    for step in range(steps + 1):
        optimizer.zero_grad()
        f = loss(a, w)
        rows.append({"step": step, "w1": w[0].item(), "w2": w[1].item(), "loss": f.item()})
        if step < steps and math.isfinite(f.item()):
            f.backward()
            optimizer.step()
    return pd.DataFrame(rows)


def steps_to_target(path: pd.DataFrame) -> float:
    """The first step with f ≤ TARGET·f(start); inf if none."""
    below = path.step[path.loss <= TARGET * path.loss.iloc[0]]
    return float(below.iloc[0]) if len(below) else math.inf


def contours(ax: Axes, a: torch.Tensor, box: tuple[float, float, float, float]) -> None:
    """The level sets of f over box = (w₁ min, w₁ max, w₂ min, w₂ max), labelled with f."""
    w1, w2 = np.meshgrid(np.linspace(*box[:2], 200), np.linspace(*box[2:], 200))
    m = a.numpy()
    f = 0.5 * (m[0, 0] * w1**2 + 2 * m[0, 1] * w1 * w2 + m[1, 1] * w2**2)
    levels = np.geomspace(f.max() / 300, f.max(), 6)
    lines = ax.contour(w1, w2, f, levels=levels, colors="0.65", linewidths=0.8)
    ax.clabel(lines, fmt="f=%.2g", fontsize=7)
    ax.plot([], [], "s", ms=7, color="k", mfc="white", label="start")
    ax.plot(0, 0, "k*", ms=12, mec="white", zorder=4, label="minimum (w = 0)")
    ax.set(xlim=box[:2], ylim=box[2:], xlabel="weight w₁", ylabel="weight w₂", aspect="equal")


def draw_path(ax: Axes, path: pd.DataFrame, label: str, color: str) -> Line2D:
    """Draws a path (its finite steps) and its start; returns the path's line."""
    finite = path[np.isfinite(path.loss)]
    (line,) = ax.plot(finite.w1, finite.w2, "-o", ms=3, lw=1.2, color=color, label=label)
    ax.plot(finite.w1.iloc[0], finite.w2.iloc[0], "s", ms=7, color=color, mfc="white", zorder=3)
    return line


def learning_rates(run: Run, lrs: tuple[float, float, float], steps: int) -> dict[str, Any]:
    """Part 1: plain gradient descent (optimizer=sgd) on the bowl at each lr."""
    eigen = torch.linalg.eigvalsh(BOWL)
    bound = 2 / eigen.max().item()
    paths = {lr: descend(BOWL, BOWL_START, steps, "sgd", lr=lr) for lr in lrs}
    run.table("lr_paths", pd.concat([p.assign(lr=lr) for lr, p in paths.items()]))

    fig, axes = run.figure("lr_paths", ncols=4, size=(4.0, 4.4))
    names = ("too small", "right", "too big")
    final = {lr: float(p.loss.iloc[-1]) for lr, p in paths.items()}
    lines = []
    for i, (ax, lr, name) in enumerate(zip(axes[:3], lrs, names, strict=True)):
        finite = paths[lr][np.isfinite(paths[lr].loss)]
        reach = max(4.0, 1.1 * float(finite[["w1", "w2"]].abs().to_numpy().max()))
        contours(ax, BOWL, (-reach, reach, -reach, reach))  # the whole path in view
        lines.append(draw_path(ax, paths[lr], f"gradient descent, lr {lr:g}", f"C{i}"))
        ax.set_title(f"lr {lr:g} ({name}): f after {steps} steps = {final[lr]:.2g}", fontsize=9)
    markers = axes[0].get_legend_handles_labels()[0][:2]  # start, minimum
    fig.legend(handles=markers + lines, loc="outside lower center", ncols=5, fontsize=8)
    curve = axes[3]
    for i, (lr, name) in enumerate(zip(lrs, names, strict=True)):
        curve.plot(
            paths[lr].step, paths[lr].loss, "-o", ms=2.5, color=f"C{i}", label=f"lr {lr:g} ({name})"
        )
    curve.set(yscale="log", xlabel="step", ylabel="f(w) = ½·wᵀAw (log)")
    curve.set_title(f"Stable only for lr < 2/λmax = {bound:.2g}", fontsize=9)
    curve.legend(fontsize=7)
    fig.suptitle(
        f"Gradient descent w ← w − lr·∇f on f(w) = ½·wᵀAw, eigenvalues of A: "
        f"{eigen[0]:.0f} and {eigen[1]:.0f}"
    )
    run.save("lr_paths")
    return {"final": final, "bound": bound, "start": float(paths[lrs[0]].loss.iloc[0])}


def ravine(run: Run, steps: int) -> dict[str, Any]:
    """Part 2: SGD, momentum and Adam from the same start in the ravine."""
    paths = {
        label: descend(RAVINE, RAVINE_START, steps, name, **options)
        for label, (name, options) in RAVINE_OPTIMIZERS.items()
    }
    run.table("ravine", pd.concat([p.assign(optimizer=label) for label, p in paths.items()]))
    reach = {label: steps_to_target(p) for label, p in paths.items()}

    _, (ax, curve) = run.figure("ravine", ncols=2, size=(6.0, 4.6))
    contours(ax, RAVINE, (-5, 2, -1.5, 1.5))
    for i, (label, path) in enumerate(paths.items()):
        name, options = RAVINE_OPTIMIZERS[label]
        draw_path(ax, path, f"{label} (optimizer={name}, lr {options['lr']:g})", f"C{i}")
        took = f"{reach[label]:.0f}" if math.isfinite(reach[label]) else f"> {steps}"
        curve.plot(path.step, path.loss, color=f"C{i}", label=f"{label}: {took} steps to 10⁻³")
    ax.set_title("Paths in a ravine (curvature 0.1 along w₁, 10 across)", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2)
    ax.set_aspect("auto")
    curve.axhline(
        TARGET * paths["SGD"].loss.iloc[0], color="gray", ls=":", label="10⁻³ of the start"
    )
    curve.set(yscale="log", xlabel="step", ylabel="f(w) (log)")
    curve.set_title("Loss per step", fontsize=9)
    curve.legend(fontsize=7)
    run.save("ravine")
    final = {label: float(p.loss.iloc[-1]) for label, p in paths.items()}
    return {"steps_to_target": reach, "final": final}


def study(run: Run, lrs: tuple[float, float, float] = (0.02, 0.4, 0.52), steps: int = 100) -> Claim:
    """Gradient descent on the bowl at `lrs` (too small, right, too big) for 20 steps, then
    the ravine for `steps` steps with each of RAVINE_OPTIMIZERS (a few seconds: no fast mode)."""
    numbers = len(lrs) == 3 and all(isinstance(lr, int | float) and lr > 0 for lr in lrs)
    ok = numbers and lrs[0] < lrs[1] < lrs[2]
    run.check("lrs", lrs, ok, "three learning rates > 0, increasing (too small, right, too big)")
    run.check("steps", steps, is_int(steps) and steps >= 1, "an int >= 1")
    bowl = learning_rates(run, lrs, 20)
    valley = ravine(run, steps)

    small, right, big = lrs
    final, reach = bowl["final"], valley["steps_to_target"]
    sgd, momentum, adam = RAVINE_OPTIMIZERS
    held = (
        final[right] < 1e-6 * bowl["start"]
        and final[small] > 1e3 * final[right]
        and final[big] > bowl["start"]
        and max(reach[momentum], reach[adam]) < reach[sgd]
    )
    statement = (
        f"on the bowl (stable for lr < {bowl['bound']:.2g}), after 20 steps f falls from "
        f"{bowl['start']:.3g} to {final[small]:.2g} at lr {small:g}, {final[right]:.1g} at lr "
        f"{right:g}, and grows to {final[big]:.3g} at lr {big:g}; in the ravine, f reaches "
        f"{TARGET:g} of its start in "
        + ", ".join(
            f"{label} {r:.0f} steps" if math.isfinite(r) else f"{label} more than {steps} steps"
            for label, r in reach.items()
        )
    )
    return run.claim(
        held,
        statement,
        bowl_final_loss=final,
        bowl_start_loss=bowl["start"],
        stable_below=bowl["bound"],
        ravine_steps_to_target=reach,
        ravine_final_loss=valley["final"],
    )
