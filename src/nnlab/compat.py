"""The one place in nnlab that relies on Lightning's internals: its private attributes (names
starting with "_") and what its per-step wrappers do. nnlab.speed (the fast path),
nnlab.callbacks (BufferedCheckpoint) and nnlab.tracking use them.

The fast path and the loggers need a few things Lightning keeps to itself: counting an optimizer
step taken without its optimizer wrapper, moving the step that loggers record metrics at, dumping a
checkpoint without writing it, the hook being run, ModelCheckpoint's private steps, the
arguments a WandbLogger passes to wandb.init and its run before it starts one, and where a
CSVLogger keeps its writer. Each is one small named function (or, for
ModelCheckpoint, one adapter class) here; nothing else in nnlab touches them.

All were checked against the source of Lightning CHECKED (the floor in pyproject.toml,
lightning>=2.4, is not verified for them). At import, `check_internals` verifies that each
still exists and raises ImportError naming the Lightning version and the missing internal: an
upgrade that removes one fails at once instead of silently training slower or logging at the
wrong steps. tests/test_lightning_internals.py checks that each still behaves as assumed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.fabric.loggers.csv_logs import CSVLogger as FabricCSVLogger
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

# The Lightning versions whose source every internal below was checked against.
CHECKED = "2.6.6"
# The hooks that Lightning's manual_backward and LightningOptimizer.step call every step
# (checked against Lightning 2.6.6), besides the module's `backward`.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def step_counters(optimizer: LightningOptimizer) -> tuple[Callable[[], None], Callable[[], None]]:
    """(before, after): what Lightning's optimizer wrapper calls around each step it takes.
    Under manual optimization they count the step (global_step, hence max_steps and
    checkpoints) and time it for the profiler; called around a step taken without the
    wrapper, or replayed in a CUDA graph, they count it the same way. Valid for the current
    training batch (Lightning installs them per batch)."""
    # Checked against Lightning 2.6.6: _ManualOptimization.on_run_start sets them on every
    # LightningOptimizer for the batch (on_run_end resets them to no-ops).
    return optimizer._on_before_step, optimizer._on_after_step


def add_logged_steps(trainer: L.Trainer, n: int) -> None:
    """Advances the step that loggers record metrics at by n. Lightning adds 1 per training
    batch; a batch that took several optimizer steps adds the others here, so that logged
    steps count optimizer steps."""
    # Checked against Lightning 2.6.6: _TrainingEpochLoop._batches_that_stepped, read by the
    # logger connector (and saved in checkpoints' loop state).
    trainer.fit_loop.epoch_loop._batches_that_stepped += n


def checkpoint_connector(trainer: L.Trainer) -> Any:
    """The trainer's checkpoint connector, which makes and restores checkpoint dicts."""
    # Checked against Lightning 2.6.6: Trainer._checkpoint_connector (_CheckpointConnector),
    # the connector that Trainer.save_checkpoint dumps through.
    return trainer._checkpoint_connector


def dump_checkpoint(trainer: L.Trainer, weights_only: bool) -> dict[str, Any]:
    """The checkpoint that Trainer.save_checkpoint would write now, as a dict, not written."""
    return checkpoint_connector(trainer).dump_checkpoint(weights_only)


def running_hook(trainer: L.Trainer) -> str | None:
    """The name of the hook Lightning is running now (on the module or on a callback)."""
    # Checked against Lightning 2.6.6: LightningModule._current_fx_name, set by
    # trainer/call.py around every module and callback hook.
    return trainer.lightning_module._current_fx_name


def training_moment(trainer: L.Trainer) -> tuple[Any, ...]:
    """Identifies the point of training now: the hook being run and Lightning's progress
    counters. It is the same for callbacks called one after another in one hook (nothing
    else changes the trainer's state between them), and differs between any two hooks."""
    fit = trainer.fit_loop
    return (
        running_hook(trainer),
        trainer.global_step,
        fit.epoch_progress.total.processed,
        fit.epoch_progress.total.completed,
        fit.epoch_loop.batch_progress.total.completed,
        fit.epoch_loop.val_loop.batch_progress.total.completed,
    )


def wandb_init_args(logger: WandbLogger) -> dict[str, Any]:
    """The keyword arguments `logger` will pass to wandb.init (editable until its run starts)."""
    # Checked against Lightning 2.6.6: WandbLogger._wandb_init, passed whole to wandb.init.
    return logger._wandb_init


def wandb_run(logger: WandbLogger) -> Any:
    """The logger's wandb run, or None if it never started (reading `experiment` would start
    one)."""
    # Checked against Lightning 2.6.6: WandbLogger._experiment, None until `experiment` is read.
    return logger._experiment


class CSVLoggerWriter(CSVLogger):
    """Lightning's CSVLogger with its writer (`experiment`) made by `make_writer`."""

    def make_writer(self, log_dir: str) -> ExperimentWriter:
        raise NotImplementedError

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        # Checked against Lightning 2.6.6: CSVLogger.experiment caches its writer in
        # _experiment and makes the log folder through the logger's filesystem, _fs.
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = self.make_writer(self.log_dir)
        return self._experiment


def step_wrappers_idle(trainer: L.Trainer) -> bool:
    """Whether Lightning's per-step wrappers (manual_backward, LightningOptimizer.step) would do
    nothing but count the step for this trainer: one process, no gradient scaler, no profiler,
    and no callback or module implementing a hook they call (STEP_HOOKS, `backward`). Then a
    manual step may call loss.backward() and the optimizer itself, saving ~0.1 ms of hook
    dispatch per step (the cost of a small network's whole step is ~1.5 ms on a CPU core)."""
    module = trainer.lightning_module
    precision = trainer.precision_plugin
    plain_precision = type(precision) is Precision or (
        type(precision) is MixedPrecision and precision.scaler is None
    )
    if not (
        plain_precision
        and type(trainer.strategy) is SingleDeviceStrategy
        and isinstance(trainer.profiler, PassThroughProfiler)
        and not is_overridden("backward", module)
    ):
        return False
    return not any(
        is_overridden(hook, module) or any(is_overridden(hook, cb) for cb in trainer.callbacks)
        for hook in STEP_HOOKS
    )


class ModelCheckpointSteps(ModelCheckpoint):
    """Lightning's ModelCheckpoint with the private steps that a subclass changes renamed as
    public hooks (each defaulting to Lightning's own step): `candidates` (the metrics a
    checkpoint is judged and named by), `save_ranked` (keep the checkpoint if it ranks in the
    top k), `save_file` (save one checkpoint), `remove_file`, and `mark_saved` (what saving
    records for the next decisions)."""

    # Checked against Lightning 2.6.6: the private methods overridden below, and the two
    # attributes mark_saved sets, which ModelCheckpoint._save_checkpoint sets after saving.

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        return self.candidates(trainer)

    def candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        return super()._monitor_candidates(trainer)

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        self.save_ranked(trainer, monitor_candidates)

    def save_ranked(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self.save_file(trainer, filepath)

    def save_file(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)

    def mark_saved(self, trainer: L.Trainer, filepath: str) -> None:
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self.remove_file(trainer, filepath)

    def remove_file(self, trainer: L.Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)


def _uses(function: Callable, *attributes: str) -> bool:
    """Whether `function`'s own code uses (sets or reads) every one of these attribute names."""
    names = inspect.unwrap(function).__code__.co_names
    return all(attribute in names for attribute in attributes)


def _internals() -> dict[str, Callable[[], bool]]:
    """Each internal used above, named as in Lightning's source, with a check that it exists."""
    # Private modules too: imported here, so that their moving is reported like the rest.
    from lightning.pytorch.loops.optimization.manual import _ManualOptimization
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
    from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

    counters = ("_on_before_step", "_on_after_step")
    saved = ("_last_global_step_saved", "_last_checkpoint_saved")
    steps = ("_monitor_candidates", "_save_topk_checkpoint", "_save_checkpoint")
    steps += ("_remove_checkpoint",)
    return {
        "LightningOptimizer._on_before_step/_on_after_step, installed by "
        "_ManualOptimization.on_run_start": lambda: (
            _uses(LightningOptimizer.__init__, *counters)
            and _uses(_ManualOptimization.on_run_start, *counters)
        ),
        "_TrainingEpochLoop._batches_that_stepped": lambda: _uses(
            _TrainingEpochLoop.__init__, "_batches_that_stepped"
        ),
        "Trainer._checkpoint_connector.dump_checkpoint": lambda: (
            _uses(L.Trainer.__init__, "_checkpoint_connector")
            and callable(getattr(_CheckpointConnector, "dump_checkpoint", None))
        ),
        "LightningModule._current_fx_name": lambda: _uses(
            L.LightningModule.__init__, "_current_fx_name"
        ),
        "ModelCheckpoint._monitor_candidates/_save_topk_checkpoint/_save_checkpoint/"
        "_remove_checkpoint": lambda: all(
            callable(getattr(ModelCheckpoint, name, None))
            for name in (*steps, "_remove_checkpoint")
        ),
        "ModelCheckpoint._last_global_step_saved/_last_checkpoint_saved": lambda: (
            _uses(ModelCheckpoint.__init__, *saved)
            and _uses(ModelCheckpoint._save_checkpoint, *saved)
        ),
        "WandbLogger._wandb_init/_experiment": lambda: _uses(
            WandbLogger.__init__, "_wandb_init", "_experiment"
        ),
        "CSVLogger._experiment/_fs": lambda: _uses(FabricCSVLogger.__init__, "_experiment", "_fs"),
    }


def check_internals() -> None:
    """Raises ImportError naming every internal used here that the installed Lightning lacks."""
    try:
        missing = [name for name, present in _internals().items() if not present()]
    except (ImportError, AttributeError) as e:
        missing = [f"{e}"]
    if missing:
        raise ImportError(
            f"nnlab relies on Lightning internals that lightning {L.__version__} "
            f"no longer has: {'; '.join(missing)}. They were checked against Lightning "
            f"{CHECKED}: install that version, or adapt src/nnlab/compat.py."
        )


check_internals()
