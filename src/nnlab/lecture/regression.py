"""Claim 10, consistency of maximum likelihood: on synthetic linear data, the weights that
minimize the MSE (the Gaussian negative log-likelihood) approach the true ones as the number of
samples grows, their error shrinking like σ·√((d + 1) / n)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nnlab.lecture.fitting import compose_config, fit
from nnlab.lecture.study import Claim, Run

# Full-batch gradient descent at this rate contracts the error by |1 − 2·lr·λ| per step, λ the
# eigenvalues of the inputs' sample covariance (≈ 1 for N(0, I) features, within [0.3, 2.1]
# down to 30 training samples of 5 features): EPOCHS steps reach the least-squares solution.
LR, EPOCHS = 0.4, 100
NOISE = 0.1  # configs/data/linear_regression.yaml's


def weight_error(run: Run, n: int, seed: int) -> dict[str, float]:
    """Fits model=linear by full-batch GD on n samples; the distance of (w, b) to the truth."""
    cfg = compose_config(
        f"seed={seed}",
        "data=linear_regression",
        "model=linear",
        "optimizer=sgd",
        f"optimizer.lr={LR}",
        "data.batch_size=full",
        f"data.n_samples={n}",
    )
    model = fit(cfg, EPOCHS, validate=False)
    layer = model.module.net[-1]
    learned = torch.cat([layer.weight.detach().flatten(), layer.bias.detach()])
    truth = torch.cat([model.data.true_weight, torch.tensor([model.data.true_bias])])
    return {
        "n_samples": n,
        "n_train": len(model.data.splits["train"][1]),
        "seed": seed,
        "error": (learned - truth).norm().item(),
        **{f"w{i}": v for i, v in enumerate(learned.tolist())},
        **{f"true_w{i}": v for i, v in enumerate(truth.tolist())},
    }


def mle_consistency(run: Run, sizes: list[int] | None = None, seeds: int | None = None) -> Claim:
    """Weight error against the number of samples (each size over `seeds` data sets), with
    the theory's σ·√((d + 1) / n_train)."""
    sizes = sizes or run.size([50, 400, 3200], [50, 100, 200, 400, 800, 1600, 3200, 6400])
    seeds = seeds or run.size(2, 3)
    frame = run.table(
        "mle_consistency", [weight_error(run, n, run.seed + k) for n in sizes for k in range(seeds)]
    )
    mean = frame.groupby("n_train").error.mean()
    slope = float(np.polyfit(np.log(mean.index), np.log(mean.values), 1)[0])
    params = sum(c.startswith("true_w") for c in frame.columns)  # d weights and the bias

    _, (ax, coef) = run.figure("mle_consistency", ncols=2, size=(5.0, 4.0))
    ax.scatter(frame.n_train, frame.error, s=10, alpha=0.5, label="one data set")
    ax.plot(mean.index, mean.values, marker="o", label=f"mean (slope {slope:.2f})")
    n = np.array(mean.index, dtype=float)
    theory = f"theory σ·√((d + 1)/n), d = {params - 1} features: slope −0.5"
    ax.plot(n, NOISE * np.sqrt(params / n), "k:", label=theory)
    ax.set(xscale="log", yscale="log", xlabel="training samples n", ylabel="‖(ŵ, b̂) − (w, b)‖")
    ax.set_title("Learned vs true weights (MSE = Gaussian MLE)")
    ax.legend(fontsize=8)
    first = frame[frame.seed == frame.seed.min()]
    for i in range(params):
        name = "b" if i == params - 1 else f"w{i + 1}"
        deviation = first[f"w{i}"] - first[f"true_w{i}"]
        coef.plot(first.n_train, deviation, marker="o", ms=3, color=f"C{i}", label=name)
    coef.axhline(0.0, color="k", lw=0.8, label="learned = true")
    coef.set(xscale="log", xlabel="training samples n", ylabel="learned − true coefficient")
    coef.set_title("Each coefficient, one data set per n")
    coef.legend(fontsize=7, ncols=2)
    run.save("mle_consistency")

    shrink = float(mean.iloc[0] / mean.iloc[-1])
    expected = math.sqrt(mean.index[-1] / mean.index[0])
    held = -0.75 <= slope <= -0.3 and shrink >= expected / 3
    statement = (
        f"the weight error falls from {mean.iloc[0]:.3g} at n = {mean.index[0]} to "
        f"{mean.iloc[-1]:.3g} at n = {mean.index[-1]} training samples (×{shrink:.1f}; "
        f"√n predicts ×{expected:.1f}), log-log slope {slope:.2f} (theory −0.5)"
    )
    return run.claim(
        held,
        statement,
        slope=slope,
        shrink=shrink,
        mean_error={int(k): float(v) for k, v in mean.items()},
    )
