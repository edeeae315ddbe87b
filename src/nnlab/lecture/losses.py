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


def draw_robust(run: Run, fits: dict[str, dict[str, Any]]) -> None:
    _, (ax, bars) = run.figure("robust_fit", ncols=2, size=(5.0, 4.0))
    data = next(iter(fits.values()))["model"].data
    x, y = data.splits["train"]
    signal = x @ data.true_weight + data.true_bias
    outlier = torch.zeros(len(y), dtype=torch.bool)
    outlier[data.outliers] = True
    ax.scatter(signal[~outlier], y[~outlier], s=4, c="gray", label="training targets")
    ax.scatter(signal[outlier], y[outlier], s=6, c="k", marker="^", label="outliers")
    grid = torch.linspace(signal.min().item(), signal.max().item(), 2)
    for i, (loss, f) in enumerate(fits.items()):
        ax.plot(
            grid,
            grid + f["bias_error"],
            color=f"C{i}",
            lw=2,
            label=f"{loss}: offset {f['bias_error']:+.2f}",
        )
    ax.set(xlabel="true signal w·x + b", ylabel="target / fitted prediction")
    ax.set_title("Fits on data with 10 % outliers")
    ax.legend(fontsize=7)
    width = 0.8 / len(fits)
    for i, (loss, f) in enumerate(fits.items()):
        values = [f["weight_error"], abs(f["bias_error"]), f["test_mse"]]
        bars.bar(np.arange(3) + i * width, values, width, label=loss, color=f"C{i}")
    bars.set_xticks(np.arange(3) + width, ["‖ŵ − w‖", "|b̂ − b|", "test MSE (clean)"])
    bars.set(yscale="log", title="Recovered weights vs the truth")
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
            ax.axvline(grid[c.argmin()], color=f"C{i}", ls="--", lw=1)
        ax.axvline(value, color="k", ls=":", label=f"{stat} of y")
        ax.set(xlabel="constant prediction c", ylabel="loss, rescaled to [0, 1]")
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


def stability(run: Run) -> dict[str, Any]:
    """Where the naive formulas overflow in float32 (e^t beyond t ≈ 88.7), against the stable
    forms: −log σ(−t) as −log(1 / (1 + e^t)) vs −F.logsigmoid, and the cross-entropy of
    class 0 under softmax([t, 0]) as −log(e^t / Σ e^z) vs nnlab's (log-sum-exp)."""
    t = torch.linspace(0.0, 200.0, 2001)
    logits = torch.stack([t, torch.zeros_like(t)], 1)
    ce = create_loss({"name": "cross_entropy"}, "multiclass", 2)
    curves = {  # name → (naive, stable)
        "−log σ(−t)": (-torch.log(1 / (1 + torch.exp(t))), -F.logsigmoid(-t)),
        "cross-entropy, softmax([t, 0]), class 0": (
            -torch.log(torch.exp(logits[:, 0]) / torch.exp(logits).sum(1)),
            torch.stack([ce(row[None], torch.tensor([0])) for row in logits]),
        ),
    }
    _, axes = run.figure("stability", ncols=2, size=(4.8, 3.8))
    overflow, agree = {}, []
    for ax, (title, (naive, stable)) in zip(axes, curves.items(), strict=True):
        ok = naive.isfinite()
        overflow[title] = t[~ok][0].item() if (~ok).any() else math.inf
        agree.append(((naive - stable).abs()[ok] / stable.abs().clamp_min(1)[ok]).max().item())
        ax.plot(t, stable, lw=3, alpha=0.5, label="stable (nnlab, log-sum-exp)")
        ax.plot(t[ok], naive[ok], "--", label="naive formula")
        if math.isfinite(overflow[title]):
            ax.axvline(
                overflow[title],
                color="r",
                ls=":",
                label=f"naive: inf/NaN from t = {overflow[title]:.1f}",
            )
        ax.set(xlabel="t", title=title)
        ax.legend(fontsize=8)
    run.save("stability")
    return {
        "naive_logsigmoid_overflow_at": overflow["−log σ(−t)"],
        "naive_softmax_ce_overflow_at": overflow["cross-entropy, softmax([t, 0]), class 0"],
        "stable_finite": all(bool(stable.isfinite().all()) for _, stable in curves.values()),
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
