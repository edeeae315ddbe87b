"""BufferedCheckpoint: the same checkpoint files as Lightning's ModelCheckpoint, written in
batches; nothing lost when fitting ends or raises."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from nnlab.callbacks import BufferedCheckpoint
from nnlab.compat import checkpoint_connector

from .helpers.fitting import quiet_trainer


class Regressor(L.LightningModule):
    """A linear regression whose validation loss is logged as val/loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


class TrainLossRegressor(Regressor):
    """The Regressor logging its epoch's train loss as train_loss (a run without validation)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)


class FilesAtEpochStart(L.Callback):
    """Records the checkpoint files on disk at each epoch start."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.seen.append(sorted(p.name for p in self.folder.glob("*.ckpt")))


class FailAtEpoch(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("stop here")


def fit(
    folder: Path,
    write_every_s: float | None,
    extra=(),
    epochs: int = 4,
    validate: bool = True,
    val_check_interval: float = 1.0,
    ckpt_path: Path | None = None,
    **checkpoint,
) -> L.Trainer:
    """Fits the Regressor with best.ckpt (by val/loss, or train_loss without validation) and
    last.ckpt callbacks: BufferedCheckpoint, or Lightning's ModelCheckpoint for None; resumed
    from `ckpt_path` if given."""
    L.seed_everything(0, verbose=False)
    monitor = "val/loss" if validate else "train_loss"
    options = {"filename": "best", "monitor": monitor, "mode": "min", **checkpoint}
    if write_every_s is None:
        make = ModelCheckpoint
    else:

        def make(**kwargs):
            return BufferedCheckpoint(write_every_s=write_every_s, **kwargs)

    callbacks = [make(dirpath=folder, **options), make(dirpath=folder, filename="last"), *extra]
    trainer = quiet_trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        enable_checkpointing=True,
        val_check_interval=val_check_interval,
    )
    module = Regressor() if validate else TrainLossRegressor()
    trainer.fit(module, loader(), loader() if validate else None, ckpt_path=ckpt_path)
    return trainer


def load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def test_buffered_files_appear_at_the_end_identical_to_immediate_writes(tmp_path):
    watch = FilesAtEpochStart(tmp_path / "buffered")
    fit(tmp_path / "buffered", write_every_s=3600, extra=[watch])
    fit(tmp_path / "direct", write_every_s=0)
    assert watch.seen == [[]] * 4  # nothing written while fitting
    for name in ("best.ckpt", "last.ckpt"):
        buffered, direct = load(tmp_path / "buffered" / name), load(tmp_path / "direct" / name)
        assert (buffered["epoch"], buffered["global_step"]) == (
            direct["epoch"],
            direct["global_step"],
        )
        for key, value in direct["state_dict"].items():
            assert torch.equal(buffered["state_dict"][key], value), (name, key)
        assert buffered["optimizer_states"][0]["state"][0]["exp_avg"].equal(
            direct["optimizer_states"][0]["state"][0]["exp_avg"]
        )
    assert load(tmp_path / "buffered" / "last.ckpt")["epoch"] == 3


def same(a, b, folders: tuple[Path, Path], where: str = "") -> None:
    """Asserts two checkpoint objects are equal, paths under folders[0] read as under [1] and
    BufferedCheckpoint's state keys as ModelCheckpoint's."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        same(list(a), list(b), folders, where)
        for (key, x), y in zip(a.items(), b.values(), strict=True):
            same(x, y, folders, f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, folders, f"{where}[{i}]")
    elif isinstance(a, str):
        a = a.replace(str(folders[0]), str(folders[1]))
        assert a.replace("BufferedCheckpoint{", "ModelCheckpoint{") == b, where
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "validation",
    [{}, {"validate": False}, {"val_check_interval": 0.5}],
    ids=["validation", "no-validation", "twice-an-epoch"],
)
@pytest.mark.parametrize("write_every_s", [0, 3600], ids=["direct", "buffered"])
def test_files_hold_what_lightnings_model_checkpoint_writes(tmp_path, write_every_s, validation):
    # One dump shared by best and last, taken before the comparison when buffering: the files
    # must still be Lightning's, byte for byte in content (callback states included).
    ours, reference = tmp_path / "ours", tmp_path / "lightning"
    # mode=max keeps the first check as the best (the loss falls): best and last differ.
    fit(ours, write_every_s, epochs=5, mode="max", **validation)
    fit(reference, None, epochs=5, mode="max", **validation)
    for name in ("best.ckpt", "last.ckpt"):
        a, b = load(ours / name), load(reference / name)
        a.pop("pytorch-lightning_version"), b.pop("pytorch-lightning_version")
        same(a, b, (ours, reference), name)
    assert (load(ours / "best.ckpt")["epoch"], load(ours / "last.ckpt")["epoch"]) == (0, 4)
    first_check = 2 if validation.get("val_check_interval") else 4  # 4 batches an epoch
    assert load(ours / "best.ckpt")["global_step"] == first_check


@pytest.mark.parametrize(
    "options",
    [
        {"filename": "{epoch}-{val/loss:.4f}", "save_top_k": 2, "mode": "max"},
        {"save_weights_only": True, "mode": "max"},
        {"every_n_epochs": 2},
        {"monitor": None, "filename": "{epoch}-{step}", "save_top_k": -1, "every_n_train_steps": 6},
    ],
    ids=["top-2-named-by-metric", "weights-only", "every-2-epochs", "all-named-by-step"],
)
@pytest.mark.parametrize("write_every_s", [0, 3600], ids=["direct", "buffered"])
def test_other_checkpoint_options_write_lightnings_files(tmp_path, write_every_s, options):
    ours, reference = tmp_path / "ours", tmp_path / "lightning"
    fit(ours, write_every_s, epochs=5, auto_insert_metric_name=False, **options)
    fit(reference, None, epochs=5, auto_insert_metric_name=False, **options)
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in ours.iterdir()) == names and len(names) >= 2
    for name in names:
        a, b = load(ours / name), load(reference / name)
        a.pop("pytorch-lightning_version"), b.pop("pytorch-lightning_version")
        same(a, b, (ours, reference), name)


def test_files_are_written_once_the_interval_has_passed(tmp_path):
    watch = FilesAtEpochStart(tmp_path)
    fit(tmp_path, write_every_s=1e-9, extra=[watch])
    assert watch.seen[0] == [] and watch.seen[1] == ["best.ckpt", "last.ckpt"]


def test_checkpoints_superseded_before_writing_are_never_written(tmp_path):
    # One file per epoch name; only the best one stays, as with ModelCheckpoint.
    trainer = fit(tmp_path, write_every_s=3600, filename="{epoch}")
    best = Path(trainer.checkpoint_callback.best_model_path)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == sorted([best.name, "last.ckpt"])
    assert load(best)["epoch"] == int(best.stem.split("=")[1])


def test_pending_checkpoints_are_written_when_fitting_raises(tmp_path):
    with pytest.raises(RuntimeError, match="stop here"):
        fit(tmp_path, write_every_s=3600, extra=[FailAtEpoch(2)])
    assert load(tmp_path / "last.ckpt")["epoch"] == 1


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="write_every_s must be >= 0"):
        BufferedCheckpoint(write_every_s=-1)


def test_copies_are_independent_and_keep_state_dict_metadata():
    from nnlab.callbacks.checkpoint import _copy_tensors

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    state = {"state_dict": net.state_dict(), "betas": (0.9, 0.999), "groups": [{"lr": 0.1}]}
    copied = _copy_tensors(state)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not torch.equal(copied["state_dict"]["0.weight"], net[0].weight)
    assert copied["state_dict"]._metadata == state["state_dict"]._metadata
    assert copied["betas"] == (0.9, 0.999) and copied["groups"] == [{"lr": 0.1}]


class EpochEndEvents(L.Callback):
    """Records, from each training epoch's end to the next epoch's first batch, the trainer's
    checkpoint dumps ("dump") and host reads of tensor values ("read": on a GPU, each waits for
    the queued steps)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch, self.events, self.recording = monkeypatch, [], False
        for name in ("__bool__", "item", "__float__"):
            self._record_reads(name)

    def _record_reads(self, name: str) -> None:
        read = getattr(torch.Tensor, name)

        def recorded(tensor, *args):
            if self.recording:
                self.events[-1].append("read")
            return read(tensor, *args)

        self.monkeypatch.setattr(torch.Tensor, name, recorded)

    def setup(self, trainer, pl_module, stage) -> None:
        connector = checkpoint_connector(trainer)
        dump = connector.dump_checkpoint

        def recorded(*args, **kwargs):
            self.events[-1].append("dump")
            return dump(*args, **kwargs)

        self.monkeypatch.setattr(connector, "dump_checkpoint", recorded)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self.events.append([])
            self.recording = True

    def on_train_batch_start(self, *args) -> None:
        self.recording = False


@pytest.mark.parametrize("mode", ["min", "max"], ids=["improving", "not-improving"])
def test_best_and_last_share_one_dump_taken_before_the_first_host_read(tmp_path, monkeypatch, mode):
    events = EpochEndEvents(monkeypatch)
    fit(tmp_path, 3600, extra=[events], validate=False, epochs=4, mode=mode)
    assert len(events.events) == 4
    for epoch_end in events.events:
        assert epoch_end.count("dump") == 1, epoch_end
        assert epoch_end.index("dump") < epoch_end.index("read"), epoch_end


def test_without_buffering_best_and_last_still_share_one_dump(tmp_path, monkeypatch):
    events = EpochEndEvents(monkeypatch)
    fit(tmp_path, 0, extra=[events], validate=False, epochs=4, mode="min")
    assert [end.count("dump") for end in events.events] == [1, 1, 1, 1]


@pytest.mark.parametrize("write_every_s", [0, 3600], ids=["direct", "buffered"])
def test_a_fit_resumed_in_a_new_folder_keeps_the_best_checkpoint_and_its_score(
    tmp_path, recwarn, write_every_s
):
    # mode=max: the first epoch stays the best (the loss falls), so that Lightning's restore in
    # a new folder, which forgets the best score, would take the first resumed epoch instead.
    straight = fit(tmp_path / "straight", write_every_s, epochs=5, mode="max")
    fit(tmp_path / "old", write_every_s, epochs=3, mode="max")
    new = tmp_path / "new"
    resumed = fit(new, write_every_s, epochs=5, mode="max", ckpt_path=tmp_path / "old/last.ckpt")
    best = resumed.checkpoint_callback
    assert best.best_model_path == str(new / "best.ckpt")
    assert best.best_model_score == straight.checkpoint_callback.best_model_score
    assert best.best_k_models == {str(new / "best.ckpt"): best.best_model_score}
    assert (load(new / "best.ckpt")["epoch"], load(new / "last.ckpt")["epoch"]) == (0, 4)
    for key, value in load(tmp_path / "straight/best.ckpt")["state_dict"].items():
        assert torch.equal(load(new / "best.ckpt")["state_dict"][key], value), key
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]
    assert load(tmp_path / "old/last.ckpt")["epoch"] == 2  # the old folder is left as it was
    # Evaluating the copied best.ckpt (its saved state names the old folder) copies nothing.
    resumed.validate(resumed.lightning_module, loader(), ckpt_path=best.best_model_path)
    assert load(new / "last.ckpt")["epoch"] == 4
    assert best.best_model_path == str(new / "best.ckpt")


def test_a_best_checkpoint_gone_from_the_old_folder_is_warned_about(tmp_path, caplog):
    fit(tmp_path / "old", 0, epochs=3, mode="max")
    (tmp_path / "old" / "best.ckpt").unlink()
    new = tmp_path / "new"
    with caplog.at_level("WARNING"):
        resumed = fit(new, 0, epochs=5, mode="max", ckpt_path=tmp_path / "old/last.ckpt")
    assert f"best.ckpt could not be copied from {tmp_path / 'old'}: it is gone" in caplog.text
    # The best of the epochs run since: the first of them, the loss falling.
    assert resumed.checkpoint_callback.best_model_path == str(new / "best.ckpt")
    assert load(new / "best.ckpt")["epoch"] == 3


def test_files_are_written_beside_their_target_never_in_tmpdir(tmp_path, monkeypatch):
    import tempfile

    from nnlab.callbacks.checkpoint import AtomicCheckpointIO

    # Lightning's own writer (fsspec's transaction) writes each file whole in $TMPDIR first,
    # where a killed process leaves it.
    made, mkstemp = [], tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: made.append(1) or mkstemp(*a, **k))
    fit(tmp_path / "lightning", None, epochs=2)
    assert len(made) == 4  # best and last, each epoch
    made.clear()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    # Left by killed writes: ours (removed as fitting starts), and files that are not ours.
    for name in (".best.ckpt.4242.tmp", ".last.ckpt.17.tmp", "notes.tmp", ".cache.tmp"):
        (folder / name).write_bytes(b"partial")
    trainer = fit(folder, 0, epochs=2)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert made == []
    assert sorted(p.name for p in folder.iterdir()) == [
        ".cache.tmp",
        "best.ckpt",
        "last.ckpt",
        "notes.tmp",
    ]


class DueAt(L.Callback):
    """Makes the last.ckpt callback's buffered files due at epoch `epoch`'s end, not the best's."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            last = next(cb for cb in trainer.checkpoint_callbacks if cb.monitor is None)
            last._written_at -= last.write_every_s


class EpochsAtEpochStart(L.Callback):
    """Records, at each epoch start, the epoch of each checkpoint file on disk (and the best
    checkpoint that last.ckpt's best callback state names)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        files = {p.name: load(p) for p in self.folder.glob("*.ckpt")}
        seen = {name: checkpoint["epoch"] for name, checkpoint in files.items()}
        if "last.ckpt" in files:
            states = files["last.ckpt"]["callbacks"].values()
            seen["named"] = next(s["best_model_path"] for s in states if s["monitor"])
        self.seen.append(seen)


def test_a_last_checkpoint_is_never_on_disk_before_the_best_one_it_names(tmp_path):
    # The loss falls: each epoch is the best, kept pending by its callback. When last.ckpt
    # is due, the best.ckpt that it names (file and score) is written with it, first.
    watch = EpochsAtEpochStart(tmp_path)
    fit(tmp_path, write_every_s=3600, extra=[DueAt(2), watch], epochs=4)
    best = str(tmp_path / "best.ckpt")
    assert watch.seen == [{}, {}, {}, {"best.ckpt": 2, "last.ckpt": 2, "named": best}]


def test_lightnings_checkpoint_state_holds_what_a_move_renames():
    # nnlab.checkpoints.moved_state renames these; a Lightning that adds a path must be seen.
    state = ModelCheckpoint(dirpath="x").state_dict()
    paths = {"best_model_path", "kth_best_model_path", "last_model_path", "best_k_models"}
    scores = {"best_model_score", "kth_value", "current_score"}
    assert set(state) == paths | scores | {"dirpath", "monitor"}
