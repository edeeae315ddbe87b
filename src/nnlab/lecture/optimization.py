"""Claims 8 and 9, gradient descent: the learning rate (too small crawls, too big diverges),
and the regimes full-batch, mini-batch and per-sample SGD seen per epoch, per update and per
second. Both on the synthetic linear regression (y = w·x + b + ε, noise 0.1: the best possible
MSE is 0.01), trained by plain SGD through a Trainer."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from matplotlib.axes import Axes

from nnlab.lecture.fitting import compose_config, fit
from nnlab.lecture.study import Claim, Run

NOISE_FLOOR = 0.1**2  # the data's noise variance: no model's expected MSE is lower


def sgd_config(run: Run, *overrides: str) -> Any:
    return compose_config(
        f"seed={run.seed}", "data=linear_regression", "model=linear", "optimizer=sgd", *overrides
    )


def draw_diverging(ax: Axes, epochs: pd.Series, loss: pd.Series, label: str, color: str) -> str:
    """Plots a loss curve on a log axis; its non-finite epochs (inf, NaN) are drawn as × at the
    top of the axis instead of being dropped. Returns what happened to the run."""
    finite = loss.apply(math.isfinite)
    fate = "finite" if finite.all() else f"diverged: inf/NaN from epoch {epochs[~finite].iloc[0]}"
    style = {"color": color, "marker": "o", "ms": 3}
    ax.plot(
        epochs[finite],
        loss[finite],
        label=label if finite.all() else f"{label}, {fate} (×)",
        **style,
    )
    ax.plot(
        epochs[~finite],
        [1.0] * int((~finite).sum()),
        "x",
        ms=8,
        mew=2,
        color=color,
        transform=ax.get_xaxis_transform(),
        clip_on=False,
    )
    return fate


def learning_rate(run: Run, lrs: tuple[float, float, float] = (0.001, 0.1, 1.1)) -> Claim:
    """Claim 8: the training loss over epochs for a too small, a right and a too big learning
    rate (plain SGD, batches of 32), each curve as trained (no best checkpoint)."""
    epochs = run.size(8, 30)
    rows = []
    for lr in lrs:
        history = fit(sgd_config(run, f"optimizer.lr={lr}"), epochs, validate=False).history
        rows += [
            {"lr": lr, "epoch": e, "train_loss": v}
            for e, v in zip(history.epoch, history["train/loss"], strict=True)
        ]
    frame = run.table("learning_rate", rows)

    # Two panels: on one axis the diverging run's 1e30s would squash the other two together.
    fig, (ax, big_ax) = run.figure("learning_rate", ncols=2, size=(5.0, 4.2))
    fate = {}
    names = ("too small", "right", "too big")
    for color, (lr, name) in enumerate(zip(lrs, names, strict=True)):
        part = frame[frame.lr == lr]
        target = big_ax if name == "too big" else ax
        fate[lr] = draw_diverging(
            target, part.epoch, part.train_loss, f"lr {lr:g} ({name})", f"C{color}"
        )
    ax.axhline(NOISE_FLOOR, color="gray", ls=":", label=f"noise floor σ² = {NOISE_FLOOR:g}")
    for a in (ax, big_ax):
        a.set(yscale="log", xlabel="epoch", ylabel="training loss (MSE, epoch mean; log scale)")
        a.xaxis.get_major_locator().set_params(integer=True)
        a.legend(fontsize=8, loc="center right" if a is ax else "lower right")
    ax.set_title("Too small crawls, right reaches the floor", pad=14)
    big_ax.set_title("Too big: the loss grows, then inf/NaN (×)", pad=14)
    fig.suptitle(f"Plain SGD on linear regression, batches of 32, {epochs} epochs")
    run.save("learning_rate")

    final = {lr: float(frame[frame.lr == lr].train_loss.iloc[-1]) for lr in lrs}
    first = {lr: float(frame[frame.lr == lr].train_loss.iloc[0]) for lr in lrs}
    small, right, big = lrs
    big_blew_up = not math.isfinite(final[big]) or final[big] > 1e3 * first[big]
    held = final[right] <= 2 * NOISE_FLOOR and final[small] > 10 * final[right] and big_blew_up
    statement = (
        f"after {epochs} epochs the training MSE is {final[small]:.3g} at lr {small:g} (crawling), "
        f"{final[right]:.3g} at lr {right:g} (noise floor {NOISE_FLOOR:g}), and at lr {big:g} "
        f"{fate[big]} (epoch 1: {first[big]:.3g})"
    )
    return run.claim(held, statement, final_loss=final, first_epoch_loss=first, fate=fate)


REGIMES = {"full-batch GD": "full", "mini-batch SGD (32)": 32, "per-sample SGD": 1}


def first_reached(frame: pd.DataFrame, column: str, target: float) -> dict[str, float]:
    """Per regime, `column` (updates, seconds) at the first epoch whose held-out loss is at
    most `target`; inf where none is."""
    reached = frame[frame.val_loss <= target].groupby("regime")[column].min()
    return {regime: float(reached.get(regime, math.inf)) for regime in REGIMES}


def held_out_floor(data: Any) -> float:
    """The true line's MSE on the held-out (validation) split: its noise, the lowest MSE a
    model can expect there. σ² = 0.01 on average, but a finite split's noise is a sample: a
    fitted line can score a little below it by chance."""
    x, y = data.splits["val"]
    return (x @ data.true_weight + data.true_bias - y).square().mean().item()


def draw_regimes(run: Run, frame: pd.DataFrame, lr: float, floor: float) -> None:
    fig, axes = run.figure("gd_regimes", ncols=3, size=(4.4, 4.0))
    columns = {
        "epoch": "epoch",
        "updates": "updates (optimizer steps)",
        "seconds": "training time (s)",
    }
    for ax, (column, label) in zip(axes, columns.items(), strict=True):
        for regime in REGIMES:
            part = frame[frame.regime == regime]
            ax.plot(part[column], part.val_loss, marker="o", ms=3, label=regime)
        ax.axhline(floor, color="gray", ls=":", label=f"the true line's MSE here: {floor:.4f}")
        ax.set(yscale="log", xlabel=label, ylabel="held-out MSE after the epoch (log scale)")
        ax.set_xscale("linear" if column == "epoch" else "log")
    axes[0].legend(fontsize=8)
    fig.supxlabel(
        f"Dotted: the noise on this held-out split, the MSE of the true w and b there (σ² = "
        f"{NOISE_FLOOR:g} in expectation; a fitted line can land slightly below it by chance).",
        fontsize=8,
    )
    fig.suptitle(f"Full-batch, mini-batch and per-sample SGD, lr {lr:g}")
    run.save("gd_regimes")


def reached(values: dict[str, float], fmt: str) -> str:
    return ", ".join(
        f"{r} {v:{fmt}}" if math.isfinite(v) else f"{r} not reached" for r, v in values.items()
    )


def gd_regimes(run: Run, lr: float = 0.1) -> Claim:
    """Claim 9: the same SGD at the same learning rate with the whole training split, 32
    samples or one sample per update; the held-out loss after each epoch against epochs,
    updates and training seconds."""
    epochs, n = run.size(5, 20), run.size(300, 600)
    parts = []
    for regime, batch in REGIMES.items():
        overrides = (f"optimizer.lr={lr}", f"data.batch_size={batch}", f"data.n_samples={n}")
        model = fit(sgd_config(run, *overrides), epochs)
        floor = held_out_floor(model.data)  # the same data for every regime (same seed and n)
        history = model.history
        history = history.rename(columns={"val/loss": "val_loss"})
        parts.append(history[["epoch", "updates", "seconds", "val_loss"]].assign(regime=regime))
    frame = run.table("gd_regimes", pd.concat(parts, ignore_index=True))
    draw_regimes(run, frame, lr, floor)

    first = frame[frame.epoch == 1].set_index("regime").val_loss
    late = frame[frame.epoch > epochs // 2].groupby("regime").val_loss.mean()
    target = 3 * NOISE_FLOOR
    seconds = first_reached(frame, "seconds", target)
    updates = first_reached(frame, "updates", target)
    full, mini, single = REGIMES
    # Per epoch, smaller batches make more progress; with a constant learning rate, one
    # sample's noisy gradient keeps the loss hovering above mini-batches'; per second,
    # per-sample SGD pays the per-step cost once per sample.
    held = (
        first[single] < first[full]
        and first[mini] < first[full]
        and late[single] > late[mini]
        and seconds[mini] < seconds[single]
    )
    statement = (
        "after epoch 1 the held-out MSE is "
        + ", ".join(f"{r} {first[r]:.3g}" for r in REGIMES)
        + f"; late epochs, per-sample SGD hovers at {late[single]:.3g} against {late[mini]:.3g} "
        f"for mini-batches; to reach MSE ≤ {target:g}: seconds {reached(seconds, '.2g')}; "
        f"updates {reached(updates, '.0f')}"
    )
    return run.claim(
        held,
        statement,
        first_epoch_loss={r: float(v) for r, v in first.items()},
        late_loss={r: float(v) for r, v in late.items()},
        seconds_to_target=seconds,
        updates_to_target=updates,
        held_out_floor=floor,
    )
