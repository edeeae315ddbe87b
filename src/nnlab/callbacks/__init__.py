"""Callbacks: diagnostics (the `diagnostics` config group: per-layer statistics during training
and prediction diagnostics on the validation split, as CSV/PNG files and logger panels).
Checkpointing that writes files in batches is part of the fast path (nnlab.speed.checkpoint)."""

from nnlab.callbacks.layers import LayerDiagnostics, find_layers
from nnlab.callbacks.predictions import PredictionDiagnostics

__all__ = ["LayerDiagnostics", "PredictionDiagnostics", "find_layers"]
