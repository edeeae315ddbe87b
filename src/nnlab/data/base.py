"""The datamodule interface every data set implements.

A subclass declares its `task` and loads raw tensors (`load`); the base class does the rest the
same way for every data set: seeded train/val(/test) splits, normalization statistics from the
training split only, the `spec` the model is sized from, and the batch loaders.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch

from nnlab.core import ConfigError, is_int
from nnlab.data.arrays import checked_splits
from nnlab.data.loaders import BatchGroup, BatchOrder, HostBatches, Normalize, TensorBatches
from nnlab.data.spec import DataSpec
from nnlab.data.splits import Split, check_folds, seeded_splits

NORMALIZE = ("global", "feature", "none")
# The key of a datamodule's state in checkpoints (`state_dict`) that holds its `preprocessing()`.
PREPROCESSING_KEY = "nnlab_preprocessing"
# resident=auto keeps the splits on a GPU when together they take at most this share of its
# free memory, leaving the rest to activations, the optimizer and other processes.
RESIDENT_GPU_SHARE = 0.5


class ArrayDataModule(L.LightningDataModule):
    """A data set small enough to hold in memory as one tensor per split.

    Args:
        batch_size: training batch size: an int (1 = per-sample SGD) or "full" (the whole
            training split in one batch: full-batch gradient descent).
        val_fraction: share of the training data held out for validation.
        test_fraction: share held out for testing, when the source has no test split.
        normalize: "global" (one mean/std over all inputs: images), "feature" (per input
            column: tabular data) or "none"; statistics come from the training split only.
        seed: seeds the splits and the per-epoch shuffling.
        eval_batch_size: batch size for validation and test (it does not change results).
        resident: True holds each split on the training device once and batches it there
            (TensorBatches); False feeds batches from host memory through a DataLoader
            (HostBatches); "auto" is True on the CPU, and on a GPU when the splits fit
            RESIDENT_GPU_SHARE of its free memory.
        folds: k-fold cross-validation: null (off) or K >= 2; the training data (less the
            test split, made as without folds) is cut into K seeded folds, stratified by class
            for classification, and fold `fold` (0..K-1) is the val split (val_fraction unused).
        fold: which fold validates (with `folds`).

    `resident` comes from the speed group (speed.resident, given by train.py), which
    nnlab.validation checked: it is not checked again here.
    """

    task: ClassVar[str]

    def __init__(
        self,
        batch_size: int | str = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        normalize: str = "global",
        seed: int = 0,
        eval_batch_size: int = 1024,
        resident: bool | str = "auto",
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__()
        check_folds(folds, fold)
        self.folds, self.fold = folds, fold
        if not (batch_size == "full" or (is_int(batch_size) and batch_size >= 1)):
            raise ConfigError(
                f"data.batch_size must be a positive int or 'full', got {batch_size!r}"
            )
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ConfigError(f"data.{name} must be in (0, 1), got {value}")
        if normalize not in NORMALIZE:
            raise ConfigError(
                f"data.normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}"
            )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.normalize, self.seed, self.resident = normalize, seed, resident
        # Raw splits as loaded (uint8 images stay uint8); loaders normalize batches on the fly.
        self.splits: dict[str, Split] = {}
        self.normalizer: Normalize | None = None
        # The training split's normalization statistics (mean, std), for `preprocessing()`.
        self.statistics: tuple[torch.Tensor, torch.Tensor] | None = None
        # The splits' copies on the training device, made once: {split: (device, x, y)}.
        self._on_device: dict[str, tuple[torch.device, torch.Tensor, torch.Tensor]] = {}
        self.spec: DataSpec | None = None

    # -- what a subclass provides ------------------------------------------------------------
    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        """Raw splits ("train"; "val" and "test" where the source has them) and class names.

        Inputs have shape (N, *input_shape); targets are (N,) or (N, k) for regression, and
        class indices (N,) for classification. Numpy arrays, tensors or lists of any real
        dtype, and class names of any type, will do: `setup` converts and checks them once
        (nnlab.data.arrays.checked_splits).
        """
        raise NotImplementedError

    def describe_source(self) -> str:
        """The data set's name in error messages: its class, as a config's `_target_` names it."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def corrupt_train(self, train: Split) -> Split:
        """The training split as trained on, after the seeded split: here unchanged; a subclass
        may corrupt it (e.g. outlier targets) while validation and test stay clean."""
        return train

    # -- the same for every data set ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw, class_names = checked_splits(self.load(), self.task, self.describe_source())
        # Classes stratify the k-fold cut (data.folds): each fold holds them in proportion.
        stratify = self.task != "regression"
        splits = seeded_splits(
            raw, self.val_fraction, self.test_fraction, self.seed, self.folds, self.fold, stratify
        )
        train = splits["train"] = self.corrupt_train(splits["train"])
        mean, std = self._statistics(train[0])
        self.statistics = None if self.normalize == "none" else (mean, std)
        self.normalizer = None if self.normalize == "none" else Normalize.from_stats(mean, std)
        self.splits = splits
        y = train[1]  # (N,) scalar targets or class labels, (N, k) k regression targets
        num_targets = 1 if y.dim() == 1 else y.shape[1]
        self.spec = DataSpec(self.task, tuple(train[0].shape[1:]), num_targets, class_names)

    # -- what predict.py needs, saved in checkpoints --------------------------------------------
    def preprocessing(self) -> dict[str, Any]:
        """How a raw input becomes what the model sees, as plain data (lists, floats, str), so a
        checkpoint holding it is read with weights only: {"kind": "array", "normalize": {"mean",
        "std"} or None, "image": {"size", "grayscale", "range"} or None}. `image` is there for
        square inputs of 1 or 3 channels: an image file, decoded to that size and mode
        (nnlab.data.images.decode_image), has its 0..255 grey levels mapped onto `range`, the
        value range of the stored training inputs ([0, 255] for uint8 pixels)."""
        if self.spec is None:
            self.setup()
        stats = self.statistics
        normalize = None if stats is None else {"mean": stats[0].tolist(), "std": stats[1].tolist()}
        return {"kind": "array", "normalize": normalize, "image": self._image_format()}

    def _image_format(self) -> dict[str, Any] | None:
        """The image entry of `preprocessing()` (None: the inputs are not square images)."""
        shape = self.spec.input_shape if self.spec is not None else ()
        if len(shape) != 3 or shape[0] not in (1, 3) or shape[1] != shape[2]:
            return None
        x = self.splits["train"][0]
        low, high = (0.0, 255.0) if x.dtype == torch.uint8 else (float(x.min()), float(x.max()))
        return {"size": shape[1], "grayscale": shape[0] == 1, "range": [low, high]}

    def state_dict(self) -> dict[str, Any]:
        """What Lightning saves in checkpoints under this class's name: the preprocessing."""
        return {PREPROCESSING_KEY: self.preprocessing()}

    def _statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        if self.normalize == "none":
            return torch.zeros(()), torch.ones(())
        if self.normalize == "global":
            return x.mean(), x.std().clamp_min(1e-8)
        std = x.std(dim=0)
        # A constant column carries no information; dividing it by 1 keeps it at 0.
        return x.mean(dim=0), torch.where(std > 1e-8, std, torch.ones_like(std))

    def _placement(self) -> tuple[torch.device, int, int]:
        """(training device, number of ranks, this rank), from the attached Trainer."""
        trainer = self.trainer
        if trainer is None:
            return torch.device("cpu"), 1, 0
        return trainer.strategy.root_device, trainer.world_size, trainer.global_rank

    def is_resident(self, device: torch.device) -> bool:
        """Whether the splits are held on `device` (see `resident`)."""
        if self.resident != "auto":
            return bool(self.resident)
        if device.type != "cuda":
            return True  # the splits are in this memory already: batch them in place
        size = sum(x.nbytes + y.nbytes for x, y in self.splits.values())
        free, _ = torch.cuda.mem_get_info(device)
        return size <= RESIDENT_GPU_SHARE * free

    def _device_split(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The split on `device`, copied there once (on the CPU: the split itself)."""
        held = self._on_device.get(split)
        if held is None or held[0] != device:
            x, y = self.splits[split]
            held = (device, x.to(device), y.to(device))
            self._on_device[split] = held  # replaces a copy on another device
        return held[1], held[2]

    def _loader(self, split: str, train: bool) -> TensorBatches | HostBatches:
        if not self.splits:
            self.setup()
        n = len(self.splits[split][0])
        if train:
            size = n if self.batch_size == "full" else self.batch_size
        else:
            size = max(self.eval_batch_size, 1)
        device, replicas, rank = self._placement()
        # Training pads shards to equal length (DDP steps together); evaluation counts each once.
        order = BatchOrder(train, self.seed, replicas, rank, pad=train)
        if self.is_resident(device):
            x, y = self._device_split(split, device)
            norm = None if self.normalizer is None else self.normalizer.to(device)
            return TensorBatches(x, y, size, order, normalize=norm)
        x, y = self.splits[split]
        return HostBatches(
            x, y, size, order, normalize=self.normalizer, pin_memory=device.type == "cuda"
        )

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """Lightning's hook moving each batch to the training device. A batch of this class's
        loaders (an (x, y) pair, or a BatchGroup of them) has all its tensors on one device: if
        it is `device`, skipping Lightning's walk over the batch saves ~50 µs per group.
        Anything else goes to Lightning (which moves a BatchGroup with its `to`)."""
        if isinstance(batch, BatchGroup):
            on = batch.device
        elif isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
            on = batch[0].device
        else:
            on = None
        if on == device:
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> TensorBatches | HostBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches | HostBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatches | HostBatches:
        return self._loader("test", train=False)
