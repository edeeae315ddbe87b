"""Callbacks: diagnostics (the `diagnostics` config group: per-layer statistics during training
and prediction diagnostics on the validation split, as CSV/PNG files and logger panels), and
the callbacks group's: checkpoints written in batches (BufferedCheckpoint), the progress bar
(StepProgressBar), early stopping and the learning-rate log."""

from nnlab.callbacks.checkpoint import BufferedCheckpoint
from nnlab.callbacks.layers import LayerDiagnostics, find_layers
from nnlab.callbacks.predictions import PredictionDiagnostics
from nnlab.callbacks.progress import StepProgressBar
from nnlab.callbacks.training import EarlyStop, LearningRateLog, stopped_after_epoch

__all__ = [
    "BufferedCheckpoint",
    "EarlyStop",
    "LayerDiagnostics",
    "LearningRateLog",
    "PredictionDiagnostics",
    "StepProgressBar",
    "find_layers",
    "stopped_after_epoch",
]
