"""Per-layer diagnostics during training: activation mean/std, the fraction of dead units
(ReLU), gradient and weight norms, and value histograms, every N optimizer steps.

The training step is never touched: forward hooks are registered on the activation modules
only for a measuring step and removed right after it, and statistics stay on the device until
one transfer at the end of that step. Steps in between pay one integer comparison.

A unit is *dead* on a step, as the course defines it, when it outputs zero with zero gradient for
every example of the step's batch: a ReLU unit whose input is never positive. Leaky ReLU, PReLU
and ELU have no dead units (their negative side still passes a gradient); for them
`negative_fraction` counts the units in the negative regime for the whole batch. Other
activations leave both columns empty. A unit with a non-finite output is neither: it counts in
`nonfinite_fraction` (a diverging run), whatever the activation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from nnlab.callbacks import output
from nnlab.core import ConfigError
from nnlab.data.loaders import BatchGroup
from nnlab.nn.activations import ACTIVATIONS, sample

log = logging.getLogger(__name__)

# The activation layers nnlab builds, one of each registry entry: those that follow a Linear
# layer, and those that replace it and hold their affine map as `.linear` (maxout).
ACTIVATION_TYPES = tuple({type(sample(e)) for e in ACTIVATIONS if not e.replaces_linear})
AFFINE_ACTIVATION_TYPES = tuple({type(sample(e)) for e in ACTIVATIONS if e.replaces_linear})
# Activations whose units can die (zero output and gradient), and those with a negative regime
# that still passes a gradient.
DYING = (nn.ReLU,)
NEGATIVE_REGIME = (nn.LeakyReLU, nn.PReLU, nn.ELU)
UNIT_FIELDS = ("dead_fraction", "negative_fraction", "nonfinite_fraction")
ACTIVATION_FIELDS = ("step", "epoch", "layer", "mean", "std", *UNIT_FIELDS)
GRADIENT_FIELDS = ("step", "epoch", "layer", "grad_norm", "weight_norm")
HISTOGRAM_FIELDS = ("step", "kind", "layer", "bin_start", "bin_end", "count")
HISTOGRAM_BINS = 40


@dataclass
class Layer:
    """One layer of a network: the module holding its weights, and the module whose output is
    its activation (None for the linear output layer)."""

    name: str
    weights: nn.Module
    activation: nn.Module | None

    @property
    def has_dead_units(self) -> bool:
        return isinstance(self.activation, DYING)

    @property
    def has_negative_regime(self) -> bool:
        return isinstance(self.activation, NEGATIVE_REGIME)


def unit_fractions(layer: Layer, a: torch.Tensor) -> torch.Tensor:
    """[dead, negative, non-finite] fractions of the units of `layer` given its activations
    `a` (batch × units) on one batch; NaN where the layer's activation has no such regime.
    Dead: output 0 for every example (ReLU's gradient is then 0 too); a non-finite output is
    never zero, so a diverged unit is not counted dead."""
    none = torch.full((), math.nan, device=a.device)
    dead = (a == 0).all(dim=0).float().mean() if layer.has_dead_units else none
    negative = (a < 0).all(dim=0).float().mean() if layer.has_negative_regime else none
    nonfinite = (~torch.isfinite(a)).any(dim=0).float().mean()
    return torch.stack([dead, negative, nonfinite])


def find_layers(net: nn.Module) -> list[Layer]:
    """The layers of `net` in network order, named layer1, layer2, ... and `output` for a final
    layer with no activation after it (the logits)."""
    found: list[list[Any]] = []  # [weights, activation]
    inside_activation: set[int] = set()
    for module in net.modules():
        if isinstance(module, AFFINE_ACTIVATION_TYPES):  # its linear map and activation: one layer
            found.append([module.linear, module])
            inside_activation.add(id(module.linear))
        elif isinstance(module, nn.Linear) and id(module) not in inside_activation:
            found.append([module, None])
        elif isinstance(module, ACTIVATION_TYPES) and found and found[-1][1] is None:
            found[-1][1] = module
    return [
        Layer("output" if i == len(found) - 1 and act is None else f"layer{i + 1}", weights, act)
        for i, (weights, act) in enumerate(found)
    ]


class LayerDiagnostics(Callback):
    """Measures every layer every `every_n_steps` optimizer steps (step 0, the initialisation,
    included) and plots the measurements when fitting ends.

    Args:
        every_n_steps: optimizer steps between measurements.
        histogram_every_n_steps: steps between weight/activation histograms (0: none); a
            multiple of every_n_steps, since histograms are taken on measuring steps.
        plots: render PNGs into <run dir>/diagnostics/ when fitting ends.

    Writes activations.csv (step, epoch, layer, mean, std, dead_fraction), gradients.csv
    (step, epoch, layer, grad_norm, weight_norm), histograms.csv, and activation_std.png,
    dead_units.png, grad_norms.png, histograms.png; logs `activation_mean/<layer>`,
    `activation_std/<layer>`, `dead_fraction/<layer>`, `grad_norm/<layer>`, `weight_norm/<layer>`
    and the histograms `weights/<layer>`, `activations/<layer>` to TensorBoard and W&B.
    """

    def __init__(
        self, every_n_steps: int = 50, histogram_every_n_steps: int = 0, plots: bool = True
    ) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"diagnostics.layers.every_n_steps must be >= 1, got {every_n_steps}")
        if histogram_every_n_steps < 0 or histogram_every_n_steps % every_n_steps:
            raise ConfigError(
                "diagnostics.layers.histogram_every_n_steps must be 0 or a multiple of "
                f"every_n_steps ({every_n_steps}), got {histogram_every_n_steps}"
            )
        self.every_n_steps = every_n_steps
        self.histogram_every_n_steps = histogram_every_n_steps
        self.plots = plots
        self.layers: list[Layer] = []
        self.activation_rows: list[dict[str, Any]] = []
        self.gradient_rows: list[dict[str, Any]] = []
        self.histograms: list[dict[str, Any]] = []
        self._next_step = 0  # the next step due for a measurement
        self._next_histogram = 0
        self._measuring = False  # hooks are on for the current batch
        self._recorded = False  # the current batch filed a measurement
        self._keep_values = False  # this measurement takes histograms too
        self._warned = False
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._act_stats: dict[str, torch.Tensor] = {}
        self._act_values: dict[str, torch.Tensor] = {}
        self._grad_stats: torch.Tensor | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # fast_dev_run is a smoke test: like Lightning's loggers, diagnostics stay quiet.
        if stage == "fit" and not trainer.fast_dev_run:
            self.layers = find_layers(getattr(pl_module, "net", pl_module))
            log.info("layer diagnostics: %s", ", ".join(layer.name for layer in self.layers))

    # -- measuring -----------------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # A batch may hold several optimizer steps (speed.steps_per_batch hands the step a group
        # of batches). The hooks stay on for such a batch but record only on due steps, so
        # measurements land on multiples of every_n_steps either way. A due step that passed
        # unmeasured (resumed run, accumulation) moves to the first step seen.
        steps = len(batch) if isinstance(batch, BatchGroup) else 1
        self._next_step = max(self._next_step, step)
        if self._next_step >= step + steps or not self.layers or not trainer.is_global_zero:
            return
        if getattr(pl_module, "captures_step", False):  # set for a fit by nnlab.speed.FastPath
            # speed.cuda_graph: the step is (or is about to be) captured, and a replay runs no
            # Python hooks; hooks present at capture would be baked into every replay.
            self._warn_unmeasured(step)
            return
        self._plan_histograms()
        self._measuring = True
        for layer in self.layers:
            if layer.activation is not None:
                hook = self._activation_hook(trainer, layer)
                self._hooks.append(layer.activation.register_forward_hook(hook))

    def _plan_histograms(self) -> None:
        h = self.histogram_every_n_steps
        self._keep_values = bool(h) and self._next_step >= self._next_histogram

    def _warn_unmeasured(self, step: int) -> None:
        if not self._warned:
            log.warning(
                "layer diagnostics measure nothing from step %d: the training step runs no "
                "Python hooks (speed.cuda_graph?); speed.cuda_graph=false measures every layer",
                step,
            )
            self._warned = True

    def _activation_hook(self, trainer: Trainer, layer: Layer):
        def hook(module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
            if trainer.global_step != self._next_step:
                return
            a = out.detach().flatten(1).float()
            std = a.std() if a.numel() > 1 else torch.zeros((), device=a.device)
            moments = torch.stack([a.mean(), std])
            self._act_stats[layer.name] = torch.cat([moments, unit_fractions(layer, a)])
            if self._keep_values:
                self._act_values[layer.name] = a.flatten()

        return hook

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = trainer.global_step
        if not self._measuring or step != self._next_step:
            return
        norms = []
        for layer in self.layers:
            w = layer.weights.weight
            grad = w.grad.norm() if w.grad is not None else torch.full((), math.nan)
            norms.append(torch.stack([grad.to(w.device), w.detach().norm()]))
        self._grad_stats = torch.stack(norms)
        # The step's forward hooks and gradients are in: file them, then aim at the next one.
        self._record(trainer, step)
        self._recorded = True
        n, h = self.every_n_steps, self.histogram_every_n_steps
        if self._keep_values:
            self._next_histogram = (step // h + 1) * h
        self._next_step = (step // n + 1) * n
        self._plan_histograms()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._measuring:
            return
        self._measuring = False
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        if not self._recorded:
            self._warn_unmeasured(trainer.global_step)
        self._recorded = False

    def _record(self, trainer: Trainer, step: int) -> None:
        """Moves the step's statistics to the host (the one sync), then files and logs them."""
        epoch = trainer.current_epoch
        act_rows = []
        names = list(self._act_stats)
        stats = torch.stack(list(self._act_stats.values())).tolist() if names else []
        for name, (mean, std, *fractions) in zip(names, stats, strict=True):
            act_rows.append(
                {"step": step, "epoch": epoch, "layer": name, "mean": mean, "std": std}
                | {
                    k: v if math.isfinite(v) else None
                    for k, v in zip(UNIT_FIELDS, fractions, strict=True)
                }
            )
        grad_rows = []
        if self._grad_stats is not None:
            for layer, (g, w) in zip(self.layers, self._grad_stats.tolist(), strict=True):
                grad = g if math.isfinite(g) else None
                grad_rows.append(
                    {"step": step, "epoch": epoch, "layer": layer.name, "grad_norm": grad}
                    | {"weight_norm": w}
                )
        self._act_stats.clear()
        self._grad_stats = None
        self.activation_rows += act_rows
        self.gradient_rows += grad_rows
        folder = output.output_dir(trainer)
        if act_rows:
            output.append_csv(folder / "activations.csv", ACTIVATION_FIELDS, act_rows)
        if grad_rows:
            output.append_csv(folder / "gradients.csv", GRADIENT_FIELDS, grad_rows)
        metrics = {}
        for r in act_rows:
            metrics[f"activation_mean/{r['layer']}"] = r["mean"]
            metrics[f"activation_std/{r['layer']}"] = r["std"]
            for field in UNIT_FIELDS:
                if r[field] is not None:
                    metrics[f"{field}/{r['layer']}"] = r[field]
        for r in grad_rows:
            if r["grad_norm"] is not None:
                metrics[f"grad_norm/{r['layer']}"] = r["grad_norm"]
            metrics[f"weight_norm/{r['layer']}"] = r["weight_norm"]
        if metrics:
            output.log_scalars(trainer, metrics, step)
        if self._keep_values:
            self._record_histograms(trainer, step)

    def _record_histograms(self, trainer: Trainer, step: int) -> None:
        values = {f"weights/{layer.name}": layer.weights.weight for layer in self.layers}
        values |= {f"activations/{name}": v for name, v in self._act_values.items()}
        values = {tag: v.detach().float().cpu().numpy().ravel() for tag, v in values.items()}
        self._act_values.clear()
        rows = []
        for tag, v in values.items():
            kind, layer = tag.split("/")
            counts, edges = np.histogram(v, bins=HISTOGRAM_BINS)
            self.histograms.append(
                {"step": step, "kind": kind, "layer": layer, "counts": counts, "edges": edges}
            )
            rows += [
                {"step": step, "kind": kind, "layer": layer, "count": int(c)}
                | {"bin_start": float(a), "bin_end": float(b)}
                for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True)
            ]
        output.append_csv(output.output_dir(trainer) / "histograms.csv", HISTOGRAM_FIELDS, rows)
        output.log_histograms(trainer, values, step)

    # -- plots -----------------------------------------------------------------------------------
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not (self.plots and self.layers and trainer.is_global_zero):
            return
        folder = output.output_dir(trainer)
        images = {}
        if self.activation_rows:
            fig = output.per_layer_plot(
                self.activation_rows,
                [("std", "activation std"), ("mean", "activation mean")],
                "Activations per layer",
            )
            images["activation_std"] = output.save_figure(fig, folder / "activation_std.png")
            if any(r["dead_fraction"] is not None for r in self.activation_rows):
                fig = output.per_layer_plot(
                    self.activation_rows,
                    [("dead_fraction", "fraction of dead units")],
                    "Dead units (zero output and gradient for the whole batch)",
                )
                images["dead_units"] = output.save_figure(fig, folder / "dead_units.png")
        if any(r["grad_norm"] is not None for r in self.gradient_rows):
            fig = output.per_layer_plot(
                self.gradient_rows,
                [("grad_norm", "gradient norm ‖∂L/∂W‖"), ("weight_norm", "weight norm ‖W‖")],
                "Gradient flow",
                log_y=True,
            )
            images["grad_norms"] = output.save_figure(fig, folder / "grad_norms.png")
        if self.histograms:
            fig = output.histogram_plot(self.histograms, "Value distributions per layer")
            images["histograms"] = output.save_figure(fig, folder / "histograms.png")
        output.log_images(
            trainer, {f"diagnostics/{k}": v for k, v in images.items()}, trainer.global_step
        )
