"""In-memory batch iteration: a split held as one tensor, shuffled by one permutation per
epoch and sliced into batches, with no per-sample Python and no worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class EpochPermutation:
    """Shuffling that is a function of (seed, epoch), like DistributedSampler's.

    Lightning calls `set_epoch` on a loader's `sampler` at each epoch start, so runs are
    reproducible and a resumed run sees the same order as an uninterrupted one.
    """

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, device: torch.device) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).to(device)


class TensorBatches:
    """Iterates (x, y) batches over tensors held in memory."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.sampler = EpochPermutation(len(x), shuffle, seed)
        # Lightning inspects loaders like DataLoaders: it finds `sampler` and calls set_epoch.
        self.batch_sampler = None

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.sampler.indices(self.x.device)
        for start in range(0, len(self.x), self.batch_size):
            if order is None:
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                yield self.x[idx], self.y[idx]
