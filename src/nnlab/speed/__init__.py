"""The fast path, behind one seam: everything that makes training fast without changing what it
computes, so that a task module (nnlab.tasks) reads as forward, loss, metrics and optimizers.

- config: the speed group's one check (check_speed), apply_speed, the datamodule's options
  (data_options), frozen_heap.
- steps: StepRunner, the task module's manual training steps: groups of exact optimizer steps
  per Lightning batch, or the step replayed as a CUDA graph (graphed: GraphedStep).
- optim: optimizer implementation options (fused, foreach; what a captured step needs).
- compiled: speed.compile, the network compiled with torch.compile (and where it is refused).
- checkpoint: BufferedCheckpoint, checkpoints taken once per moment and written in batches.
- report: SpeedReport and StepProgressBar.
Lightning's private internals that these rely on live in nnlab.compat (with tracking's W&B
and CSV ones), the only module that touches them.
"""

from nnlab.speed.checkpoint import BufferedCheckpoint
from nnlab.speed.config import apply_speed, check_speed, data_options, frozen_heap
from nnlab.speed.report import SpeedReport, StepProgressBar

__all__ = [
    "BufferedCheckpoint",
    "SpeedReport",
    "StepProgressBar",
    "apply_speed",
    "check_speed",
    "data_options",
    "frozen_heap",
]
