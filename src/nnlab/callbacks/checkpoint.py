"""Checkpoints taken once per moment and written in batches: Lightning's ModelCheckpoint, minus
the per-epoch file writes and the second dump.

Serializing and writing a checkpoint costs milliseconds (4.2 ms for the MNIST MLP with Adam on a
CPU core, measured; on a GPU each tensor is also copied to the host first); best and last
together cost as much as a whole epoch of steps when an epoch is 50 replayed CUDA graphs. Here
each checkpoint can be kept in memory when it is taken (its tensors copied on their own device:
no host sync, no serialization), files being written at most every `write_every_s` seconds, and
whenever fitting ends or fails.

Checkpoint callbacks that save at the same moment (best.ckpt and last.ckpt at an epoch's end)
share one dump of the trainer's state, each with the checkpoint callbacks' own states as they are
when it is taken: the same contents as separate dumps, at the cost of one. With buffering, the
dump is taken before the monitored value is compared with the best one: on a GPU that comparison
is the epoch boundary's first host read, which waits for the queued steps, and the GPU idles
through whatever host work follows it; the dump then happens while the GPU is still busy.

Files are written atomically (nnlab.checkpoints.write_atomically): a killed process never leaves
a half-written checkpoint, nor a partial temporary file anywhere. A fit resumed in a new run
folder keeps the best checkpoint so far (copied over) and its score.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nnlab.checkpoints import is_url, moved_state, remove_leftovers, save_atomically
from nnlab.compat import ModelCheckpointSteps, dump_checkpoint, training_moment
from nnlab.core import ConfigError

log = logging.getLogger(__name__)


class BufferedCheckpoint(ModelCheckpointSteps):
    """ModelCheckpoint (same arguments, same files, same choice of what to keep) that writes its
    files at most every `write_every_s` seconds; 0 writes each one when it is taken.

    Pending checkpoints are written at the first checkpoint due after the interval, at the end
    of fitting (before train.py evaluates best.ckpt), and when fitting raises or is interrupted.
    A process killed outright (SIGKILL, power loss) loses at most `write_every_s` seconds of
    checkpoints. Keeping one costs a copy of the model and optimizer state on their device.
    """

    def __init__(self, *args: Any, write_every_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if write_every_s < 0:
            raise ConfigError(f"write_every_s must be >= 0 seconds, got {write_every_s}")
        self.write_every_s = write_every_s
        self._pending: dict[str, dict[str, Any]] = {}  # file path -> checkpoint, in order taken
        self._written_at = time.monotonic()
        # (moment, options) -> the dump taken then, shared with the trainer's other checkpoint
        # callbacks (see _moment_dump).
        self._dump: tuple[tuple, dict[str, Any]] | None = None
        # Set by setup for load_state_dict, which is called without the trainer.
        self._fitting, self._global_zero = True, True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._fitting, self._global_zero = stage == "fit", trainer.is_global_zero
        # Plain local writes (Lightning's default writer, for every strategy saving through
        # it) become atomic ones.
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if self._fitting and self._global_zero and self.dirpath and not is_url(self.dirpath):
            remove_leftovers(self.dirpath)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the state saved in the checkpoint a fit resumes from. Saved in another folder
        (resuming in a new run folder), its files are copied here and named here first
        (nnlab.checkpoints.moved_state), where Lightning would keep only best_model_path: the
        next epoch would then count as the best whatever its score. Loading a checkpoint to
        validate or test it leaves this callback's state as the fit left it."""
        if not self._fitting:
            return
        saved_in = state_dict.get("dirpath")
        if saved_in and self.dirpath and saved_in != self.dirpath:
            state_dict, lost = moved_state(
                state_dict, self.dirpath, self.mode, copy=self._global_zero
            )
            if lost and self.monitor and self._global_zero:
                log.warning(
                    "resuming in a new folder, %s could not be copied from %s: it is gone. "
                    "This run's best checkpoint is the best of the epochs from here on (and "
                    "of the earlier files left), not of every epoch: its test metrics may "
                    "differ from an uninterrupted run's",
                    ", ".join(Path(path).name for path in lost),
                    saved_in,
                )
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        self._written_at = time.monotonic()
        self._dump = None

    def candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        if self.monitor is not None:
            return super().candidates(trainer)
        # Without a monitor the values only fill in file names: no deep copy (Lightning's
        # keeps the monitored value safe from later in-place updates). Called after the
        # boundary's first host read, it is time a GPU would idle.
        candidates = dict(trainer.callback_metrics)
        for key, now in (("epoch", trainer.current_epoch), ("step", trainer.global_step)):
            logged = candidates.get(key)  # as Lightning's: a logged value, as an int
            is_tensor = isinstance(logged, torch.Tensor)
            candidates[key] = logged.int() if is_tensor else torch.tensor(now)
        return candidates

    def save_ranked(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        # Before the comparison (its host read), see above. Wasted in an epoch that neither
        # improves nor saves another checkpoint (such as last.ckpt).
        if self.write_every_s and self.save_top_k and self.monitor in monitor_candidates:
            self._moment_dump(trainer)
        super().save_ranked(trainer, monitor_candidates)

    def save_file(self, trainer: L.Trainer, filepath: str) -> None:
        with trainer.profiler.profile("save_checkpoint"):  # as Trainer.save_checkpoint
            self._take(trainer, filepath)
        self.mark_saved(trainer, filepath)
        if not self.write_every_s:
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.after_save_checkpoint(proxy(self))
            return
        due = time.monotonic() - self._written_at >= self.write_every_s
        # Every rank must take the same decision: writing ends in a barrier.
        if trainer.strategy.broadcast(due):
            self.write_all_pending(trainer)

    def _take(self, trainer: L.Trainer, filepath: str) -> None:
        """Takes the checkpoint that Trainer.save_checkpoint would write now, and writes it or
        (buffering) keeps it pending."""
        checkpoint = dict(self._moment_dump(trainer))
        if "callbacks" in checkpoint:  # not with save_weights_only
            # The checkpoint callbacks' states as they are now (this one's names this file).
            states = {cb.state_key: cb.state_dict() for cb in trainer.checkpoint_callbacks}
            if self.write_every_s:
                states = _copy_tensors(states)  # state_dict() returns live objects
            checkpoint["callbacks"] = {**checkpoint["callbacks"], **states}
        if self.write_every_s:
            self._pending[filepath] = checkpoint
        else:
            trainer.strategy.save_checkpoint(checkpoint, filepath)
            trainer.strategy.barrier("BufferedCheckpoint._take")

    def _moment_dump(self, trainer: L.Trainer) -> dict[str, Any]:
        """The trainer's checkpoint dump for this moment: made by the first checkpoint callback
        that asks (copied on the device when buffering), then shared with the others."""
        # The moment identifies the hook and progress counters: the same for checkpoint
        # callbacks called one after another in one hook (Lightning runs them last, in a row).
        key = (training_moment(trainer), self.save_weights_only, bool(self.write_every_s))
        for peer in trainer.checkpoint_callbacks:
            if isinstance(peer, BufferedCheckpoint) and peer._dump and peer._dump[0] == key:
                return peer._dump[1]
        dump = dump_checkpoint(trainer, self.save_weights_only)
        if self.write_every_s:
            dump = _copy_tensors(dump)
        self._dump = (key, dump)
        return dump

    def remove_file(self, trainer: L.Trainer, filepath: str) -> None:
        # Superseded before it was written: drop it (and any older file of that name).
        self._pending.pop(filepath, None)
        super().remove_file(trainer, filepath)

    def write_pending(self, trainer: L.Trainer) -> None:
        """Writes every pending checkpoint (rank 0 writes; all ranks wait for it)."""
        pending, self._pending = self._pending, {}
        self._dump = None  # its tensors may be freed once written
        for filepath, checkpoint in pending.items():
            trainer.strategy.save_checkpoint(checkpoint, filepath)
        trainer.strategy.barrier("BufferedCheckpoint.write_pending")
        self._written_at = time.monotonic()
        if pending and trainer.is_global_zero:
            for logger in trainer.loggers:  # e.g. W&B's log_model reads the files
                logger.after_save_checkpoint(proxy(self))

    def write_all_pending(self, trainer: L.Trainer) -> None:
        """Writes the pending checkpoints of every BufferedCheckpoint of the trainer, those with a
        monitor (best.ckpt) first. A last.ckpt names the best checkpoint and its score: written
        alone, it could name a best.ckpt still pending, and a run resumed from it after a kill
        would test an older best.ckpt under the newer one's score."""
        for peer in _peers(trainer):
            peer.write_pending(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.write_all_pending(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        super().on_exception(trainer, pl_module, exception)
        # Only rank 0 writes, and without a barrier: other ranks may be gone.
        for peer in _peers(trainer):
            pending, peer._pending = peer._pending, {}
            if trainer.is_global_zero:
                for filepath, checkpoint in pending.items():
                    trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, filepath)


def _peers(trainer: L.Trainer) -> list[BufferedCheckpoint]:
    """The trainer's BufferedCheckpoints, those with a monitor first (see write_all_pending)."""
    peers = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, BufferedCheckpoint)]
    return sorted(peers, key=lambda peer: peer.monitor is None)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing local files atomically
    (nnlab.checkpoints.save_atomically) rather than through fsspec, whose transaction writes
    each file whole in $TMPDIR first and leaves it there when the process is killed. Remote
    paths and storage options go to Lightning's writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or is_url(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            save_atomically(checkpoint, str(path))


def _copy_tensors(obj: Any) -> Any:
    """obj with every tensor in it replaced by a copy on the same device. Dicts keep their type
    and attributes (a state_dict's `_metadata`); lists and tuples are rebuilt; anything else is
    kept as it is (a checkpoint holds only numbers, strings and configs besides tensors)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        copied = copy.copy(obj)
        for key, value in obj.items():
            copied[key] = _copy_tensors(value)
        return copied
    if isinstance(obj, list):
        return [_copy_tensors(value) for value in obj]
    if isinstance(obj, tuple):
        values = [_copy_tensors(value) for value in obj]
        return type(obj)(*values) if hasattr(obj, "_fields") else type(obj)(values)
    return obj
