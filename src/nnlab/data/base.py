"""The datamodule interface every data set implements.

A subclass declares its `task` and loads raw tensors (`load`); the base class does the rest the
same way for every data set: seeded train/val(/test) splits, normalization statistics from the
training split only, the `spec` the model is sized from, and the batch loaders.
"""

from __future__ import annotations

from typing import ClassVar

import lightning as L
import torch

from nnlab.data.loaders import TensorBatches
from nnlab.data.spec import DataSpec

Split = tuple[torch.Tensor, torch.Tensor]
NORMALIZE = ("global", "feature", "none")


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
    ) -> None:
        super().__init__()
        if not (batch_size == "full" or (isinstance(batch_size, int) and batch_size >= 1)):
            raise ValueError(
                f"data.batch_size must be a positive int or 'full', got {batch_size!r}"
            )
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"data.{name} must be in (0, 1), got {value}")
        if normalize not in NORMALIZE:
            raise ValueError(f"data.normalize must be one of {', '.join(NORMALIZE)}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.normalize, self.seed = normalize, seed
        self.splits: dict[str, Split] = {}
        self.spec: DataSpec | None = None

    # -- what a subclass provides ------------------------------------------------------------
    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        """Raw splits ("train"; "val" and "test" where the source has them) and class names.

        Inputs are float or uint8 tensors of shape (N, *input_shape); targets are float (N,)
        or (N, k) for regression, and class indices (N,) for classification.
        """
        raise NotImplementedError

    # -- the same for every data set ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw, class_names = self.load()
        g = torch.Generator().manual_seed(self.seed)
        train, val, test = raw["train"], raw.get("val"), raw.get("test")
        if test is None:
            train, test = _split(train, self.test_fraction, g)
        if val is None:
            train, val = _split(train, self.val_fraction, g)
        mean, std = self._statistics(train[0])
        self.splits = {
            name: (((x.float() - mean) / std), y)
            for name, (x, y) in {"train": train, "val": val, "test": test}.items()
        }
        y = train[1]
        if self.task == "regression":
            num_outputs = 1 if y.dim() == 1 else y.shape[1]
        elif self.task == "binary":
            num_outputs = 1
        else:
            num_outputs = len(class_names)
        self.spec = DataSpec(self.task, tuple(train[0].shape[1:]), num_outputs, class_names)

    def _statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        if self.normalize == "none":
            return torch.zeros(()), torch.ones(())
        if self.normalize == "global":
            return x.mean(), x.std().clamp_min(1e-8)
        std = x.std(dim=0)
        # A constant column carries no information; dividing it by 1 keeps it at 0.
        return x.mean(dim=0), torch.where(std > 1e-8, std, torch.ones_like(std))

    def _loader(self, split: str, train: bool) -> TensorBatches:
        if not self.splits:
            self.setup()
        x, y = self.splits[split]
        if train:
            size = len(x) if self.batch_size == "full" else self.batch_size
        else:
            size = max(self.eval_batch_size, 1)
        return TensorBatches(x, y, size, shuffle=train, seed=self.seed)

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)


def _split(data: Split, fraction: float, g: torch.Generator) -> tuple[Split, Split]:
    """A seeded random split into (1 − fraction, fraction) parts."""
    x, y = data
    n_held = max(1, round(len(x) * fraction))
    if n_held >= len(x):
        raise ValueError(f"cannot hold out {fraction:.0%} of only {len(x)} samples")
    order = torch.randperm(len(x), generator=g)
    keep, held = order[n_held:], order[:n_held]
    return (x[keep], y[keep]), (x[held], y[held])
