"""The device-resident and host loaders: epoch coverage, seeded order, ragged batches,
normalization, DistributedSampler-identical sharding, and the datamodule's choice of loader."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from nnlab.data.base import ArrayDataModule, Split
from nnlab.data.loaders import BatchOrder, EpochPermutation, HostBatches, Normalize, TensorBatches
from nnlab.speed.groups import StepGroups


def ids(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose single feature is the sample's index, and the index as target."""
    return torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n)


def epoch(loader, e: int) -> list[torch.Tensor]:
    loader.sampler.set_epoch(e)
    return [y for _, y in loader]


@pytest.mark.parametrize("cls", [TensorBatches, HostBatches])
def test_every_sample_once_per_epoch_in_a_new_seeded_order(cls):
    x, y = ids(103)
    loader = cls(x, y, batch_size=10, order=BatchOrder(shuffle=True, seed=7))
    first, second = epoch(loader, 0), epoch(loader, 1)
    assert [len(b) for b in first] == [10] * 10 + [3]  # the ragged last batch is kept
    assert len(loader) == 11
    for batches in (first, second):
        assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert not torch.equal(torch.cat(first), torch.cat(second))
    again = cls(x, y, batch_size=10, order=BatchOrder(shuffle=True, seed=7))
    assert torch.equal(torch.cat(epoch(again, 1)), torch.cat(second))
    other_seed = cls(x, y, batch_size=10, order=BatchOrder(shuffle=True, seed=8))
    assert not torch.equal(torch.cat(epoch(other_seed, 1)), torch.cat(second))


def test_unshuffled_batches_are_in_order_and_inputs_match_targets():
    x, y = ids(25)
    batches = list(TensorBatches(x, y, batch_size=8))
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.arange(25))
    for xb, yb in TensorBatches(x, y, batch_size=8, order=BatchOrder(shuffle=True, seed=1)):
        assert torch.equal(xb[:, 0].long(), yb)


@pytest.mark.parametrize("n", [10, 11, 13, 3])
@pytest.mark.parametrize("replicas", [2, 3, 4])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_equal_distributed_sampler(n, replicas, shuffle, drop_last):
    dataset = list(range(n))
    for rank in range(replicas):
        for e in (0, 5):
            how = BatchOrder(shuffle, seed=3, num_replicas=replicas, rank=rank, drop_last=drop_last)
            ours = EpochPermutation(n, how)
            theirs = DistributedSampler(
                dataset, replicas, rank, shuffle=shuffle, seed=3, drop_last=drop_last
            )
            ours.set_epoch(e)
            theirs.set_epoch(e)
            order = ours.indices()
            assert order is not None and order.tolist() == list(theirs)
            assert len(ours) == len(theirs)


def test_ddp_shards_are_disjoint_up_to_padding_and_cover_the_data():
    x, y = ids(50)
    seen = []
    for rank in range(3):
        loader = TensorBatches(x, y, 8, BatchOrder(True, seed=0, num_replicas=3, rank=rank))
        seen.append(torch.cat(epoch(loader, 2)))
    assert {len(s) for s in seen} == {17}  # padded to equal length, like DistributedSampler
    allseen = torch.cat(seen)
    assert set(allseen.tolist()) == set(range(50))
    assert len(allseen) - len(set(allseen.tolist())) == 1  # the one padding sample


def test_uint8_inputs_stay_uint8_and_are_normalized_per_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.zeros(20, dtype=torch.long)
    mean, std = x.float().mean(), x.float().std()
    loader = TensorBatches(x, y, 6, normalize=Normalize.from_stats(mean, std))
    assert loader.x.dtype == torch.uint8
    xb = torch.cat([b[0] for b in loader])
    assert xb.dtype == torch.float32
    torch.testing.assert_close(xb, (x.float() - mean) / std)


@pytest.mark.parametrize("stats", [(), (3,)], ids=["global", "per-feature"])
def test_normalizing_float_batches_leaves_the_resident_split_untouched(stats):
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    mean, std = torch.full(stats, 2.0), torch.full(stats, 4.0)
    loader = TensorBatches(x, torch.zeros(4), 2, normalize=Normalize.from_stats(mean, std))
    xb = torch.cat([b[0] for b in loader])  # unshuffled: batches are slices of x
    torch.testing.assert_close(xb, (torch.arange(12.0).reshape(4, 3) - 2) / 4)
    assert torch.equal(x, torch.arange(12, dtype=torch.float32).reshape(4, 3))


def test_host_and_resident_loaders_give_identical_batches():
    x, y = ids(37)
    norm = Normalize.from_stats(torch.tensor(3.0), torch.tensor(2.0))
    order = BatchOrder(shuffle=True, seed=2, num_replicas=2, rank=1)
    a = TensorBatches(x, y, 5, order, normalize=norm)
    b = HostBatches(x, y, 5, order, normalize=norm)
    for e in (0, 1):
        a.sampler.set_epoch(e)
        b.sampler.set_epoch(e)
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


class Ramp(ArrayDataModule):
    task = "multiclass"

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        x = torch.arange(200, dtype=torch.uint8).reshape(200, 1)
        return {"train": (x, torch.arange(200) % 2)}, ("a", "b")


def test_datamodule_picks_the_resident_loader_on_cpu_without_copying():
    dm = Ramp(batch_size=16)
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader, TensorBatches)
    # On the CPU the "device copy" is the split itself: one copy per device.
    assert loader.x.data_ptr() == dm.splits["train"][0].data_ptr()
    assert dm.splits["train"][0].dtype == torch.uint8
    host = Ramp(batch_size=16, resident=False)
    assert isinstance(host.train_dataloader(), HostBatches)


def test_a_datamodule_hands_out_single_batches_grouped_only_from_outside():
    dm = Ramp(batch_size=16)
    assert all(isinstance(b, tuple) for b in dm.train_dataloader())
    grouped = StepGroups(dm.train_dataloader(), 3)  # what the fast path wraps it in
    groups = [len(group) for group in grouped]
    assert sum(groups) == grouped.num_batches == -(-len(dm.splits["train"][0]) // 16)
    assert groups[0] == 3 and len(grouped) == len(groups)
    assert grouped.sampler is grouped.loader.sampler  # Lightning sets the epoch through it


def test_a_bad_resident_option_is_refused_by_the_speed_check():
    # Validated once, by nnlab.speed.check_speed (the datamodule trusts its value).
    from nnlab.core import ConfigError
    from nnlab.speed import check_speed

    with pytest.raises(ConfigError, match=r"speed\.resident must be one of auto, True, False"):
        check_speed({"resident": "sometimes"})


class CountingNormalize(Normalize):
    """Normalize that counts the batches it is applied to."""

    calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().__call__(x)


def test_batches_can_come_in_groups_for_several_steps_per_call():
    x, y = ids(45)
    norm = CountingNormalize(torch.tensor(0.5), torch.tensor(-1.0))
    options = {"batch_size": 10, "order": BatchOrder(shuffle=True, seed=3), "normalize": norm}
    grouped = StepGroups(TensorBatches(x, y, **options), 2)
    single = TensorBatches(x, y, **options)
    items = list(grouped)
    assert norm.calls == 0  # a group gathers and normalizes a batch only when it is taken
    assert len(grouped) == len(items) == 3
    assert [len(item) for item in items] == [2, 2, 1]  # the last group is short
    assert [item.num_samples for item in items] == [20, 20, 5]
    flat = [b for item in items for b in item]
    for (xa, ya), (xb, yb) in zip(flat, single, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # A group takes its batches when asked, and as often: the same ones each time.
    assert all(torch.equal(a, b) for a, b in zip(items[1][1], flat[3], strict=True))


def test_batches_already_on_the_device_skip_lightnings_transfer():
    dm = Ramp(batch_size=16)
    dm.setup()
    cpu = torch.device("cpu")
    batch = next(iter(dm.train_dataloader()))
    assert dm.transfer_batch_to_device(batch, cpu, 0) is batch
    group = next(iter(StepGroups(dm.train_dataloader(), 3)))
    assert len(group) == 3 and dm.transfer_batch_to_device(group, cpu, 0) is group
    # Batches elsewhere still go through Lightning's transfer ("meta" stands in for a GPU).
    moved = dm.transfer_batch_to_device(group, torch.device("meta"), 0)
    assert all(t.device.type == "meta" for b in moved for t in b)
    # So does any other batch structure a subclass's loader may yield.
    as_dict = dm.transfer_batch_to_device({"x": batch[0]}, torch.device("meta"), 0)
    assert as_dict["x"].device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_host_batches_are_moved_to_the_gpu_and_gpu_batches_are_not_touched():
    dm = Ramp(batch_size=16, resident=False)
    dm.setup()
    gpu = torch.device("cuda", torch.cuda.current_device())
    batch = next(iter(dm.train_dataloader()))
    moved = dm.transfer_batch_to_device(batch, gpu, 0)
    assert all(t.device == gpu for t in moved)
    assert dm.transfer_batch_to_device(moved, gpu, 0) is moved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resident_batches_on_the_gpu_come_in_the_cpu_order():
    # The permutation is made on the CPU and copied from pinned memory (a rank's strided shard).
    x, y = torch.arange(100, dtype=torch.uint8).unsqueeze(1), torch.arange(100)
    for rank in (0, 1):
        on = {
            device: TensorBatches(
                x.to(device), y.to(device), 16, BatchOrder(True, seed=3, num_replicas=2, rank=rank)
            )
            for device in ("cpu", "cuda")
        }
        for epoch in (0, 1):
            order = {}
            for device, batches in on.items():
                batches.sampler.set_epoch(epoch)
                order[device] = torch.cat([b[1].cpu() for b in batches])
            assert torch.equal(order["cpu"], order["cuda"])
