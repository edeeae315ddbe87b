"""Batch iteration over splits held in memory as one tensor each.

Two loaders, chosen by the datamodule (`ArrayDataModule.resident`):

- `TensorBatches` holds a split on the training device (once) and yields batches by indexing it
  with one permutation per epoch: no per-sample Python, no worker processes, no per-step
  host-to-device copy. Inputs are kept as stored (uint8 images stay uint8, 4× smaller) and
  normalized on the fly, in one fused kernel per batch.
- `HostBatches` keeps the split in host memory and feeds it through a `DataLoader` that gathers
  whole batches (again no per-sample Python) into pinned memory, for data too large for the
  device's memory budget; Lightning copies each batch to the device.

Both shard training splits exactly like `torch.utils.data.DistributedSampler` under DDP (same
seed + epoch permutation, padded to equal length, rank-strided), so results do not depend on the
loader. Evaluation splits are sharded without padding: the ranks' shards hold every sample
exactly once (one rank may have one sample more), so that metrics summed over the ranks are a
single process's (see nnlab.tasks.metrics.EpochSums).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class BatchOrder:
    """Which samples a loader reads in each epoch, and in what order (see EpochPermutation).

    Args:
        shuffle: a new permutation per epoch; False reads the split in storage order.
        seed: seeds the permutations (epoch e uses seed + e).
        num_replicas, rank: DDP sharding; each rank reads its own shard.
        drop_last: drop the tail that does not divide among the ranks, instead of padding.
        pad: give every rank as many samples by repeating the first ones (training: DDP's
            gradient all-reduce needs every rank to take the same steps); False: uneven shards
            holding each sample exactly once (evaluation: metrics count no sample twice).
    """

    shuffle: bool = False
    seed: int = 0
    num_replicas: int = 1
    rank: int = 0
    drop_last: bool = False
    pad: bool = True


class EpochPermutation:
    """The indices one rank reads in one epoch, a function of (seed, epoch) alone.

    Identical to DistributedSampler's: shuffled by a CPU generator seeded with seed + epoch,
    padded by repeating the first indices to a multiple of `num_replicas` (or truncated with
    `drop_last`; or neither without `pad`: the first n % num_replicas ranks then read one
    sample more), then every `num_replicas`-th index from `rank`. Lightning calls `set_epoch`
    on a loader's `sampler` at each epoch start, so a resumed run sees the same order as an
    uninterrupted one. The permutation (n int64s, once per epoch) is made on the CPU so that it
    matches DistributedSampler bit for bit on any device, then copied to the device.
    """

    def __init__(self, n: int, order: BatchOrder) -> None:
        num_replicas, rank = order.num_replicas, order.rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.n, self.shuffle, self.seed, self.epoch = n, order.shuffle, order.seed, 0
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, order.drop_last
        if order.drop_last and n % num_replicas:
            self.num_samples = n // num_replicas
            self.total_size = self.num_samples * num_replicas
        elif order.pad:
            self.num_samples = -(-n // num_replicas)
            self.total_size = self.num_samples * num_replicas
        else:  # rank r reads indices r, r + num_replicas, ... below n
            self.num_samples = len(range(rank, n, num_replicas))
            self.total_size = n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def indices(self, device: torch.device | None = None) -> torch.Tensor | None:
        """This rank's indices for the current epoch; None for "all, in order" (one process,
        no shuffling), so that batches can be plain slices."""
        if not self.shuffle and self.num_replicas == 1:
            return None
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.total_size > self.n:
            repeats = -(-(self.total_size - self.n) // self.n)
            order = torch.cat([order, *[order] * repeats])[: self.total_size]
        else:
            order = order[: self.total_size]
        order = order[self.rank : self.total_size : self.num_replicas]
        if device is None or device.type == "cpu":
            return order
        if device.type == "cuda":
            # From pinned memory the copy is queued behind the GPU's work without waiting for
            # it; from pageable memory the host may wait for the queued steps, once an epoch.
            order = order.pin_memory()
        return order.to(device, non_blocking=True)


class Normalize:
    """x ↦ (x − mean) / std as one fused multiply-add that also casts uint8 to float (on the
    CPU with one mean and std for all inputs: a multiply, then an add in place)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        self.scale, self.shift = scale, shift

    @classmethod
    def from_stats(cls, mean: torch.Tensor, std: torch.Tensor) -> Normalize:
        return cls((1.0 / std).float(), (-mean / std).float())

    def to(self, device: torch.device) -> Normalize:
        """A copy whose statistics live on `device` (self is left as is)."""
        return Normalize(self.scale.to(device), self.shift.to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.scale.numel() == 1:
            # The CPU's addcmul broadcasts one-element tensors slowly: 60 µs against 30 µs for
            # the two ops on a 128×784 uint8 batch (measured, one thread). torch.mul makes a
            # new tensor, so x (perhaps a view of a resident split) is never written to.
            return torch.mul(x, self.scale).add_(self.shift)
        return torch.addcmul(self.shift, x, self.scale)


class TensorBatches:
    """Iterates normalized (x, y) batches over tensors held on one device.

    Args:
        x, y: the split's inputs (as stored, e.g. uint8) and targets, on the device to train on.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        order: shuffling and DDP sharding (see BatchOrder).
        normalize: applied to each input batch (None: inputs as stored).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        order: BatchOrder = BatchOrder(),
        normalize: Normalize | None = None,
    ) -> None:
        _check_split(x, y, batch_size)
        self.x, self.y, self.batch_size, self.normalize = x, y, batch_size, normalize
        self.sampler = EpochPermutation(len(x), order)
        # Lightning inspects loaders like DataLoaders: it finds `sampler` and calls set_epoch.
        self.batch_sampler = None

    @property
    def num_batches(self) -> int:
        """Batches per epoch."""
        return -(-len(self.sampler) // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        order = self.sampler.indices(self.x.device)  # at the first batch: after set_epoch
        for start in range(0, len(self.sampler), self.batch_size):
            yield self.batch(order, start)

    def batch(self, order: torch.Tensor | None, start: int) -> Batch:
        """The batch of this epoch's `order` (None: in storage order) beginning at `start`."""
        end = start + self.batch_size
        if order is None:
            x, y = self.x[start:end], self.y[start:end]
        else:
            idx = order[start:end]
            x, y = self.x.index_select(0, idx), self.y.index_select(0, idx)
        return (self.normalize(x) if self.normalize is not None else x), y


class BatchGroup:
    """Consecutive batches of a TensorBatches epoch handed over as one Lightning batch, on each
    of which the fast path takes an optimizer step (speed.steps_per_batch; nnlab.speed.groups
    makes them). Each batch is gathered and normalized only when the
    step reaches it: a group holds one batch's memory at a time, however many it spans."""

    def __init__(
        self,
        loader: TensorBatches,
        order: torch.Tensor | None,
        starts: range,
        device: torch.device | None = None,
    ) -> None:
        self.loader, self.order, self.starts = loader, order, starts
        # Where batches go when taken (Lightning's transfer to another device); None: stay.
        self._to = device

    @property
    def device(self) -> torch.device:
        return self._to or self.loader.x.device

    @property
    def num_samples(self) -> int:
        """Samples in the group's batches together."""
        n = len(self.loader.sampler)
        return min(self.starts[-1] + self.loader.batch_size, n) - self.starts[0]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Batch:
        x, y = self.loader.batch(self.order, self.starts[i])
        return (x, y) if self._to is None else (x.to(self._to), y.to(self._to))

    def __iter__(self) -> Iterator[Batch]:
        return (self[i] for i in range(len(self)))

    def to(self, device: torch.device | str, **kwargs: Any) -> BatchGroup:
        """The same batches, moved to `device` as they are taken (what Lightning calls to move a
        batch of another device's data)."""
        return BatchGroup(self.loader, self.order, self.starts, torch.device(device))


class _BatchRows:
    """A map-style dataset whose keys are whole index tensors: one gather per batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, normalize: Normalize | None) -> None:
        self.x, self.y, self.normalize = x, y, normalize

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: torch.Tensor) -> Batch:
        x = self.x.index_select(0, idx)
        return (self.normalize(x) if self.normalize is not None else x), self.y.index_select(0, idx)


class _BatchIndices:
    """Yields one index tensor per batch from an EpochPermutation (a DataLoader sampler)."""

    def __init__(self, permutation: EpochPermutation, batch_size: int) -> None:
        self.permutation, self.batch_size = permutation, batch_size

    def __len__(self) -> int:
        return -(-len(self.permutation) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.permutation.indices()
        if order is None:
            order = torch.arange(self.permutation.n)
        yield from order.split(self.batch_size)


class HostBatches:
    """Iterates normalized (x, y) batches of host-memory tensors through a DataLoader.

    For splits over the device's memory budget. Batches are gathered whole in the main process
    (the data is already in memory, so worker processes would only add copying) and, when
    `pin_memory`, pinned by the DataLoader's pinning thread so the copy to the GPU overlaps.
    Arguments as for TensorBatches, plus `pin_memory` and `num_workers`.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        order: BatchOrder = BatchOrder(),
        normalize: Normalize | None = None,
        pin_memory: bool = False,
        num_workers: int = 0,
    ) -> None:
        _check_split(x, y, batch_size)
        self.sampler = EpochPermutation(len(x), order)
        self.batch_sampler = None
        self.batch_size = batch_size
        # batch_size=None: the "sampler" yields whole index tensors, the dataset gathers them.
        self.loader = DataLoader(
            _BatchRows(x, y, normalize),
            batch_size=None,
            sampler=_BatchIndices(self.sampler, batch_size),
            pin_memory=pin_memory,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


def _check_split(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    """What both loaders need of a split and its batch size."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
