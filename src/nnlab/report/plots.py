"""The figures of a sweep report: a heatmap of the optimized metric over two swept keys, and
the validation curves of every job overlaid. matplotlib is imported only here, when drawing (a
Figure drawn without pyplot renders with Agg, whatever the session's backend)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from statistics import mean

from nnlab.report.jobs import Job, number, swept_keys

SEED = "seed"
# More values than this on an axis (an Optuna search's continuous ones): no heatmap, whose
# cells would be nearly all empty and their labels unreadable.
MAX_AXIS_VALUES = 20


def heatmap_axes(jobs: list[Job]) -> tuple[str, str] | None:
    """The two swept keys with the most values (seed aside: it is averaged over); None when
    fewer than two keys are swept."""
    sizes = {k: len({job.overrides.get(k) for job in jobs}) for k in swept_keys(jobs) if k != SEED}
    ranked = sorted((k for k, n in sizes.items() if n > 1), key=lambda k: -sizes[k])
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def _values(jobs: list[Job], key: str) -> list[str]:
    """A key's values in numeric order when all are numbers, else in the order of the jobs."""
    values = list(dict.fromkeys(job.overrides.get(key, "") for job in jobs))
    if all(number(v) is not None for v in values):
        values.sort(key=lambda v: number(v))
    return values


def grid(jobs: list[Job], x: str, y: str) -> tuple[list[str], list[str], list[list[float]], str]:
    """(x values, y values, cells[y][x], how cells aggregate): each cell is the mean over seeds
    of the finished jobs' optimized metric, then the best over any other swept key; NaN where
    no job finished."""
    others = [k for k in swept_keys(jobs) if k not in (x, y, SEED)]
    mode = next((job.mode for job in jobs if job.value is not None), "min")
    cells: dict[tuple[str, str], dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        if job.value is not None:
            cell = (job.overrides.get(x, ""), job.overrides.get(y, ""))
            cells[cell][tuple(job.overrides.get(k) for k in others)].append(job.value)
    best = max if mode == "max" else min
    xs, ys = _values(jobs, x), _values(jobs, y)
    table = [
        [
            best(mean(v) for v in cells[(xv, yv)].values()) if (xv, yv) in cells else math.nan
            for xv in xs
        ]
        for yv in ys
    ]
    how = []
    if SEED in swept_keys(jobs):
        how.append("mean over seeds")
    if others:
        how.append(f"{'max' if mode == 'max' else 'min'} over {', '.join(others)}")
    return xs, ys, table, "; ".join(how)


def draw_heatmap(jobs: list[Job], path: Path) -> str | None:
    """heatmap.png of the optimized metric over the two swept keys with the most values; the
    reason when there is none to draw."""
    axes = heatmap_axes(jobs)
    if axes is None:
        return "no heatmap: fewer than two keys (besides seed) are swept"
    x, y = axes
    xs, ys, table, how = grid(jobs, x, y)
    if max(len(xs), len(ys)) > MAX_AXIS_VALUES:
        return (
            f"no heatmap: {x} and {y} take {len(xs)} and {len(ys)} values (a search rather "
            f"than a grid; the heatmap draws up to {MAX_AXIS_VALUES} per axis)"
        )
    from matplotlib.figure import Figure

    metric = next((job.metric for job in jobs if job.value is not None), "optimized metric")
    mode = next((job.mode for job in jobs if job.value is not None), "min")
    fig = Figure(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2), layout="constrained")
    ax = fig.add_subplot()
    # Brighter is better whichever way the metric goes.
    image = ax.imshow(table, cmap="viridis" if mode == "max" else "viridis_r", aspect="auto")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    # A cell without a finished job says what became of its jobs (failed, diverged, unknown).
    states = defaultdict(set)
    for job in jobs:
        states[(job.overrides.get(x, ""), job.overrides.get(y, ""))].add(job.status)
    box = {"facecolor": "white", "alpha": 0.7, "lw": 0}
    for i, row in enumerate(table):
        for j, value in enumerate(row):
            label = ", ".join(sorted(states[(xs[j], ys[i])])) if math.isnan(value) else None
            if label != "":  # "": no job had these two values (a cell the grid did not run)
                ax.text(j, i, label or f"{value:.4f}", ha="center", va="center", bbox=box)
    fig.colorbar(image, ax=ax, label=f"{metric} ({mode} is better)")
    ax.set_title(f"{metric}" + (f" ({how})" if how else ""))
    fig.savefig(path, dpi=120)
    return None


def draw_curves(jobs: list[Job], path: Path) -> str | None:
    """curves.png: each job's optimized validation metric per epoch, labeled by its swept
    overrides (one panel per metric when jobs optimize different ones); the reason when no job
    has logged a curve yet."""
    keys = swept_keys(jobs)
    # A running job has no results.json yet: its curve is of the metric the others optimize.
    common = next((job.metric for job in jobs if job.metric), "")
    panels: dict[str, list[tuple[str, list[float], list[float]]]] = defaultdict(list)
    for job in jobs:
        metric = job.metric or common
        epochs, values = job.curve(metric) if metric else ([], [])
        if epochs:
            label = " ".join(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)
            panels[metric].append((f"{job.name}: {label}", epochs, values))
    if not panels:
        return "no curves: no job has a metrics.csv with validation epochs (logger=csv) yet"
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), squeeze=False)[:, 0]
    for ax, (metric, curves) in zip(axes, panels.items(), strict=True):
        for label, epochs, values in curves:
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch, every job")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120)
    return None
