"""Claim 1, the perceptron: the learning rule converges on AND, OR and linearly separable data,
and never on XOR; on XOR, only a network with a hidden layer draws a boundary that works."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from nnlab.lecture.fitting import Fit, compose_config, fit
from nnlab.lecture.study import Claim, Run
from nnlab.nn.networks import Perceptron

CORNERS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TRUTH_TABLES = {
    "AND": torch.tensor([0, 0, 0, 1]),
    "OR": torch.tensor([0, 1, 1, 1]),
    "XOR": torch.tensor([0, 1, 1, 0]),
}
# The three models compared on XOR, as run configs (the course's settings), with their epochs
# in fast and full mode (the perceptron's rule runs sample by sample in Python: slow).
XOR_MODELS = {
    "perceptron": (("experiment=xor_perceptron",), (8, 50)),
    "logistic regression": (("data=xor", "model=linear", "optimizer.lr=0.05"), (30, 60)),
    "MLP, 8 tanh units": (("experiment=xor_mlp",), (30, 60)),
}
LINEAR_CEILING = 0.75  # no line classifies more than 3 of XOR's 4 corners


def rule_on_table(labels: torch.Tensor, epochs: int) -> dict[str, Any]:
    """Runs nnlab's Perceptron rule (weights and bias from 0) over the four corners, epoch after
    epoch, until an epoch makes no mistake (converged) or for `epochs` epochs. Notes the first
    epoch whose (w, b) repeats an earlier epoch's: the rule is deterministic, so from there it
    cycles forever and provably never converges."""
    net = Perceptron(2, init={"name": "zeros"})
    seen: dict[tuple[float, ...], int] = {}
    mistakes: list[int] = []
    cycle = None
    for epoch in range(1, epochs + 1):
        delta_w, delta_b, wrong = net.rule_update(CORNERS, labels)
        with torch.no_grad():
            net.linear.weight += delta_w
            net.linear.bias += delta_b
        mistakes.append(int(wrong))
        if wrong == 0:
            return {"mistakes": mistakes, "converged": epoch, "cycle": None}
        state = (*net.linear.weight.flatten().tolist(), *net.linear.bias.tolist())
        if state in seen and cycle is None:
            cycle = (seen[state], epoch)
        seen.setdefault(state, epoch)
    return {"mistakes": mistakes, "converged": None, "cycle": cycle}


def rule_on_data(run: Run, data: str, epochs: int) -> list[int]:
    """Mistakes per epoch of the PerceptronTask (a Trainer run of model=perceptron, which starts
    from zero weights) on a datamodule; the task stops after the first epoch without a
    mistake."""
    n = run.size(200, 500) if data == "separable" else run.size(40, 100)
    size = "n_samples" if data == "separable" else "samples_per_corner"
    cfg = compose_config(f"seed={run.seed}", f"data={data}", "model=perceptron", f"data.{size}={n}")
    history = fit(cfg, epochs, validate=False).history
    return [int(m) for m in history["train/mistakes"]]


GRID = torch.linspace(-0.5, 1.5, 201)  # the square the boundaries are drawn on, both axes
CLASS_COLORS = ("#08519c", "#a63603")  # class 0, class 1: dark, on either background
P_LEVELS = [0.1, 0.3, 0.7, 0.9]  # the probability contours drawn besides p = 0.5


def grid_points() -> torch.Tensor:
    """GRID × GRID as (x₁, x₂) rows, x₁ varying fastest (row i of the image is x₂ = GRID[i])."""
    gx, gy = torch.meshgrid(GRID, GRID, indexing="xy")
    return torch.stack([gx.flatten(), gy.flatten()], 1)


def shading(model: Fit) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """A model's scores over the grid (GRID × GRID), what its panel shades there, and whether
    that is a probability: p(class 1 | x) = σ(score) for a model trained as one (logistic
    regression, the MLP: BCE on logits), else the predicted class (the perceptron: score > 0)."""
    scores = model.network(grid_points()).view(len(GRID), len(GRID))
    if isinstance(model.module.net, Perceptron):
        return scores, (scores > 0).float(), False
    return scores, torch.sigmoid(scores), True


def draw_boundary(ax: Axes, model: Fit, name: str, accuracy: float) -> Any:
    """A model on XOR: its p(class 1 | x) (or, for the perceptron, its two class regions), its
    decision boundary (score 0, i.e. p = 0.5) and the test points; the title gives the test
    accuracy, and says so when the boundary is not in view. Returns the shading's image."""
    scores, values, probability = shading(model)
    extent = (GRID[0].item(), GRID[-1].item(), GRID[0].item(), GRID[-1].item())
    image = ax.imshow(
        values.numpy(), origin="lower", extent=extent, cmap="RdBu_r", vmin=0, vmax=1, alpha=0.4
    )
    gx, gy = torch.meshgrid(GRID, GRID, indexing="xy")
    if probability:
        lines = ax.contour(gx, gy, values, levels=P_LEVELS, colors="0.35", linewidths=0.7)
        ax.clabel(lines, fontsize=7, fmt="p=%.1f")
    crosses = bool(scores.min() < 0 < scores.max())
    if crosses:
        ax.contour(gx, gy, scores, levels=[0.0], colors="k", linewidths=1.8)
    x, y = model.data.splits["test"]
    for label, (color, marker) in enumerate(zip(CLASS_COLORS, "o^", strict=True)):
        pts = x[y == label]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=22,
            c=color,
            marker=marker,
            edgecolors="white",
            linewidths=0.4,
            label=f"test point, class {label}",
        )
    title = f"{name}\ntest accuracy {accuracy:.2f}"
    if not crosses:
        low, high = values.min().item(), values.max().item()
        flat = "learned p ≈ 0.5 everywhere" if high - low < 0.1 else "boundary not in view"
        title += f"; {flat}\n(p from {low:.2f} to {high:.2f} in view)" if probability else ""
        title += "" if probability else "; boundary not in view"
    ax.set_title(title, fontsize=10)
    ax.set(xlabel="x₁ (input 1)", ylabel="x₂ (input 2)", xlim=extent[:2], ylim=extent[2:])
    ax.set_aspect("equal")
    return image


def draw_mistakes(
    run: Run, tables: dict[str, dict[str, Any]], on_data: dict[str, list[int]]
) -> None:
    """Mistakes per epoch of every run of the rule, in one figure and one table."""
    curves = {f"{name} (4 corners)": t["mistakes"] for name, t in tables.items()}
    if tables["XOR"]["cycle"]:
        first, again = tables["XOR"]["cycle"]
        label = f"XOR (4 corners): cycle, epoch {again} = epoch {first}"
        curves[label] = curves.pop("XOR (4 corners)")
    curves |= {"separable data": on_data["separable"], "noisy XOR data": on_data["xor"]}
    _, (ax,) = run.figure("mistakes", size=(6.5, 4.0))
    # Distinct markers and styles: curves that share points (AND and OR early on) stay visible.
    styles = zip("os^Dv", ["-", "--", "-", "-.", ":"], [7, 5, 5, 4, 4], strict=True)
    for (label, mistakes), (marker, ls, ms) in zip(curves.items(), styles, strict=True):
        epochs = range(1, len(mistakes) + 1)
        ax.plot(epochs, mistakes, marker=marker, ls=ls, ms=ms, mfc="none", label=label)
    ax.set_yscale("symlog", linthresh=1)
    ax.set(xlabel="epoch", ylabel="mistakes in the epoch (symlog)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Perceptron rule: an epoch without a mistake = converged")
    ax.legend(fontsize=8)
    run.save("mistakes")
    rows = (
        {"data": k, "epoch": i + 1, "mistakes": m}
        for k, v in curves.items()
        for i, m in enumerate(v)
    )
    run.table("mistakes", rows)


def xor_boundaries(run: Run) -> dict[str, float]:
    """Trains the perceptron, logistic regression and the MLP on XOR; draws their decision
    boundaries with the test points and returns their test accuracies. The models are kept in
    run.fits (by name), what each panel shades is theirs."""
    fig, axes = run.figure("xor_boundaries", ncols=3, size=(4.0, 4.6))
    accuracy = {}
    for ax, (name, (overrides, epochs)) in zip(axes, XOR_MODELS.items(), strict=True):
        model = fit(compose_config(f"seed={run.seed}", *overrides), run.size(*epochs), False)
        run.fits[name] = model
        accuracy[name] = model.accuracy("test")
        image = draw_boundary(ax, model, name, accuracy[name])
    bar = fig.colorbar(image, ax=axes, shrink=0.8, pad=0.01)
    bar.set_label("p(class 1 | x); perceptron: its class (0/1)")
    handles = [
        *axes[0].collections[-2:],
        Line2D([], [], color="k", lw=1.8, label="decision boundary: p = 0.5 (perceptron: score 0)"),
        Line2D([], [], color="0.35", lw=0.7, label="p(class 1 | x) = 0.1, 0.3, 0.7, 0.9"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle("Decision boundaries on XOR, drawn over the test points")
    run.save("xor_boundaries")
    run.table("xor_accuracy", ({"model": k, "test_accuracy": v} for k, v in accuracy.items()))
    return accuracy


def study(run: Run) -> Claim:
    """Truth tables by the rule itself, noisy data by the PerceptronTask, and the decision
    boundaries of the perceptron, logistic regression and an MLP on XOR."""
    epochs = run.size(20, 50)
    tables = {name: rule_on_table(labels, epochs) for name, labels in TRUTH_TABLES.items()}
    on_data = {d: rule_on_data(run, d, epochs) for d in ("separable", "xor")}
    draw_mistakes(run, tables, on_data)
    accuracy = xor_boundaries(run)

    converged = {name: t["converged"] for name, t in tables.items()}
    separable_epochs = len(on_data["separable"]) if on_data["separable"][-1] == 0 else None
    held = (
        converged["AND"] is not None
        and converged["OR"] is not None
        and tables["XOR"]["cycle"] is not None
        and separable_epochs is not None
        and min(on_data["xor"]) > 0
        and accuracy["perceptron"] <= LINEAR_CEILING + 0.02
        and accuracy["logistic regression"] <= LINEAR_CEILING + 0.02
        and accuracy["MLP, 8 tanh units"] >= 0.95
    )
    first, again = tables["XOR"]["cycle"] or (None, None)
    statement = (
        f"the rule converges on AND in {converged['AND']} epochs, OR in {converged['OR']}, "
        f"separable data in {separable_epochs}; on XOR's corners (w, b) after epoch {again} "
        f"repeats epoch {first}'s (a cycle: never converges), on noisy XOR ≥ "
        f"{min(on_data['xor'])} mistakes every epoch of {epochs}; XOR test accuracy: "
        + ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items())
    )
    return run.claim(
        held,
        statement,
        converged_epochs={**converged, "separable": separable_epochs},
        xor_cycle=tables["XOR"]["cycle"],
        noisy_xor_min_mistakes=min(on_data["xor"]),
        xor_test_accuracy=accuracy,
    )
