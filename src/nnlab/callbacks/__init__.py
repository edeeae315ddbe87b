"""Callbacks: diagnostics (the `diagnostics` config group: per-layer statistics during training
and prediction diagnostics on the validation split, as CSV/PNG files and logger panels), and
the optional training callbacks of the callbacks group (early stopping, learning-rate log).
Checkpointing that writes files in batches is part of the fast path (nnlab.speed.checkpoint)."""

from nnlab.callbacks.layers import LayerDiagnostics, find_layers
from nnlab.callbacks.predictions import PredictionDiagnostics
from nnlab.callbacks.training import EarlyStop, LearningRateLog, stopped_after_epoch

__all__ = [
    "EarlyStop",
    "LayerDiagnostics",
    "LearningRateLog",
    "PredictionDiagnostics",
    "find_layers",
    "stopped_after_epoch",
]
