"""Claim 1, the perceptron: the learning rule converges on AND, OR and linearly separable data,
and never on XOR; on XOR, only a network with a hidden layer draws a boundary that works."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.axes import Axes

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


def draw_boundary(ax: Axes, model: Fit, title: str) -> None:
    """The model's two class regions over the unit square's surroundings, and its training data."""
    grid = torch.linspace(-0.5, 1.5, 201)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    scores = model.network(torch.stack([gx.flatten(), gy.flatten()], 1)).view(gx.shape)
    gx, gy, scores = gx.numpy(), gy.numpy(), scores.numpy()
    ax.contourf(gx, gy, scores > 0, levels=[-0.5, 0.5, 1.5], colors=["#9ecae1", "#fdae6b"])
    ax.contour(gx, gy, scores, levels=[0.0], colors="k", linewidths=1)
    x, y = model.data.splits["train"]
    for label, color in ((0, "#08519c"), (1, "#a63603")):
        pts = x[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, c=color, label=f"class {label}")
    ax.set(title=title, xlabel="x₁", ylabel="x₂", xlim=(-0.5, 1.5), ylim=(-0.5, 1.5))
    ax.set_aspect("equal")
    ax.legend(loc="upper center", fontsize=7, ncols=2)


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
    for label, mistakes in curves.items():
        ax.plot(range(1, len(mistakes) + 1), mistakes, marker="o", ms=3, label=label)
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
    boundaries and returns their test accuracies."""
    fig, axes = run.figure("xor_boundaries", ncols=3, size=(4.0, 4.2))
    accuracy = {}
    for ax, (name, (overrides, epochs)) in zip(axes, XOR_MODELS.items(), strict=True):
        model = fit(compose_config(f"seed={run.seed}", *overrides), run.size(*epochs), False)
        accuracy[name] = model.accuracy("test")
        draw_boundary(ax, model, f"{name}: test accuracy {accuracy[name]:.2f}")
    fig.suptitle("Decision boundaries on XOR")
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
