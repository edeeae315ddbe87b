"""Claim 7, losses as maximum likelihood: MSE, L1 and Huber on data with outliers; the
Gaussian NLL has MSE's minimizer (the mean) and the Laplace NLL has L1's (the median); binary
cross-entropy on logits is softplus((1 − 2y)·z); the naive softmax and log-sigmoid overflow
where the stable forms nnlab uses do not."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch.distributions import Laplace, Normal

from nnlab.lecture.fitting import compose_config, fit
from nnlab.lecture.study import Claim, Run
from nnlab.nn.losses import create_loss

REGRESSION_LOSSES = ("mse", "l1", "huber")
OUTLIERS = ("data.outlier_fraction=0.1", "data.outlier_shift=10.0")


def robust_fits(run: Run) -> dict[str, dict[str, Any]]:
    """model=linear fitted with each loss on linear data whose training targets are 10 %
    outliers (shifted up by 10 target stds; validation and test clean). Adam with a cosine
    decay, so that L1's constant-size gradients settle."""
    epochs = run.size(15, 40)
    fits = {}
    for loss in REGRESSION_LOSSES:
        cfg = compose_config(
            f"seed={run.seed}",
            "data=linear_regression",
            "model=linear",
            f"loss={loss}",
            *OUTLIERS,
            "optimizer.lr=0.05",
            "scheduler=cosine",
            f"scheduler.T_max={epochs}",
        )
        model = fit(cfg, epochs, validate=False)
        layer = model.module.net[-1]
        data = model.data
        fits[loss] = {
            "weight_error": (layer.weight.detach().flatten() - data.true_weight).norm().item(),
            "bias_error": layer.bias.item() - data.true_bias,
            "test_mse": F.mse_loss(*(t.squeeze() for t in model.outputs("test"))).item(),
            "model": model,
        }
    return fits


MARKERS = {"mse": "o", "l1": "s", "huber": "^"}


def draw_robust(run: Run, fits: dict[str, dict[str, Any]]) -> None:
    """Each model's own predictions ŷ at the training inputs, against the true signal w·x + b
    (left: with the targets; middle: ŷ − (w·x + b), where the losses' offsets show), and the
    errors of the recovered weights (right). The models are kept in run.fits, by loss."""
    _, (ax, gap, bars) = run.figure("robust_fit", ncols=3, size=(4.6, 4.2))
    data = next(iter(fits.values()))["model"].data
    x, y = data.splits["train"]
    signal = x @ data.true_weight + data.true_bias
    outlier = torch.zeros(len(y), dtype=torch.bool)
    outlier[data.outliers] = True
    ax.scatter(signal[~outlier], y[~outlier], s=5, c="0.6", label="training targets (clean)")
    ax.scatter(signal[outlier], y[outlier], s=8, c="k", marker="x", label="outliers (10 %)")
    for i, (loss, f) in enumerate(fits.items()):
        run.fits[loss] = f["model"]
        predicted = f["model"].network(x).squeeze(-1)
        style = {"s": 7, "color": f"C{i}", "marker": MARKERS.get(loss, "o"), "alpha": 0.7}
        ax.scatter(signal, predicted, label=f"{loss}: its predictions ŷ", **style)
        gap.scatter(
            signal, predicted - signal, label=f"{loss}: bias off by {f['bias_error']:+.2f}", **style
        )
    ax.set(xlabel="true signal w·x + b", ylabel="target y, or prediction ŷ")
    ax.set_title("Fits on data with 10 % outliers", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    gap.axhline(0.0, color="k", lw=0.8, label="ŷ = true signal")
    gap.set_yscale("symlog", linthresh=0.05)  # linear within ±0.05: L1's and Huber's offsets
    ticks = [-1.0, -0.1, 0.0, 0.1, 1.0, 10.0]
    gap.set_yticks(ticks, [f"{v:g}" for v in ticks])
    gap.set(xlabel="true signal w·x + b", ylabel="ŷ − (w·x + b)  (symlog: linear within ±0.05)")
    gap.set_title("How far each model's predictions are off", fontsize=10)
    gap.legend(fontsize=7, loc="lower left")
    width = 0.8 / len(fits)
    for i, (loss, f) in enumerate(fits.items()):
        values = [f["weight_error"], abs(f["bias_error"]), f["test_mse"]]
        bars.bar(np.arange(3) + i * width, values, width, label=loss, color=f"C{i}")
    bars.set_xticks(np.arange(3) + width, ["‖ŵ − w‖", "|b̂ − b|", "test MSE (clean)"])
    bars.set(yscale="log", ylabel="error (log scale; same units as y, MSE: y²)")
    bars.set_title("Recovered weights vs the truth", fontsize=10)
    bars.legend(fontsize=8)
    run.save("robust_fit")


def likelihood_minimizers(run: Run, y: torch.Tensor) -> dict[str, float]:
    """Over constant predictions c on a grid: the minimizers of nnlab's MSE and L1 and of the
    Gaussian and Laplace negative log-likelihoods (scale 1), of the targets y."""
    grid = torch.linspace(y.min().item(), y.max().item(), 4001)
    curves = {
        "mse": [create_loss({"name": "mse"}, "regression", 1)(c.expand_as(y), y) for c in grid],
        "gaussian_nll": [-Normal(c, 1.0).log_prob(y).mean() for c in grid],
        "l1": [create_loss({"name": "l1"}, "regression", 1)(c.expand_as(y), y) for c in grid],
        "laplace_nll": [-Laplace(c, 1.0).log_prob(y).mean() for c in grid],
    }
    curves = {k: torch.stack(v) for k, v in curves.items()}
    _, axes = run.figure("likelihood", ncols=2, size=(4.8, 3.8))
    for ax, (loss, nll, stat, value) in zip(
        axes,
        (
            ("mse", "gaussian_nll", "mean", y.mean()),
            ("l1", "laplace_nll", "median", y.median()),
        ),
        strict=True,
    ):
        for i, name in enumerate((loss, nll)):  # the second drawn dashed over the first
            c = curves[name]
            style = {"lw": 3, "alpha": 0.5} if i == 0 else {"ls": "--"}
            ax.plot(grid, (c - c.min()) / (c.max() - c.min()), color=f"C{i}", label=name, **style)
            best = grid[c.argmin()].item()
            ax.axvline(best, color=f"C{i}", ls="--", lw=1, label=f"argmin {name}: {best:.3f}")
        ax.axvline(value, color="k", ls=":", label=f"{stat} of y: {value:.3f}")
        ax.set(xlabel="constant prediction c (units of y)", ylabel="loss, rescaled to [0, 1]")
        ax.set_title(f"{loss} and {nll}: same minimizer", fontsize=10)
        ax.legend(fontsize=8)
    run.save("likelihood")
    step = (grid[1] - grid[0]).item()
    found = {name: grid[c.argmin()].item() for name, c in curves.items()}
    return {**found, "mean": y.mean().item(), "median": y.median().item(), "grid_step": step}


def bce_identity() -> dict[str, float]:
    """max |nnlab's BCE with logits − softplus((1 − 2y)·z)| over z ∈ [−50, 50], y ∈ {0, 1}."""
    bce = create_loss({"name": "bce_with_logits"}, "binary", 1)
    gap = 0.0
    for z in torch.linspace(-50.0, 50.0, 401):
        for y in (0.0, 1.0):
            loss = bce(z.view(1, 1), torch.tensor([y]))
            gap = max(gap, abs(loss.item() - F.softplus((1 - 2 * y) * z).item()))
    return {"bce_softplus_max_gap": gap}


def draw_non_finite(
    ax: Axes, t: torch.Tensor, values: torch.Tensor, color: str, height: float
) -> None:
    """Marks where `values` are inf (×) or NaN (○), in a strip at `height` (axes fraction)."""
    every = max(1, len(t) // 40)  # markers 5 units of t apart: readable, not a smear
    for kind, marker, where in (("inf", "x", values.isinf()), ("NaN", "o", values.isnan())):
        if where.any():
            shown = t[where][::every]
            ax.plot(
                shown,
                [height] * len(shown),
                marker,
                ms=5,
                mfc="none",
                color=color,
                transform=ax.get_xaxis_transform(),
                label=f"naive formula: {kind}",
            )


def stability(run: Run) -> dict[str, Any]:
    """Where the naive formulas overflow in float32 (e^t beyond t ≈ 88.7), against the stable
    forms: −log σ(−t) as −log(1 / (1 + e^t)) vs −F.logsigmoid, and the cross-entropy of class
    0 and of class 1 under softmax([t, 0]) as −log(e^z_c / Σ e^z) vs nnlab's (log-sum-exp)."""
    t = torch.linspace(0.0, 200.0, 2001)
    logits = torch.stack([t, torch.zeros_like(t)], 1)
    ce = create_loss({"name": "cross_entropy"}, "multiclass", 2)

    def naive_ce(c: int) -> torch.Tensor:
        return -torch.log(torch.exp(logits[:, c]) / torch.exp(logits).sum(1))

    def stable_ce(c: int) -> torch.Tensor:
        return torch.stack([ce(row[None], torch.tensor([c])) for row in logits])

    panels = {  # title → {curve: (naive, stable)}
        "BCE, label 0, logit t: −log σ(−t)": {
            "−log σ(−t)": (-torch.log(1 / (1 + torch.exp(t))), -F.logsigmoid(-t))
        },
        "cross-entropy, logits [t, 0]": {
            "class 0 (right, p → 1)": (naive_ce(0), stable_ce(0)),
            "class 1 (wrong, p → 0)": (naive_ce(1), stable_ce(1)),
        },
    }
    fig, axes = run.figure("stability", ncols=2, size=(5.2, 4.2))
    overflow, agree, finite = {}, [], []
    for ax, (title, curves) in zip(axes, panels.items(), strict=True):
        for i, (name, (naive, stable)) in enumerate(curves.items()):
            ok = naive.isfinite()
            overflow[name] = t[~ok][0].item() if (~ok).any() else math.inf
            agree.append(((naive - stable).abs()[ok] / stable.abs().clamp_min(1)[ok]).max().item())
            finite.append(bool(stable.isfinite().all()))
            color = f"C{2 * i}"
            label = f"{name}: " if len(curves) > 1 else ""
            ax.plot(t, stable, lw=4, alpha=0.4, color=color, label=f"{label}stable (nnlab)")
            ax.plot(t[ok], naive[ok], "--", color=f"C{2 * i + 1}", label=f"{label}naive formula")
            draw_non_finite(ax, t, naive, f"C{2 * i + 1}", 0.97 - 0.04 * i)
        first = min(overflow[name] for name in curves)
        if math.isfinite(first):
            ax.axvline(first, color="r", ls=":", label=f"e^t overflows float32: t = {first:.1f}")
        ax.set(xlabel="logit t", ylabel="loss (nats)", ylim=(-8, 260))
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.9))
    fig.suptitle("Naive formulas turn inf/NaN (marks at the top) where the stable forms go on")
    run.save("stability")
    return {
        "naive_logsigmoid_overflow_at": overflow["−log σ(−t)"],
        "naive_softmax_ce_overflow_at": min(
            overflow["class 0 (right, p → 1)"], overflow["class 1 (wrong, p → 0)"]
        ),
        "stable_finite": all(finite),
        "stable_vs_naive_where_finite": max(agree),
    }


def study(run: Run) -> Claim:
    fits = robust_fits(run)
    draw_robust(run, fits)
    run.table(
        "robust_fit",
        ({"loss": k, **{n: v for n, v in f.items() if n != "model"}} for k, f in fits.items()),
    )
    y = next(iter(fits.values()))["model"].data.splits["train"][1]
    mle = likelihood_minimizers(run, y)
    numbers = {**mle, **bce_identity(), **stability(run)}
    run.table("numbers", [numbers])
    bias = {k: abs(f["bias_error"]) for k, f in fits.items()}
    step = mle["grid_step"]
    held = (
        bias["mse"] > 5 * max(bias["l1"], bias["huber"])
        and fits["mse"]["test_mse"] > 5 * max(fits["l1"]["test_mse"], fits["huber"]["test_mse"])
        and mle["mse"] == mle["gaussian_nll"]
        and abs(mle["mse"] - mle["mean"]) <= step
        and mle["l1"] == mle["laplace_nll"]
        and abs(mle["l1"] - mle["median"]) <= step
        and numbers["bce_softplus_max_gap"] <= 1e-5
        and numbers["naive_logsigmoid_overflow_at"] < 100
        and numbers["naive_softmax_ce_overflow_at"] < 100
        and numbers["stable_finite"]
        and numbers["stable_vs_naive_where_finite"] < 1e-4
    )
    statement = (
        "with 10 % outliers the bias is off by "
        + ", ".join(f"{k} {v:.3f}" for k, v in bias.items())
        + "; test MSE "
        + ", ".join(f"{k} {f['test_mse']:.3g}" for k, f in fits.items())
        + f"; argmin MSE = argmin Gaussian NLL = {mle['mse']:.3f} (mean {mle['mean']:.3f}), "
        f"argmin L1 = argmin Laplace NLL = {mle['l1']:.3f} (median {mle['median']:.3f}); "
        f"|BCE − softplus((1 − 2y)z)| ≤ {numbers['bce_softplus_max_gap']:.1e}; naive log σ and "
        f"softmax overflow from t = {numbers['naive_logsigmoid_overflow_at']:.1f} and "
        f"{numbers['naive_softmax_ce_overflow_at']:.1f}, the stable forms stay finite"
    )
    return run.claim(
        held,
        statement,
        **numbers,
        robust={k: {n: v for n, v in f.items() if n != "model"} for k, f in fits.items()},
    )
