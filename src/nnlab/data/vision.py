"""Image benchmarks in their original binary formats: MNIST, Fashion-MNIST and KMNIST (IDX), and
the cat and dog classes of CIFAR-10 (the binary version: downloaded data is never unpickled).
Pixels stay uint8 until normalization."""

from __future__ import annotations

import gzip
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab.core import ConfigError, DataUnavailableError
from nnlab.core.components import register_datamodule
from nnlab.data.base import Split
from nnlab.data.download import Remote, extract_fetched, fetch
from nnlab.data.remote import RemoteDataModule

# What reading a damaged file raises: gzip's BadGzipFile (an OSError), EOFError (a gzip stream
# cut short), zlib.error (corrupt deflate data) and read_idx's own ValueError (bad header or size).
DAMAGE = (gzip.BadGzipFile, EOFError, zlib.error, ValueError)

# IDX element types (the third magic byte) → numpy dtypes, big-endian as the format stores them.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not) as an array of its stored shape and type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: the header gives shape {dims} ({expected:,} bytes) but {len(data) - offset:,}"
            " bytes follow it (truncated or corrupt file)"
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class IdxVariant:
    """One MNIST-format data set: its mirrors, the md5 of each file and its class names."""

    mirrors: tuple[str, ...]
    md5: dict[str, str]
    classes: tuple[str, ...]

    def remotes(self) -> list[Remote]:
        return [
            Remote(name, tuple(m + name for m in self.mirrors), f"md5:{md5}")
            for name, md5 in self.md5.items()
        ]


# The mirrors and md5 sums torchvision.datasets uses (MNIST, FashionMNIST, KMNIST).
IDX_VARIANTS: dict[str, IdxVariant] = {
    "mnist": IdxVariant(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        classes=tuple(str(d) for d in range(10)),
    ),
    "fashion_mnist": IdxVariant(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "kmnist": IdxVariant(
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5={
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
}


# Where torchvision.datasets keeps each variant's files: <root>/<folder>/raw/.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


@register_datamodule
class MNISTDataModule(RemoteDataModule):
    """MNIST, Fashion-MNIST or KMNIST (by `variant`): 60,000 training and 10,000 test 28×28
    grey images in 10 classes, read from the IDX files. Validation comes out of the training
    set; the test set is the official one.

    Args:
        variant: mnist, fashion_mnist or kmnist.
        root: a folder with the four IDX files you already have, read instead of the download
            (not checksummed): gzipped or not, directly in it or in torchvision's layout
            (<root>/MNIST/raw, <root>/FashionMNIST/raw, <root>/KMNIST/raw). Nothing is written
            to the data folder then.
    """

    task = "multiclass"

    def __init__(
        self,
        variant: str = "mnist",
        name: str | None = None,
        root: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        if variant not in IDX_VARIANTS:
            raise ConfigError(
                f"data.variant={variant!r} is not an MNIST-format data set; valid: "
                f"{', '.join(IDX_VARIANTS)}"
            )
        super().__init__(name=name or variant, **kwargs)
        self.variant = variant
        self.root = Path(root).expanduser() if root else None

    def prepare_data(self) -> None:
        if self.root is None:
            super().prepare_data()
        else:
            self._local_files()  # all four must be there

    def prepare_files(self) -> None:
        fetch(IDX_VARIANTS[self.variant].remotes(), self.folder, self.name, self.progress)

    def _local_files(self) -> dict[str, Path]:
        """Upstream file name → the file under `root` holding it (the .gz or its contents)."""
        assert self.root is not None
        if not self.root.is_dir():
            raise ConfigError(f"data.root={self.root}: no such folder")
        folders = [self.root, self.root / TORCHVISION_FOLDERS[self.variant] / "raw"]
        found, missing = {}, []
        for name in IDX_VARIANTS[self.variant].md5:
            candidates = [f / n for f in folders for n in (name, name.removesuffix(".gz"))]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                missing.append(name)
            else:
                found[name] = path
        if missing:
            raise ConfigError(
                f"data.root={self.root} lacks {', '.join(missing)} (gzipped or not; looked in "
                f"{' and '.join(str(f) for f in folders)})"
            )
        return found

    def read(self, path: Path) -> np.ndarray:
        """read_idx, with a file that cannot be read reported in one line: one under `root` is
        the user's to replace; one in the download folder is removed, so that the next run
        downloads it again."""
        try:
            return read_idx(path)
        except DAMAGE as e:
            reason = f"{type(e).__name__}: {e}" if isinstance(e, EOFError) else str(e)
            if self.root is not None:
                raise ConfigError(
                    f"data.root={self.root}: {path} is damaged ({reason}): delete it, or copy "
                    "it again from where you got it"
                ) from None
            path.unlink(missing_ok=True)
            raise DataUnavailableError(
                f"{path} is damaged ({reason}); it was removed, so the next run downloads it again"
            ) from None
        except OSError as e:  # e.g. no permission to read it
            raise ConfigError(f"{path} cannot be read: {e.strerror or e}") from None

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        files = self._local_files() if self.root is not None else None
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            paths = [f"{prefix}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")]
            if files is None:
                images, labels = (self.read(self.folder / p) for p in paths)
            else:
                images, labels = (self.read(files[p]) for p in paths)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ConfigError(
                    f"{self.root or self.folder}: {prefix} images {images.shape} do not match "
                    f"labels {labels.shape}"
                )
            x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8
            splits[split] = (x, torch.from_numpy(labels.astype(np.int64)))
        return splits, IDX_VARIANTS[self.variant].classes


# -- CIFAR-10, binary version ------------------------------------------------------------------
CIFAR10_BINARY = Remote(
    "cifar-10-binary.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    "md5:c32a1d4ab5d03f1284b67883e8d87530",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32×32 planes
CIFAR10_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}


def read_cifar10_bin(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 binary batch as (images (N, 3, 32, 32) uint8, labels (N,) uint8)."""
    data = np.fromfile(path, np.uint8)
    if data.size == 0 or data.size % CIFAR10_RECORD:
        raise ValueError(
            f"{path}: {data.size:,} bytes is not a whole number of {CIFAR10_RECORD}-byte "
            "CIFAR-10 records (truncated or corrupt file)"
        )
    records = data.reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    if labels.max() >= len(CIFAR10_CLASSES):
        raise ValueError(f"{path}: label {labels.max()} is not a CIFAR-10 class")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


@register_datamodule
class CIFAR10CatsDogsDataModule(RemoteDataModule):
    """The cat and dog classes of CIFAR-10: 10,000 training and 2,000 test 3×32×32 colour
    images, binary (0 = cat, 1 = dog). Read from the binary version of the archive."""

    task = "binary"
    classes = ("cat", "dog")

    def __init__(self, name: str = "cifar10_cats_dogs", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    @property
    def batches_dir(self) -> Path:
        return self.folder / "cifar-10-binary" / "cifar-10-batches-bin"

    def prepare_files(self) -> None:
        # The extracted folder appears only complete (extract renames it into place), so its
        # presence means the archive is no longer needed.
        if self.batches_dir.is_dir():
            return
        paths = fetch([CIFAR10_BINARY], self.folder, self.name, self.progress)
        extract_fetched(paths[CIFAR10_BINARY.name], self.batches_dir.parent, self.progress)

    def read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """read_cifar10_bin, with a damaged batch file reported in one line and the unpacked
        folder removed, so that the next run unpacks the (checksummed) archive again."""
        try:
            return read_cifar10_bin(path)
        except (OSError, ValueError) as e:
            shutil.rmtree(self.batches_dir.parent, ignore_errors=True)
            raise DataUnavailableError(
                f"{path} cannot be read ({e}); {self.batches_dir.parent} was removed, so the next "
                "run unpacks the archive again"
            ) from None

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        wanted = [CIFAR10_CLASSES.index(c) for c in self.classes]
        splits = {}
        for split, files in CIFAR10_FILES.items():
            parts = [self.read(self.batches_dir / f) for f in files]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            keep = np.isin(labels, wanted)
            y = (labels[keep] == wanted[1]).astype(np.int64)
            splits[split] = (torch.from_numpy(images[keep]), torch.from_numpy(y))
        return splits, self.classes
