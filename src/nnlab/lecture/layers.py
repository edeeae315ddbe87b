"""Claims 2 and 3, the feedforward layer: Y = X Wᵀ + b on a batch (an image batch flattened
first), and a stack of linear layers without activations, which is one linear map."""

from __future__ import annotations

import math

import pandas as pd
import torch
from matplotlib.axes import Axes
from torch import nn

from nnlab.lecture.fitting import Fit, build, compose_config, fit
from nnlab.lecture.study import Claim, Run
from nnlab.nn.networks import MLP

TOLERANCE = 1e-5  # float32 products of a few layers agree to about 1e-6


def show_matrix(ax: Axes, m: torch.Tensor, title: str) -> None:
    """A matrix as a heat map with its entries written in, titled with its shape."""
    m = m.detach().reshape(-1, m.shape[-1]) if m.dim() > 1 else m.detach()[None]
    bound = m.abs().max().item()
    ax.imshow(m.numpy(), cmap="coolwarm", vmin=-bound, vmax=bound)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j].item():.1f}", ha="center", va="center", fontsize=7)
    ax.set_title(f"{title}  {tuple(m.shape)}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


Rows = list[dict[str, str]]


def shape_rows(batch: str, tensors: dict[str, torch.Tensor]) -> Rows:
    """One table row per tensor: its batch, its name and its shape written as 8×64."""
    return [
        {"batch": batch, "tensor": name, "shape": "×".join(map(str, t.shape))}
        for name, t in tensors.items()
    ]


def affine_batch(run: Run) -> tuple[dict[str, float], Rows]:
    """Y = X Wᵀ + b for a batch of 5 inputs of 4 features through an MLP without hidden layers
    (the linear model of model=linear), against the formula."""
    torch.manual_seed(run.seed)
    x = torch.randn(5, 4)
    net = MLP(4, 3, hidden_sizes=[])
    layer = net[-1]
    y = net(x)
    formula = x @ layer.weight.T + layer.bias
    fig, axes = run.figure("affine_batch", ncols=4, size=(2.6, 3.0))
    for ax, (m, title) in zip(
        axes,
        ((x, "X"), (layer.weight.T, "Wᵀ"), (layer.bias, "b"), (y, "Y = X Wᵀ + b")),
        strict=True,
    ):
        show_matrix(ax, m, title)
    fig.suptitle("A batch through one layer: each row of X is one sample, each row of Y its output")
    run.save("affine_batch")
    shapes = shape_rows("random", {"X": x, "W": layer.weight, "b": layer.bias, "Y": y})
    return {"batch_max_abs_diff": (y - formula).abs().max().item()}, shapes


def image_batch(run: Run) -> tuple[dict[str, float], Rows]:
    """A batch of digits (N, 1, 8, 8) through the linear model that data=digits model=linear
    builds: its Flatten makes each image a row of 64 pixels, then Y = X Wᵀ + b."""
    cfg = compose_config(f"seed={run.seed}", "data=digits", "model=linear")
    data, model = build(cfg)  # sized by the data's spec: in_features = 1·8·8
    x = data.splits["train"][0][:8].float()
    flat = x.flatten(1)
    layer = model.net[-1]
    y = model.net(x)
    diff = (y - (flat @ layer.weight.T + layer.bias)).abs().max().item()
    _, axes = run.figure("flatten", ncols=2, size=(4.5, 3.6))
    axes[0].imshow(x[0, 0].numpy(), cmap="gray_r")
    axes[0].set_title(f"one image of the batch {tuple(x.shape)}", fontsize=9)
    axes[0].set(xlabel="pixel column", ylabel="pixel row")
    axes[1].imshow(flat.numpy(), cmap="gray_r", aspect="auto", interpolation="nearest")
    axes[1].set_title(f"the batch flattened: X {tuple(flat.shape)}", fontsize=9)
    axes[1].set(xlabel="pixel (row by row)", ylabel="sample")
    run.save("flatten")
    shapes = shape_rows(
        "digits",
        {"images": x, "X (flattened)": flat, "W": layer.weight, "b": layer.bias, "Y": y},
    )
    return {"image_max_abs_diff": diff, "in_features": layer.in_features}, shapes


def feedforward(run: Run) -> Claim:
    """Claim 2: a layer maps a batch X (N, d) to Y = X Wᵀ + b (N, k); images are flattened."""
    with torch.no_grad():
        numbers, shapes = affine_batch(run)
        image, image_shapes = image_batch(run)
    numbers |= image
    run.table("shapes", shapes + image_shapes)
    held = max(numbers["batch_max_abs_diff"], numbers["image_max_abs_diff"]) <= TOLERANCE
    statement = (
        f"nnlab's layer equals X Wᵀ + b on a (5, 4) batch (max |diff| "
        f"{numbers['batch_max_abs_diff']:.1e}) and on 8 digits flattened from (8, 1, 8, 8) to "
        f"(8, {numbers['in_features']}) (max |diff| {numbers['image_max_abs_diff']:.1e})"
    )
    return run.claim(held, statement, **numbers)


def collapse(net: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """The one linear map (W, b) that a stack of Linear layers without activations computes:
    layer by layer, W ← Wᵢ W and b ← Wᵢ b + bᵢ."""
    layers = [m for m in net if not isinstance(m, nn.Flatten | nn.Identity)]
    if not all(isinstance(m, nn.Linear) for m in layers):
        raise ValueError("collapse: the network has more than Linear layers")
    w = torch.eye(layers[0].in_features)
    b = torch.zeros(layers[0].in_features)
    for layer in layers:
        w, b = layer.weight @ w, layer.weight @ b + layer.bias
    return w, b


@torch.no_grad()
def collapse_gap(net: nn.Sequential, x: torch.Tensor) -> float:
    """max |stack(x) − (x Wᵀ + b)| for the collapsed (W, b)."""
    w, b = collapse(net)
    return (net(x) - (x.flatten(1) @ w.T + b)).abs().max().item()


DEEP_LINEAR, DEEP_TANH, ONE_LAYER = (
    "3 hidden layers, no activation",
    "3 hidden layers, tanh",
    "one linear layer",
)


def xor_fits(run: Run) -> dict[str, Fit]:
    """One linear layer, and 3 hidden layers of 16 units without and with tanh, trained on
    XOR alike; their training curves drawn and tabled."""
    hidden = "model.hidden_sizes=[16,16,16]"
    models = {
        ONE_LAYER: ("model=linear",),
        DEEP_LINEAR: (hidden, "activation=identity"),
        DEEP_TANH: (hidden, "activation=tanh"),
    }
    fits = {}
    fig, (ax,) = run.figure("training", size=(6.0, 4.6))
    # The two linear models' curves lie on each other at ln 2: a wide pale line under a dashed
    # one with markers, and an inset zoomed on them.
    zoom = ax.inset_axes((0.45, 0.4, 0.5, 0.3))
    styles = ({"lw": 5, "alpha": 0.4}, {"ls": "--", "marker": "o", "ms": 3}, {"lw": 1.5})
    for (name, overrides), style in zip(models.items(), styles, strict=True):
        cfg = compose_config(
            f"seed={run.seed}", "data=xor", *overrides, "init=xavier_normal", "optimizer.lr=0.02"
        )
        fits[name] = fit(cfg, run.size(25, 60), validate=False)
        history = fits[name].history
        ax.plot(history.epoch, history["train/loss"], label=name, **style)
        if name != DEEP_TANH:
            zoom.plot(history.epoch, history["train/loss"], **style)
    for a in (ax, zoom):
        a.axhline(math.log(2), color="gray", ls=":", label="ln 2: predicting ½ everywhere")
    zoom.set_title("zoom on the two linear models", fontsize=8)
    zoom.tick_params(labelsize=7)
    ax.set(xlabel="epoch", ylabel="training loss (BCE, nats, epoch mean; log scale)", yscale="log")
    ax.set_title("XOR: a deep linear network is still one linear map")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    run.save("training")
    run.table(
        "training",
        pd.concat(
            [f.history[["epoch", "train/loss"]].assign(model=name) for name, f in fits.items()]
        ),
    )
    return fits


def linear_collapse(run: Run) -> Claim:
    """Claim 3: linear layers without activations collapse into one (checked on the product of
    the weights, before and after training), and fit XOR no better than one layer."""
    torch.manual_seed(run.seed)
    stack = MLP(10, 3, hidden_sizes=[32, 32, 32], activation={"name": "identity"})
    gap_at_init = collapse_gap(stack, torch.randn(64, 10))
    fits = xor_fits(run)
    x_train = fits[ONE_LAYER].data.splits["train"][0]
    gap_trained = collapse_gap(fits[DEEP_LINEAR].module.net, x_train)
    loss = {name: f.loss("train") for name, f in fits.items()}
    accuracy = {name: f.accuracy("test") for name, f in fits.items()}
    run.table(
        "result",
        ({"model": m, "final_train_loss": loss[m], "test_accuracy": accuracy[m]} for m in fits),
    )
    deep, one = loss[DEEP_LINEAR], loss[ONE_LAYER]
    held = (
        max(gap_at_init, gap_trained) <= TOLERANCE
        and deep >= one - 0.01
        and accuracy[DEEP_LINEAR] <= 0.77
        and accuracy[DEEP_TANH] >= 0.95
    )
    statement = (
        f"the stack equals the product of its weights (max |diff| {gap_at_init:.1e} at init, "
        f"{gap_trained:.1e} trained); on XOR its final training loss is {deep:.3f} against "
        f"{one:.3f} for one layer (tanh: {loss[DEEP_TANH]:.3f}); test accuracy "
        + ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items())
    )
    return run.claim(
        held,
        statement,
        gap_at_init=gap_at_init,
        gap_trained=gap_trained,
        final_train_loss=loss,
        test_accuracy=accuracy,
    )
