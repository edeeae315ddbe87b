"""What the model gets wrong, on the validation split: a confusion matrix and the most confident
mistakes (classification), or predicted-vs-actual and residuals (regression).

Computed from the outside, in eval mode under no_grad, by running the model over the
datamodule's validation loader: every `every_n_epochs` validation epochs (CSV snapshots of the
weights of the moment) and once when fitting ends (CSV, PNG, and the loggers) with the weights of
the best checkpoint, the model that train.py tests, so no training step pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from nnlab.callbacks import output
from nnlab.core import ConfigError

log = logging.getLogger(__name__)


# The columns of misclassified.csv and of the W&B table of mistakes.
MISTAKE_COLUMNS = ("index", "true", "predicted", "confidence")


@dataclass(frozen=True)
class Predictions:
    """The model's outputs over the validation split, and the weights they come from."""

    x: torch.Tensor  # the inputs
    y: torch.Tensor  # the targets (regression: in the target's own units)
    out: torch.Tensor  # the raw outputs (regression: in the target's own units)
    final: bool  # when fitting ends: plots and loggers too, not only the CSV snapshots
    epoch: int  # the epoch the weights are from
    which: str  # the weights, in words ("best checkpoint (epoch 3)"), for titles


@torch.no_grad()
def predict_split(
    pl_module: LightningModule, loader: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, raw outputs) over a loader, on the CPU; restores the module's mode."""
    was_training = pl_module.training
    pl_module.eval()
    xs, ys, outs = [], [], []
    for x, y in loader:
        outs.append(pl_module(x.to(pl_module.device, pl_module.dtype)).float().cpu())
        xs.append(x.cpu())
        ys.append(y.cpu())
    pl_module.train(was_training)
    return torch.cat(xs), torch.cat(ys), torch.cat(outs)


def confusion_matrix(y: torch.Tensor, predicted: torch.Tensor, n: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    return torch.bincount(y.long() * n + predicted, minlength=n * n).reshape(n, n).numpy()


def as_images(x: torch.Tensor) -> np.ndarray | None:
    """Inputs as displayable images (N, H, W[, C]) scaled to [0, 1] each, or None when the
    inputs are not images (tabular or 2-D points)."""
    if x.dim() == 3:  # (N, H, W)
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        return None
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    # A uniform image has no range to stretch: mid-grey, not black.
    x = torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-8), 0.5)
    images = x.permute(0, 2, 3, 1).numpy()
    return images[..., 0] if images.shape[-1] == 1 else images


@contextmanager
def best_weights(trainer: Trainer, pl_module: LightningModule) -> Iterator[tuple[int, str]]:
    """Loads the best checkpoint's weights into `pl_module` for the block (copied in place, so
    a captured CUDA graph's tensors stay where they are) and puts the last weights back after;
    yields (the epoch the weights are from, a description of them). Without a best checkpoint on
    disk (callbacks=none), the block sees the last weights."""
    callback = trainer.checkpoint_callback
    path = Path(callback.best_model_path) if callback and callback.best_model_path else None
    if path is None or not path.is_file():
        yield trainer.current_epoch, "last weights"
        return
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    last = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
    pl_module.load_state_dict(checkpoint["state_dict"])
    try:
        epoch = checkpoint["epoch"]
        yield epoch, f"best checkpoint (epoch {epoch})"
    finally:
        pl_module.load_state_dict(last)


class PredictionDiagnostics(Callback):
    """Confusion matrix and misclassified examples, or regression scatter and residuals.

    Args:
        every_n_epochs: validation epochs between CSV snapshots during fitting (0: only at the
            end of fitting).
        max_misclassified: how many mistakes (the most confident first) go into
            misclassified.csv/.png and the W&B table; 0: none.
        plots: render PNGs into <run dir>/diagnostics/ when fitting ends.

    Classification writes confusion_matrix.csv/.png and misclassified.csv/.png; regression
    writes predictions.csv, pred_vs_actual.png and residuals.png, on the validation split, in
    the target's own units where the data standardized or logged it (dollars for house prices). The
    files written when fitting ends describe the best checkpoint (its epoch in the CSV rows and
    the titles), or the last weights where no checkpoint was kept.
    """

    def __init__(
        self, every_n_epochs: int = 1, max_misclassified: int = 32, plots: bool = True
    ) -> None:
        if every_n_epochs < 0 or max_misclassified < 0:
            raise ConfigError(
                "diagnostics.predictions.every_n_epochs and max_misclassified must be >= 0"
            )
        self.every_n_epochs = every_n_epochs
        self.max_misclassified = max_misclassified
        self.plots = plots

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            trainer.sanity_checking
            or trainer.state.fn != TrainerFn.FITTING
            or not self.every_n_epochs
            or (trainer.current_epoch + 1) % self.every_n_epochs
            or not trainer.is_global_zero
            or trainer.fast_dev_run
        ):
            return
        self._evaluate(trainer, pl_module, final=False)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # fast_dev_run is a smoke test: like Lightning's loggers, diagnostics stay quiet.
        if trainer.is_global_zero and not trainer.fast_dev_run:
            with best_weights(trainer, pl_module) as (epoch, which):
                self._evaluate(trainer, pl_module, final=True, epoch=epoch, which=which)

    def _evaluate(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        final: bool,
        epoch: int | None = None,
        which: str = "",
    ) -> None:
        datamodule = trainer.datamodule
        if datamodule is None:
            log.warning("prediction diagnostics need a datamodule; skipped")
            return
        x, y, out = predict_split(pl_module, datamodule.val_dataloader())
        epoch = trainer.current_epoch if epoch is None else epoch
        # The task module says what its outputs are: classes with their probabilities (its
        # `confidence`), or values, which it maps back to the target's own units.
        if hasattr(pl_module, "confidence"):
            p = Predictions(x, y, out, final, epoch, which)
            self._classification(trainer, pl_module, p)
        else:  # back to the target's own units (dollars, not z-scores)
            y, out = pl_module.in_target_units(y), pl_module.in_target_units(out)
            self._regression(trainer, Predictions(x, y, out, final, epoch, which))

    def _classification(self, trainer: Trainer, pl_module: Any, p: Predictions) -> None:
        names = list(pl_module.spec.class_names) or ["0", "1"]
        predicted, confidence = pl_module.confidence(p.out)
        matrix = confusion_matrix(p.y, predicted, len(names))
        folder = output.output_dir(trainer)
        output.write_csv(
            folder / "confusion_matrix.csv",
            ["epoch", "true", *names],
            [
                {"epoch": p.epoch, "true": t, **dict(zip(names, map(int, row), strict=True))}
                for t, row in zip(names, matrix, strict=True)
            ],
        )
        wrong = (predicted != p.y).nonzero().flatten()
        wrong = wrong[confidence[wrong].argsort(descending=True)][: self.max_misclassified]
        rows = [
            {"index": int(i), "true": names[int(p.y[i])], "predicted": names[int(predicted[i])]}
            | {"confidence": round(float(confidence[i]), 4)}
            for i in wrong
        ]
        if self.max_misclassified:
            output.write_csv(folder / "misclassified.csv", MISTAKE_COLUMNS, rows)
        if not p.final:
            return
        accuracy = float(np.trace(matrix) / max(matrix.sum(), 1))
        images = {}
        if self.plots:
            title = f"Confusion matrix on validation, {p.which}: accuracy {accuracy:.3f}"
            fig = output.confusion_plot(matrix, names, title)
            images["confusion_matrix"] = output.save_figure(fig, folder / "confusion_matrix.png")
        pictures = as_images(p.x[wrong]) if len(wrong) else None
        if self.plots and pictures is not None:
            captions = [f"{r['true']}→{r['predicted']} ({r['confidence']:.2f})" for r in rows]
            fig = output.image_grid(pictures, captions, "Most confident mistakes (true→predicted)")
            images["misclassified"] = output.save_figure(fig, folder / "misclassified.png")
        step = trainer.global_step
        output.log_images(trainer, {f"diagnostics/{k}": v for k, v in images.items()}, step)
        for logger in output.wandb_loggers(trainer):
            import wandb

            # W&B's own confusion-matrix panel (interactive; a table of classes² rows, so only
            # for as many classes as the figure shows), and the mistakes as a table.
            if len(names) <= output.MAX_PLOTTED_CLASSES:
                plot = wandb.plot.confusion_matrix(
                    y_true=p.y.tolist(), preds=predicted.tolist(), class_names=names
                )
                logger.log_metrics({"diagnostics/confusion": plot}, step=step)
            if rows:
                columns = list(MISTAKE_COLUMNS)
                data = [[r[c] for c in columns] for r in rows]
                if pictures is not None:
                    columns.append("image")
                    data = [[*d, wandb.Image(i)] for d, i in zip(data, pictures, strict=True)]
                logger.log_table("diagnostics/misclassified", columns, data, step=step)

    def _regression(self, trainer: Trainer, p: Predictions) -> None:
        actual = p.y.reshape(len(p.y), -1).numpy()
        predicted = p.out.reshape(len(p.out), -1).numpy()
        folder, step = output.output_dir(trainer), trainer.global_step
        k = actual.shape[1]
        fields = ["epoch", "index", "target", "actual", "predicted", "residual"]
        output.write_csv(
            folder / "predictions.csv",
            fields,
            [
                {"epoch": p.epoch, "index": i, "target": j, "actual": float(actual[i, j])}
                | {"predicted": float(predicted[i, j])}
                | {"residual": float(predicted[i, j] - actual[i, j])}
                for i in range(len(actual))
                for j in range(k)
            ],
        )
        if not p.final:
            return
        residuals = (predicted.astype(np.float64) - actual).ravel()
        if not np.isfinite(residuals).all():
            log.warning("validation predictions are not finite (did training diverge?): no plots")
            return
        images = {}
        if self.plots:
            rmse = float(np.sqrt(np.mean(residuals**2)))
            fig = output.scatter_plot(
                actual.ravel(),
                predicted.ravel(),
                f"Predicted vs actual on validation\n{p.which}: RMSE {rmse:.3g}",
            )
            images["pred_vs_actual"] = output.save_figure(fig, folder / "pred_vs_actual.png")
            fig = output.residual_plot(residuals, f"Residuals on validation\n{p.which}")
            images["residuals"] = output.save_figure(fig, folder / "residuals.png")
        output.log_images(trainer, {f"diagnostics/{k}": v for k, v in images.items()}, step)
        for logger in output.wandb_loggers(trainer):
            import wandb

            table = wandb.Table(
                columns=["actual", "predicted"],
                data=[
                    [float(a), float(p)]
                    for a, p in zip(actual.ravel(), predicted.ravel(), strict=True)
                ],
            )
            plot = wandb.plot.scatter(table, "actual", "predicted", title="predicted vs actual")
            logger.log_metrics({"diagnostics/pred_vs_actual_scatter": plot}, step=step)
