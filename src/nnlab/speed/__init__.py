"""The fast path, applied from outside: everything that makes training fast without changing
what it computes. Nothing it speeds up imports it (the task modules, data, callbacks and
tracking: an import-linter contract); train.py applies it through one seam, the FastPath
callback, so that a task module (nnlab.tasks) reads as plain Lightning.

- fastpath: FastPath, the callback that applies the speed group to a fit.
- config: the speed group's one check (check_speed), apply_speed, the datamodule's options
  (data_options), frozen_heap.
- groups: StepGroups, the training loader in groups of batches (steps_per_batch).
- steps: StepRunner, the manual training steps: groups of exact optimizer steps per Lightning
  batch, or the step replayed as a CUDA graph (graphed: GraphedStep).
- optim: optimizer implementation options (fused, foreach; what a captured step needs).
- compiled: speed.compile, the network compiled with torch.compile (and where it is refused).
- report: SpeedReport, the opt-in callback that reports a run's speed.
Lightning's private internals that these rely on live in nnlab.compat, the only module that
touches them.
"""

from nnlab.speed.config import apply_speed, check_speed, data_options, frozen_heap
from nnlab.speed.fastpath import FastPath
from nnlab.speed.report import SpeedReport

__all__ = [
    "FastPath",
    "SpeedReport",
    "apply_speed",
    "check_speed",
    "data_options",
    "frozen_heap",
]
