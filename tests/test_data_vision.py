"""MNIST-format and CIFAR-10 datamodules end to end against a loopback server: the real MNIST
files of ../shared/data (canonical md5) plus generated files in the exact upstream formats."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlab.core import ConfigError
from nnlab.data import vision
from nnlab.data.download import MIRROR_ENV
from nnlab.data.vision import (
    IDX_VARIANTS,
    CIFAR10CatsDogsDataModule,
    IdxVariant,
    MNISTDataModule,
    read_cifar10_bin,
    read_idx,
)

from .helpers import http_fixtures
from .helpers.data_formats import cifar10_tar, digest, idx_gz, shared
from .helpers.http_fixtures import FileServer

file_server = http_fixtures.file_server
MNIST_REAL = (
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="module")
def train_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train-images-idx3-ubyte.gz stand-in (the real one is not in ../shared/data): 60,000 real
    test images in the IDX format, so that the real 60,000 train labels have images."""
    test_images = read_idx(shared("mnist/MNIST/raw/t10k-images-idx3-ubyte.gz"))
    path = tmp_path_factory.mktemp("idx") / "train-images-idx3-ubyte.gz"
    path.write_bytes(idx_gz(np.tile(test_images, (6, 1, 1))))
    return path


@pytest.fixture
def mnist_mirrors(
    file_server: FileServer, train_images: Path, monkeypatch: pytest.MonkeyPatch
) -> FileServer:
    """Two upstream mirrors on the loopback server; the first lacks t10k-labels (404)."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    raw = shared("mnist/MNIST/raw")
    for name in MNIST_REAL:
        for mirror in ("m1", "m2"):
            if not (mirror == "m1" and name.startswith("t10k-labels")):
                file_server.add(f"{mirror}/{name}", raw / name)
    file_server.add("m1/train-images-idx3-ubyte.gz", train_images)
    real = IDX_VARIANTS["mnist"]
    # Canonical md5 for the real files; the generated stand-in's own md5 is registered.
    md5 = {**real.md5, train_images.name: digest(train_images.read_bytes()).removeprefix("md5:")}
    variant = IdxVariant((file_server.url("m1/"), file_server.url("m2/")), md5, real.classes)
    monkeypatch.setitem(IDX_VARIANTS, "mnist", variant)
    return file_server


def test_mnist_downloads_with_fallback_and_loads(mnist_mirrors: FileServer, tmp_path: Path) -> None:
    dm = MNISTDataModule(data_dir=tmp_path, progress=False, val_fraction=0.1, seed=0)
    dm.prepare_data()
    assert mnist_mirrors.requests["m1/t10k-labels-idx1-ubyte.gz"] == 1  # 404 …
    assert mnist_mirrors.requests["m2/t10k-labels-idx1-ubyte.gz"] == 1  # … then the next mirror
    assert mnist_mirrors.requests["m2/t10k-images-idx3-ubyte.gz"] == 0
    dm.setup("fit")
    spec = dm.spec
    assert (spec.task, spec.input_shape, spec.num_targets) == ("multiclass", (1, 28, 28), 1)
    assert spec.class_names == tuple("0123456789")
    assert {k: len(v[0]) for k, v in dm.splits.items()} == {
        "train": 54000,
        "val": 6000,
        "test": 10000,
    }
    # The official test split, in file order: PROVENANCE.md's first labels and class counts.
    y_test = dm.splits["test"][1]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    # Pixels come out of the files as uint8 (normalization is the base class's business).
    raw, _ = dm.load()
    assert raw["train"][0].dtype == torch.uint8 and raw["train"][0].shape == (60000, 1, 28, 28)
    # A second machine-local prepare finds every file verified: no request.
    before = sum(mnist_mirrors.requests.values())
    MNISTDataModule(data_dir=tmp_path, progress=False).prepare_data()
    assert sum(mnist_mirrors.requests.values()) == before


def test_mnist_from_a_folder_you_have_in_torchvision_layout(
    train_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # nothing may be downloaded
    # The real folder (torchvision's <root>/MNIST/raw) lacks the train images: named exactly.
    shared_root = shared("mnist")
    lacking = MNISTDataModule(root=str(shared_root), data_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"lacks train-images-idx3-ubyte\.gz \(gzipped or not"):
        lacking.prepare_data()
    # A copy of it with the stand-in train images, uncompressed as torchvision leaves them.
    raw = tmp_path / "mine" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_REAL:
        (raw / name).write_bytes((shared_root / "MNIST" / "raw" / name).read_bytes())
    (raw / "train-images-idx3-ubyte").write_bytes(gzip.decompress(train_images.read_bytes()))
    dm = MNISTDataModule(
        root=str(tmp_path / "mine"), data_dir=tmp_path / "cache", val_fraction=0.1, seed=0
    )
    dm.prepare_data()
    dm.setup()
    assert {k: len(v[0]) for k, v in dm.splits.items()} == {
        "train": 54000,
        "val": 6000,
        "test": 10000,
    }
    test_labels = read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    assert torch.equal(dm.splits["test"][1], torch.from_numpy(test_labels.astype(np.int64)))
    assert not (tmp_path / "cache").exists()  # the data folder was not touched


def test_mnist_mirror_override(
    mnist_mirrors: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in list(mnist_mirrors.files):
        mnist_mirrors.add("mnist/" + path.split("/", 1)[1], mnist_mirrors.files[path])
    monkeypatch.setenv(MIRROR_ENV, mnist_mirrors.base_url)
    MNISTDataModule(data_dir=tmp_path, progress=False).prepare_data()
    for name in [*MNIST_REAL, "train-images-idx3-ubyte.gz"]:
        assert mnist_mirrors.requests[f"mnist/{name}"] == 1
    assert not any(p.startswith(("m1/", "m2/")) for p in mnist_mirrors.requests)


def test_variants_and_errors(tmp_path: Path) -> None:
    assert MNISTDataModule(variant="kmnist", data_dir=tmp_path).name == "kmnist"
    assert len(IDX_VARIANTS["fashion_mnist"].classes) == 10
    with pytest.raises(ValueError, match="valid: mnist, fashion_mnist, kmnist"):
        MNISTDataModule(variant="emnist")
    bad = tmp_path / "cut.gz"
    whole = gzip.decompress(idx_gz(np.zeros((5, 4, 4), np.uint8)))
    bad.write_bytes(gzip.compress(whole[:-7]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"PK\x03\x04junk"))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "x.gz")


def test_cifar10_cats_dogs_binary(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    archive, labels = cifar10_tar(per_batch=30)
    url = file_server.add("kriz/cifar-10-binary.tar.gz", archive)
    remote = dataclasses.replace(vision.CIFAR10_BINARY, urls=(url,), known_hash=digest(archive))
    monkeypatch.setattr(vision, "CIFAR10_BINARY", remote)
    dm = CIFAR10CatsDogsDataModule(data_dir=tmp_path, progress=False, normalize="none")
    dm.prepare_data()
    dm.prepare_data()
    assert file_server.requests["kriz/cifar-10-binary.tar.gz"] == 1
    raw, classes = dm.load()
    assert classes == ("cat", "dog")
    for split in ("train", "test"):
        x, y = raw[split]
        want = labels[split][np.isin(labels[split], [3, 5])]
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
        assert y.tolist() == (want == 5).astype(int).tolist()
        # The marker pixel says which CIFAR class each kept image had (cat 3, dog 5).
        assert (x[:, 0, 0, 0] == torch.where(y == 1, 100, 60)).all()
    dm.setup()
    assert dm.spec.task == "binary" and dm.spec.input_shape == (3, 32, 32)


def test_cifar_record_check(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(ValueError, match="3073-byte"):
        read_cifar10_bin(path)
