"""Claim 5, initialization: how the spread of activations evolves through a deep network at
initialization, for each classic scheme, and why constant weights never break symmetry."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnlab.lecture.fitting import compose_config, fit
from nnlab.lecture.study import Claim, Run
from nnlab.nn.networks import MLP

# label → (init config, activation), requested through nnlab's init configs. With square layers
# (fan_in = fan_out = d) the course's Xavier variance 2/(fan_in + fan_out) is 1/d.
SCHEMES: dict[str, tuple[dict[str, Any], str]] = {
    "constant 0.01 + tanh": ({"name": "constant", "value": 0.01}, "tanh"),
    "N(0, 1) + tanh": ({"name": "normal", "std": 1.0}, "tanh"),
    "N(0, 1) + ReLU": ({"name": "normal", "std": 1.0}, "relu"),
    "N(0, 1/d) + ReLU": ({"name": "lecun_normal"}, "relu"),
    "Xavier + tanh": ({"name": "xavier_normal"}, "tanh"),
    "Xavier + ReLU": ({"name": "xavier_normal"}, "relu"),
    "Kaiming + ReLU": ({"name": "kaiming_normal"}, "relu"),
}
SATURATED = 0.99  # a tanh unit with |a| above this passes on almost no gradient


@torch.no_grad()
def layer_activations(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of each hidden layer's activation, input to output (the output layer, a
    Linear without activation, is left out)."""
    outputs = []
    for module in net:
        x = module(x)
        if not isinstance(module, nn.Linear | nn.Flatten):
            outputs.append(x)
    return outputs


def spread_by_layer(run: Run, width: int, depth: int, nets: int) -> list[dict[str, Any]]:
    """Per scheme and hidden layer, over a batch of N(0, 1) inputs and `nets` networks drawn
    with different seeds: the std of the activations (√ of the mean variance: one narrow
    net's std drifts over depth by chance, by e^(±0.6) over 20 layers of 64 ReLUs, e^(±0.3)
    of 256), the share of saturated units (|a| > SATURATED), and how far apart the layer's
    units are (max over samples of max − min over units: 0 when every unit computes the
    same)."""
    x = torch.randn(run.size(256, 1000), width, generator=torch.Generator().manual_seed(run.seed))
    rows = []
    for label, (init, activation) in SCHEMES.items():
        per_net = []
        for k in range(nets):
            torch.manual_seed(run.seed + k)
            net = MLP(width, width, [width] * depth, activation={"name": activation}, init=init)
            per_net.append(layer_activations(net, x))
        for layer, outputs in enumerate(zip(*per_net, strict=True), start=1):
            a = torch.stack(outputs)  # (nets, batch, width)
            rows.append(
                {
                    "scheme": label,
                    "layer": layer,
                    "std": a.double().var(dim=(1, 2)).mean().sqrt().item(),
                    "saturated": (a.abs() > SATURATED).float().mean().item(),
                    "unit_spread": (a.amax(2) - a.amin(2)).max().item(),
                }
            )
    return rows


def constant_training(run: Run) -> dict[str, dict[str, float]]:
    """Trains the same MLP on digits from constant and from Kaiming weights; returns, per init,
    how far apart the first hidden layer's weight rows end up (0: identical units) and the
    test accuracy."""
    result = {}
    for init in ("constant", "kaiming_normal"):
        cfg = compose_config(
            f"seed={run.seed}",
            "data=digits",
            f"init={init}",
            "activation=tanh",
            "model.hidden_sizes=[32,32]",
        )
        model = fit(cfg, run.size(3, 10), validate=False)
        w = model.module.net[1].weight.detach()
        result[init] = {
            "row_spread": (w - w[0]).abs().max().item(),
            "weight_scale": w.abs().max().item(),
            "test_accuracy": model.accuracy("test"),
            "weights": w,
        }
    return result


# How each scheme is drawn: colour, marker, line style. Curves that coincide (with square
# layers N(0, 1/d) is Xavier's variance, and their weights are drawn from the same seed; near
# the top of the tanh panel, constant and N(0, 1) both settle near |a| ≈ 1) differ in marker and
# style, and put their markers on alternate layers (markevery), so that both show.
STYLES: dict[str, dict[str, Any]] = {
    "constant 0.01 + tanh": {"color": "C0", "marker": "s", "ls": "-", "markevery": (1, 2)},
    "N(0, 1) + tanh": {"color": "C1", "marker": "o", "ls": "--", "markevery": (0, 2)},
    "N(0, 1) + ReLU": {"color": "C2", "marker": "^", "ls": "-", "markevery": 1},
    "N(0, 1/d) + ReLU": {"color": "C3", "marker": "x", "ls": "--", "markevery": (1, 2)},
    "Xavier + tanh": {"color": "C4", "marker": "D", "ls": "-.", "markevery": (0, 2)},
    "Xavier + ReLU": {
        "color": "C5",
        "marker": "o",
        "ls": "-",
        "markevery": (0, 2),
        "lw": 4,
        "alpha": 0.45,
    },
    "Kaiming + ReLU": {"color": "C6", "marker": "v", "ls": "-", "markevery": 1},
}
LEGEND_NOTES = {
    "constant 0.01 + tanh": " (all units equal)",
    "N(0, 1/d) + ReLU": " (= Xavier here:\nsquare layers, 2/(d + d) = 1/d)",
}


def draw(run: Run, frame: Any, trained: dict[str, dict[str, Any]], width: int, nets: int) -> None:
    """The std (and tanh saturation) by layer per scheme; W₁ after training, constant vs Kaiming."""
    fig, (relu, tanh, sat) = run.figure("std_by_layer", ncols=3, size=(4.6, 4.4))
    for label in SCHEMES:
        part = frame[frame.scheme == label]
        style = {"ms": 5, "lw": 1.5, **STYLES[label], "label": label + LEGEND_NOTES.get(label, "")}
        if "tanh" in label:
            tanh.plot(part.layer, part["std"], **style)
            sat.plot(part.layer, part.saturated, **style)
            continue
        relu.plot(part.layer, part["std"], **style)
        last = part["std"].iloc[-1]
        if not 1e-6 < last < 1e6:  # off the plot's scale: say where it went
            relu.annotate(
                f"{label} leaves the plot:\nstd {last:.0e} at layer {part.layer.iloc[-1]}",
                (0.97, 0.97),
                xycoords="axes fraction",
                va="top",
                ha="right",
                fontsize=7,
                color=STYLES[label]["color"],
            )
    relu.set(yscale="log", ylim=(1e-6, 1e6), ylabel="std of the activations (log scale)")
    relu.set_title("ReLU networks: std of the activations", fontsize=10)
    tanh.set(ylim=(0, 1.05), ylabel="std of the activations (tanh: at most 1)")
    tanh.set_title("tanh networks: std of the activations", fontsize=10)
    sat.set(ylim=(-0.03, 1.03), ylabel=f"share of units with |a| > {SATURATED}")
    sat.set_title("tanh networks: saturated units", fontsize=10)
    for ax in (relu, tanh, sat):
        ax.set_xlabel("hidden layer (1 = nearest the input)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    # ReLU: between the exploding curve (gone past layer ~6) and Kaiming's flat one at 1.
    relu.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.88))
    for ax in (tanh, sat):
        ax.legend(fontsize=7, loc="center right")
    fig.suptitle(f"At initialization: {width} units per layer, N(0, 1) inputs, {nets} networks")
    run.save("std_by_layer")
    fig, axes = run.figure("constant_init", ncols=2, size=(4.6, 3.6))
    for ax, (init, result) in zip(axes, trained.items(), strict=True):
        image = ax.imshow(result["weights"].numpy(), cmap="coolwarm", aspect="auto")
        fig.colorbar(image, ax=ax, label="weight value")
        spread = result["row_spread"]
        ax.set_title(f"init={init}: W₁ after training\nmax |row − row₀| = {spread:.1e}", fontsize=9)
        ax.set(xlabel="input pixel", ylabel="hidden unit")
    run.save("constant_init")


def study(run: Run, width: int = 256, depth: int | None = None, nets: int = 8) -> Claim:
    """Activation std over `depth` hidden layers (default: 20 fast, 30 full) of `width` units,
    over `nets` networks, for each of SCHEMES; then constant vs Kaiming init trained on
    digits."""
    depth = depth or run.size(20, 30)
    frame = run.table("std_by_layer", spread_by_layer(run, width, depth, nets))
    trained = constant_training(run)
    run.table(
        "constant_init",
        ({"init": k, **{n: v for n, v in r.items() if n != "weights"}} for k, r in trained.items()),
    )
    draw(run, frame, trained, width, nets)

    first = frame[frame.layer == 1].set_index("scheme")
    last = frame[frame.layer == depth].set_index("scheme")
    ratio = {s: float(last["std"][s] / first["std"][s]) for s in SCHEMES}
    saturated = {s: float(last.saturated[s]) for s in SCHEMES if "tanh" in s}
    identical = float(frame[frame.scheme.str.startswith("constant")].unit_spread.max())
    spread = {k: r["row_spread"] / r["weight_scale"] for k, r in trained.items()}
    accuracy = {k: r["test_accuracy"] for k, r in trained.items()}
    held = (
        0.5 <= ratio["Kaiming + ReLU"] <= 2.0
        and ratio["Xavier + ReLU"] < 0.1
        and 0.1 <= ratio["Xavier + tanh"] <= 1.2
        and (ratio["N(0, 1) + ReLU"] > 1e3 or saturated["N(0, 1) + tanh"] > 0.9)
        and identical == 0.0
        and spread["constant"] < 1e-5 < spread["kaiming_normal"]
    )
    statement = (
        f"std ratio last/first of {depth} layers × {width}: "
        + ", ".join(f"{s} ×{r:.2g}" for s, r in ratio.items())
        + f"; N(0, 1) tanh units saturated: {saturated['N(0, 1) + tanh']:.0%}; constant init: "
        f"units identical at init (spread {identical:.1g}) and after training (relative row "
        f"spread {spread['constant']:.1g}, Kaiming {spread['kaiming_normal']:.2g}; test accuracy "
        f"{accuracy['constant']:.2f} vs {accuracy['kaiming_normal']:.2f})"
    )
    return run.claim(
        held,
        statement,
        width=width,
        depth=depth,
        std_ratio=ratio,
        saturated_last_layer=saturated,
        constant_unit_spread=identical,
        trained_row_spread=spread,
        test_accuracy=accuracy,
    )
