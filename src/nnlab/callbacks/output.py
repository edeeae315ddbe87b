"""Where diagnostics go: CSV and PNG files in `<run dir>/diagnostics/`, and every logger that can
show them (TensorBoard scalars/histograms/images, W&B charts/histograms/images/tables). The CSV
logger gets none of them: its metrics.csv keeps one row per epoch, and the diagnostics have CSV
files of their own.

Plots use matplotlib's object API (`Figure`, rendered by Agg) rather than pyplot, so nothing
depends on a display or on pyplot's global figure state.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from matplotlib import colormaps
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DIRNAME = "diagnostics"
DPI = 100


def output_dir(trainer: Trainer) -> Path:
    """`<run dir>/diagnostics`, made on first use."""
    path = Path(trainer.default_root_dir) / DIRNAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def append_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends rows, writing the header first if the file is new; rows written as they come, so
    a run that stops early keeps what it measured."""
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def write_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Writes a whole CSV file (replacing an older one)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def save_figure(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


# -- loggers -----------------------------------------------------------------------------------
def log_scalars(trainer: Trainer, metrics: Mapping[str, float], step: int) -> None:
    """Scalars to the loggers that chart them (TensorBoard, W&B)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger | WandbLogger):
            logger.log_metrics(dict(metrics), step=step)


def log_histograms(trainer: Trainer, values: Mapping[str, np.ndarray], step: int) -> None:
    """Value distributions (one array per tag) as TensorBoard and W&B histograms."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            for tag, v in values.items():
                logger.experiment.add_histogram(tag, v, global_step=step)
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.log_metrics({t: wandb.Histogram(v) for t, v in values.items()}, step=step)


def log_images(trainer: Trainer, images: Mapping[str, Path], step: int) -> None:
    """Saved PNGs as TensorBoard images and W&B media panels."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            from matplotlib.image import imread

            for tag, path in images.items():
                logger.experiment.add_image(tag, imread(path), step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            for tag, path in images.items():
                logger.log_image(tag, [str(path)], step=step)


def wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


# -- plots -------------------------------------------------------------------------------------
def per_layer_plot(
    rows: Sequence[Mapping[str, Any]],
    panels: Sequence[tuple[str, str]],
    title: str,
    log_y: bool = False,
) -> Figure:
    """One panel per (column, label) with a line per layer over training steps."""
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (column, label) in zip(axes, panels, strict=True):
        for layer in layers:
            points = [(r["step"], r[column]) for r in rows if r["layer"] == layer]
            points = [(s, v) for s, v in points if v is not None and np.isfinite(v)]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=layer)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def histogram_plot(hists: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """A grid (rows: weights, activations; columns: layers) of value distributions, one line
    per recorded step, early steps light and late ones dark."""
    kinds = list(dict.fromkeys(h["kind"] for h in hists))
    layers = list(dict.fromkeys(h["layer"] for h in hists))
    steps = sorted({h["step"] for h in hists})
    fig = Figure(figsize=(3.2 * len(layers), 2.6 * len(kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), len(layers), squeeze=False)
    cmap = colormaps["viridis"]
    for i, kind in enumerate(kinds):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            drawn = [h for h in hists if h["kind"] == kind and h["layer"] == layer]
            if not drawn:  # e.g. the output layer has weights but no activation
                ax.axis("off")
            for h in drawn:
                shade = steps.index(h["step"]) / max(len(steps) - 1, 1)
                centers = (h["edges"][:-1] + h["edges"][1:]) / 2
                ax.plot(centers, h["counts"], color=cmap(shade), label=f"step {h['step']}")
            ax.set_title(f"{kind} · {layer}", fontsize="small")
            ax.tick_params(labelsize="x-small")
    axes[0][-1].legend(fontsize="xx-small")
    fig.suptitle(title)
    return fig


# A confusion-matrix figure shows at most this many classes: its size grows with their square
# (1,351 classes once took 24 GB), and past a few dozen no cell can be read anyway.
MAX_PLOTTED_CLASSES = 30


def most_confused(matrix: np.ndarray, k: int) -> np.ndarray:
    """The indices, in class order, of the k classes most involved in mistakes: off-diagonal
    counts of their row (true) and column (predicted), ties broken by their number of samples."""
    mistakes = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    order = np.lexsort((-matrix.sum(axis=1), -mistakes))
    return np.sort(order[:k])


def confusion_plot(matrix: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Counts with true classes as rows and predicted classes as columns; with more than
    MAX_PLOTTED_CLASSES classes, those most involved in mistakes (the title says so)."""
    if len(class_names) > MAX_PLOTTED_CLASSES:
        keep = most_confused(matrix, MAX_PLOTTED_CLASSES)
        title = f"{title}\n{len(keep)} most confused of {len(class_names)} classes"
        matrix, class_names = matrix[np.ix_(keep, keep)], [class_names[i] for i in keep]
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        threshold = matrix.max() / 2
        for (i, j), v in np.ndenumerate(matrix):
            color = "white" if v > threshold else "black"
            ax.text(j, i, str(v), ha="center", va="center", fontsize="small", color=color)
    ax.set_title(title)
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str], title: str) -> Figure:
    """Images (N, H, W) or (N, H, W, C) in a grid, each with its caption."""
    n = len(images)
    cols = min(8, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(caption, fontsize="x-small")
    fig.suptitle(title)
    return fig


def scatter_plot(actual: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """Predicted against actual values, with the line y = x a perfect model would lie on."""
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(actual, predicted, s=8, alpha=0.6)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="y = x")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_aspect("equal")
    ax.legend()
    ax.set_title(title)
    return fig


def residual_plot(residuals: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(residuals, bins=40)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_xlabel("residual (predicted − actual)")
    ax.set_ylabel("count")
    ax.set_title(title)
    return fig
