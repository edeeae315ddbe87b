"""BufferedCheckpoint: the same checkpoint files as Lightning's ModelCheckpoint, written in
batches; nothing lost when fitting ends or raises."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nnlab.callbacks.checkpoint import BufferedCheckpoint

from .fitting import quiet_trainer


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


def fit(folder: Path, write_every_s: float, extra=(), epochs: int = 4, **checkpoint) -> L.Trainer:
    L.seed_everything(0, verbose=False)
    options = {"filename": "best", "monitor": "val/loss", "mode": "min", **checkpoint}
    callbacks = [
        BufferedCheckpoint(dirpath=folder, write_every_s=write_every_s, **options),
        BufferedCheckpoint(dirpath=folder, write_every_s=write_every_s, filename="last"),
        *extra,
    ]
    trainer = quiet_trainer(max_epochs=epochs, callbacks=callbacks, enable_checkpointing=True)
    trainer.fit(Regressor(), loader(), loader())
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
