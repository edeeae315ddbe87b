"""Lightning's internals that the fast path and the loggers rely on (nnlab.compat, the one
place that touches them): each exists on the installed Lightning and behaves as assumed. A Lightning
upgrade that removes or changes one fails here, loudly, instead of training slower or logging
at the wrong steps."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from torch.utils.data import DataLoader, TensorDataset

from nnlab import compat as internals
from nnlab.compat import (
    STEP_HOOKS,
    ModelCheckpointSteps,
    add_logged_steps,
    dump_checkpoint,
    running_hook,
    step_counters,
    step_wrappers_idle,
    training_moment,
    wandb_init_args,
)

from .helpers.fitting import quiet_trainer

BATCHES = 4  # per epoch


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * BATCHES, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


class Manual(L.LightningModule):
    """A linear regression under manual optimization; `each_batch(self)` runs in every
    training_step after its ordinary step, and what it returns is kept in `seen`."""

    def __init__(self, each_batch=None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 1)
        self.automatic_optimization = False
        self.each_batch, self.seen = each_batch, []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        if self.each_batch is not None:
            self.seen.append(self.each_batch(self))

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(module: L.LightningModule, epochs: int = 2, **options) -> L.Trainer:
    trainer = quiet_trainer(max_epochs=epochs, accelerator="cpu", **options)
    trainer.fit(module, loader(), loader())
    return trainer


# -- existence -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(internals._internals()))
def test_every_internal_exists_on_the_installed_lightning(name):
    assert internals._internals()[name](), name


def test_a_missing_internal_fails_loudly_naming_it_and_the_lightning_version(monkeypatch):
    internals.check_internals()  # the installed Lightning has them all
    monkeypatch.delattr(ModelCheckpoint, "_save_topk_checkpoint")
    monkeypatch.setattr(_TrainingEpochLoop, "__init__", lambda self, *args, **kwargs: None)
    with pytest.raises(ImportError) as raised:
        internals.check_internals()
    message = str(raised.value)
    assert "_TrainingEpochLoop._batches_that_stepped" in message
    assert "ModelCheckpoint._monitor_candidates" in message
    assert f"lightning {L.__version__}" in message and internals.CHECKED in message


# -- behaviour -------------------------------------------------------------------------------
def test_step_counters_count_a_step_taken_without_the_optimizer_wrapper():
    def extra_step(module):
        before, after = step_counters(module.optimizers())
        counted = module.trainer.global_step
        before()
        module.optimizers().optimizer.step()  # the step itself, not through the wrapper
        after()
        return module.trainer.global_step - counted

    module = Manual(extra_step)
    trainer = fit(module)
    assert module.seen == [1] * 2 * BATCHES  # each extra step counted once
    assert trainer.global_step == 2 * 2 * BATCHES  # the wrapper's steps and the extra ones


def logged_steps(trainer: L.Trainer) -> list[int]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row["train_loss"]]


def test_added_logged_steps_move_the_step_loggers_record_metrics_at(tmp_path):
    def logger(name: str) -> dict:
        return {"logger": CSVLogger(tmp_path, name=name), "log_every_n_steps": 1}

    plain = fit(Manual(), **logger("plain"))
    moved = fit(Manual(lambda module: add_logged_steps(module.trainer, 2)), **logger("moved"))
    assert logged_steps(plain) == list(range(2 * BATCHES))
    # Each training step adds 2 to the step its metrics are recorded at (Lightning records them
    # after the step), besides the 1 Lightning adds per batch.
    assert logged_steps(moved) == [3 * i + 2 for i in range(2 * BATCHES)]


def test_dump_checkpoint_is_what_save_checkpoint_writes(tmp_path):
    module = Manual()
    trainer = fit(module)
    trainer.save_checkpoint(tmp_path / "saved.ckpt")
    written = torch.load(tmp_path / "saved.ckpt", weights_only=False)
    dumped = dump_checkpoint(trainer, weights_only=False)
    assert set(dumped) == set(written) and dumped["global_step"] == written["global_step"]
    for name, value in written["state_dict"].items():
        assert torch.equal(dumped["state_dict"][name], value)
    assert "optimizer_states" not in dump_checkpoint(trainer, weights_only=True)


class Moments(L.Callback):
    """Records the running hook and the training moment in two hooks of each epoch."""

    def __init__(self) -> None:
        self.hooks, self.moments = [], []

    def _record(self, trainer) -> None:
        self.hooks.append(running_hook(trainer))
        self.moments.append(training_moment(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record(trainer)


def test_running_hook_names_the_hook_and_moments_tell_hooks_apart():
    moments = Moments()
    fit(Manual(), callbacks=[moments], num_sanity_val_steps=0)
    assert moments.hooks == ["on_validation_end", "on_train_epoch_end"] * 2
    assert len(set(moments.moments)) == 4  # two hooks per epoch, two epochs: all different


class Recording(ModelCheckpointSteps):
    """ModelCheckpointSteps recording which of its hooks Lightning's ModelCheckpoint calls."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []

    def candidates(self, trainer):
        self.calls.append("candidates")
        return super().candidates(trainer)

    def save_ranked(self, trainer, monitor_candidates) -> None:
        self.calls.append("save_ranked")
        super().save_ranked(trainer, monitor_candidates)

    def save_file(self, trainer, filepath) -> None:
        self.calls.append("save_file")
        super().save_file(trainer, filepath)

    def remove_file(self, trainer, filepath) -> None:
        self.calls.append("remove_file")
        super().remove_file(trainer, filepath)


def test_model_checkpoint_calls_the_private_steps_that_the_adapter_renames(tmp_path):
    options = {"dirpath": tmp_path, "monitor": "val_loss", "save_top_k": 1, "filename": "{epoch}"}
    recording = Recording(**options)
    fit(Manual(), epochs=3, callbacks=[recording], enable_checkpointing=True)
    assert {"candidates", "save_ranked", "save_file", "remove_file"} <= set(recording.calls)
    assert Path(recording.best_model_path).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(recording.best_model_path).name]


def test_mark_saved_records_what_lightnings_save_records(tmp_path):
    # Lightning's own save and mark_saved set the same two attributes, to the same values.
    ours, theirs = ModelCheckpointSteps(dirpath=tmp_path), ModelCheckpoint(dirpath=tmp_path)
    trainer = fit(Manual(), epochs=1, callbacks=[ours, theirs], enable_checkpointing=True)
    ours.mark_saved(trainer, theirs._last_checkpoint_saved)
    assert theirs._last_global_step_saved == ours._last_global_step_saved == trainer.global_step
    assert ours._last_checkpoint_saved == theirs._last_checkpoint_saved != ""


def test_wandb_init_args_are_what_the_logger_passes_to_wandb_init(monkeypatch):
    import wandb

    passed = {}

    def init(**kwargs):
        passed.update(kwargs)
        return object()

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb, "run", None)
    logger = WandbLogger(project="nnlab-test", anonymous=False)
    args = wandb_init_args(logger)
    assert args["project"] == "nnlab-test" and "anonymous" in args
    args.pop("anonymous")
    assert logger.experiment is not None  # starts the (fake) run
    assert passed["project"] == "nnlab-test" and "anonymous" not in passed


# Hooks called while RECORDING["on"]: (class, hook name).
RECORDING: dict = {"on": False, "calls": []}


def recorder(name: str):
    def hook(self, *args, **kwargs):
        if RECORDING["on"]:
            RECORDING["calls"].append((type(self).__name__, name))
        return getattr(super(type(self), self), name)(*args, **kwargs)

    return hook


class AllHooks(L.Callback):
    """A callback implementing every hook of Callback, recording the calls."""


class ManualAllHooks(Manual):
    """Manual, implementing every hook of LightningModule (and `backward`), recording them."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        RECORDING["on"] = True
        self.manual_backward(loss)
        optimizer.step()
        RECORDING["on"] = False


for _name in [n for n in dir(L.Callback) if n.startswith("on_")]:
    setattr(AllHooks, _name, recorder(_name))
for _name in [n for n in dir(L.LightningModule) if n.startswith("on_")] + ["backward"]:
    setattr(ManualAllHooks, _name, recorder(_name))


def test_step_wrappers_call_exactly_the_hooks_that_decide_whether_they_are_idle():
    RECORDING["calls"] = []
    trainer = quiet_trainer(max_epochs=1, accelerator="cpu", callbacks=[AllHooks()])
    trainer.fit(ManualAllHooks(), loader())
    calls = set(RECORDING["calls"])
    assert {name for owner, name in calls if owner == "AllHooks"} == set(STEP_HOOKS)
    assert {name for owner, name in calls if owner == "ManualAllHooks"} == {*STEP_HOOKS, "backward"}


@pytest.mark.parametrize(
    ("callbacks", "options", "idle"),
    [
        ([], {}, True),
        ([AllHooks()], {}, False),
        ([], {"profiler": "simple"}, False),
        ([], {"precision": "bf16-mixed"}, True),  # no gradient scaler
    ],
)
def test_step_wrappers_are_idle_only_where_no_hook_or_plugin_acts(callbacks, options, idle):
    seen = Manual(lambda module: step_wrappers_idle(module.trainer))
    fit(seen, epochs=1, callbacks=callbacks, **options)
    assert set(seen.seen) == {idle}
