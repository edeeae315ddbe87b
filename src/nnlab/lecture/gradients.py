"""Claim 13, gradient flow at initialization: in a deep network, the gradient reaching each
layer shrinks layer by layer towards the input with sigmoid (σ' ≤ ¼: vanishing gradients),
and stays flat with ReLU under Kaiming's initialization, whose derivation rests on one step:
for a pre-activation ỹ symmetric around 0, a ReLU's output x = max(0, ỹ) has E[x²] = ½·Var(ỹ).

The gradients are measured as a user's run measures them: a real Trainer takes the first
optimizer step on digits with nnlab's layer diagnostics (nnlab.callbacks.layers, the
`diagnostics` config group) attached, which record ‖∂L/∂W‖ per layer before the step."""

from __future__ import annotations

import tempfile
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch import nn

from nnlab.callbacks.layers import LayerDiagnostics, find_layers
from nnlab.core import is_int
from nnlab.core.hydra import instantiate_config
from nnlab.lecture.fitting import build, compose_config, quiet
from nnlab.lecture.study import Claim, Run
from nnlab.tasks import module_class

ACTIVATIONS = ("sigmoid", "tanh", "relu")
# init config → legend label. default: nn.Linear's own U(±1/√fan_in).
INITS = {
    "default": "PyTorch default U(±1/√fan_in)",
    "xavier_normal": "Xavier N(0, 2/(fan_in+fan_out))",
    "kaiming_normal": "Kaiming N(0, gain²/fan_in)",
}
# The pairs the course recommends (and the figures' histograms show).
COURSE_PAIRS = (("sigmoid", "xavier_normal"), ("tanh", "xavier_normal"), ("relu", "kaiming_normal"))


class Gradients(L.Callback):
    """Keeps a copy of every layer's weight gradient on the first optimizer step (the
    gradients at initialization), for histograms."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if trainer.global_step == 0:
            for layer in find_layers(pl_module.net):
                self.grads[layer.name] = layer.weights.weight.grad.detach().clone()


def relu_moments(net: nn.Module, x: torch.Tensor) -> list[dict[str, float]]:
    """Per ReLU layer of `net` on inputs x: Var(ỹ) of its input (the pre-activation) and E[x²]
    of its output, over the batch and the units."""
    rows: list[dict[str, float]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        y = inputs[0].double()
        rows.append(
            {
                "layer": len(rows) + 1,
                "var_pre": y.var().item(),
                "mean_pre": y.mean().item(),
                "second_moment_out": out.double().pow(2).mean().item(),
            }
        )

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return rows


def step_config(run: Run, activation: str, init: str, width: int, depth: int, batch: int) -> Any:
    return compose_config(
        f"seed={run.seed}",
        "data=digits",
        f"data.batch_size={batch}",
        f"activation={activation}",
        f"init={init}",
        f"model.hidden_sizes=[{','.join([str(width)] * depth)}]",
        "optimizer=sgd",
    )


def first_step(cfg: Any) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """One optimizer step of the config's run: the layer diagnostics' gradient rows, and the
    gradients themselves."""
    data, module = build(cfg)
    diagnostics = LayerDiagnostics(every_n_steps=1, plots=False)
    grads = Gradients()
    with tempfile.TemporaryDirectory() as folder, quiet():
        L.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[diagnostics, grads],
            default_root_dir=folder,
        ).fit(module, datamodule=data)
    return diagnostics.gradient_rows, grads.grads


def kaiming_moments(cfg: Any, nets: int) -> pd.DataFrame:
    """Per ReLU layer of the config's network (ReLU + Kaiming) on a batch of digits, averaged
    over `nets` networks drawn with different seeds: Var(ỹ) and E[x²]. The course's
    expectations are over the weights too: one net's units add their own chance offsets."""
    data, _ = build(cfg)
    x = data.splits["train"][0][: cfg.data.batch_size]
    x = data.normalizer(x) if data.normalizer is not None else x.float()
    frames = []
    for k in range(nets):
        torch.manual_seed(cfg.seed + k)
        outputs = module_class(cfg.model, data.spec.task).output_size(data.spec)
        net = instantiate_config(cfg.model, in_features=x[0].numel(), out_features=outputs)
        frames.append(pd.DataFrame(relu_moments(net, x)))
    return pd.concat(frames).groupby("layer", as_index=False).mean()


def draw(run: Run, frame: pd.DataFrame, grads: dict[tuple[str, str], Any], depth: int) -> None:
    hidden = frame[frame.layer != "output"]
    fig, axes = run.figure("grad_norms", ncols=3, size=(4.4, 4.0))
    for ax in axes[1:]:
        ax.sharey(axes[0])
    for ax, activation in zip(axes, ACTIVATIONS, strict=True):
        for i, (init, label) in enumerate(INITS.items()):
            part = hidden[(hidden.activation == activation) & (hidden.init == init)]
            course = (activation, init) in COURSE_PAIRS
            ax.plot(
                part.depth_index,
                part.grad_norm,
                marker="os^"[i],
                ms=4,
                lw=2.2 if course else 1.2,
                ls="-" if course else "--",
                color=f"C{i}",
                label=label + (" ← course's choice" if course else ""),
            )
        ax.set(
            yscale="log",
            xlabel="hidden layer (1 = next to the input)",
            ylabel="‖∂L/∂W‖ at the first step (log)",
        )
        ax.set_title(f"{activation}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(
        f"Gradient per layer at initialization: {depth} hidden layers, digits, cross-entropy "
        "(recorded by nnlab's layer diagnostics)"
    )
    run.save("grad_norms")

    fig, axes = run.figure("grad_histograms", ncols=3, size=(4.4, 3.8))
    shown = (1, (depth + 1) // 2, depth)
    values = {
        (pair, layer): np.log10(g[g != 0].abs().numpy())
        for pair in COURSE_PAIRS
        for layer in shown
        for g in [grads[pair][f"layer{layer}"].flatten()]
    }
    everything = np.concatenate(list(values.values()))
    bins = np.linspace(np.floor(everything.min()), np.ceil(everything.max()), 60)
    for ax, pair in zip(axes, COURSE_PAIRS, strict=True):
        for i, layer in enumerate(shown):
            ax.hist(
                values[pair, layer],
                bins=bins,
                histtype="step",
                lw=1.6,
                color=f"C{i + 3}",
                label=f"layer {layer}",
            )
        ax.set(xlabel="log₁₀ |∂L/∂w| per weight", ylabel="number of weights (log)", yscale="log")
        ax.set_title(" + ".join(pair), fontsize=10)
        ax.legend(fontsize=8, title="hidden layer", title_fontsize=8)
    fig.suptitle(
        "Distribution of the weight gradients at initialization, three hidden layers "
        "(curves on top of each other: those layers get the same gradients)"
    )
    run.save("grad_histograms")


def draw_kaiming(run: Run, moments: pd.DataFrame) -> None:
    _, (ax,) = run.figure("kaiming_step", size=(6.0, 4.0))
    ratio = moments.second_moment_out / moments.var_pre
    growth = moments.var_pre.shift(-1) / moments.var_pre
    ax.plot(moments.layer, ratio, "o-", label="E[x²] / Var(ỹ) of the layer (theory ½)")
    ax.plot(moments.layer, growth, "s--", label="Var(ỹ) of the next layer / Var(ỹ) (theory 1)")
    ax.axhline(0.5, color="C0", lw=0.8, ls=":", label="½")
    ax.axhline(1.0, color="C1", lw=0.8, ls=":", label="1")
    ax.set(xlabel="hidden layer (ReLU + Kaiming)", ylabel="ratio (unitless)", ylim=(0, 1.4))
    ax.set_title(
        "Kaiming's step: x = max(0, ỹ) keeps half of ỹ's second moment,\n"
        "so Var(w) = 2/fan_in keeps Var(ỹ) = fan_in·Var(w)·E[x²] flat",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.xaxis.get_major_locator().set_params(integer=True)
    run.save("kaiming_step")


def study(
    run: Run, width: int = 64, depth: int | None = None, batch: int = 256, nets: int | None = None
) -> Claim:
    """One optimizer step for every activation in ACTIVATIONS × init in INITS, `depth`
    (default: 8 fast, 12 full) hidden layers of `width` units (64: square like digits'
    64 inputs, so every hidden ‖∂L/∂W‖ sums the same number of weights), batches of `batch`;
    Kaiming's step measured over `nets` (default: 8 fast, 16 full) ReLU networks 4× as wide."""
    depth, nets = depth or run.size(8, 12), nets or run.size(8, 16)
    for option, value, least in (("width", width, 1), ("depth", depth, 2), ("batch", batch, 2)):
        run.check(option, value, is_int(value) and value >= least, f"an int >= {least}")
    run.check("nets", nets, is_int(nets) and nets >= 1, "an int >= 1")
    rows, grads = [], {}
    for activation in ACTIVATIONS:
        for init in INITS:
            cfg = step_config(run, activation, init, width, depth, batch)
            found, grads[activation, init] = first_step(cfg)
            rows += [
                {"activation": activation, "init": init, **r, "depth_index": i + 1}
                for i, r in enumerate(found)
            ]
    frame = run.table("grad_norms", rows)
    cfg = step_config(run, "relu", "kaiming_normal", 4 * width, depth, batch)
    kaiming = run.table("kaiming_step", kaiming_moments(cfg, nets))
    # The diagnostics' norms are the norms of the gradients the optimizer got.
    check = max(
        abs(r["grad_norm"] - grads[r["activation"], r["init"]][r["layer"]].norm().item())
        / r["grad_norm"]
        for r in rows
    )
    draw(run, frame, grads, depth)
    draw_kaiming(run, kaiming)

    hidden = frame[frame.layer != "output"]
    ratio = {}  # first hidden layer's gradient norm / last hidden layer's
    for (activation, init), part in hidden.groupby(["activation", "init"], sort=False):
        ratio[f"{activation} + {init}"] = float(part.grad_norm.iloc[0] / part.grad_norm.iloc[-1])
    half = (kaiming.second_moment_out / kaiming.var_pre).to_numpy()
    growth = (kaiming.var_pre.shift(-1) / kaiming.var_pre).dropna().to_numpy()
    sigmoid, tanh, relu = (f"{a} + {i}" for a, i in COURSE_PAIRS)
    held = (
        ratio[sigmoid] < 1e-2
        and 0.25 <= ratio[relu] <= 4
        and ratio[tanh] > 10 * ratio[sigmoid]
        and np.all(np.abs(half - 0.5) < 0.05)
        and check < 1e-5
    )
    statement = (
        f"over {depth} hidden layers × {width}, ‖∂L/∂W‖ of the first hidden layer over the "
        f"last: {sigmoid} ×{ratio[sigmoid]:.1e} (vanishing), {tanh} ×{ratio[tanh]:.2g}, "
        f"{relu} ×{ratio[relu]:.2g} (flat); Kaiming's step: E[x²]/Var(ỹ) = "
        f"{half.min():.3f}…{half.max():.3f} per ReLU layer (theory 0.5), Var(ỹ) from layer to "
        f"layer ×{growth.min():.2f}…{growth.max():.2f} (theory 1; {nets} nets × {4 * width} units)"
    )
    return run.claim(
        held,
        statement,
        first_over_last=ratio,
        relu_second_moment_ratio=half.tolist(),
        relu_variance_growth=growth.tolist(),
        diagnostics_vs_gradient=check,
        depth=depth,
        width=width,
    )
