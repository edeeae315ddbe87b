"""Labelled image folders (your own, or cats vs dogs): found in class sub-folders or by Kaggle's
`cat.N.jpg` names, in one folder or in split folders (train/, val/, test/), decoded once
(undecodable files skipped and counted), resized to a square, and cached as one uint8 tensor
file so that later runs start in seconds."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from nnlab.core import ConfigError
from nnlab.core.components import register_datamodule
from nnlab.data.base import Split
from nnlab.data.download import Remote, extract_fetched, fetch, make_readable, verify_zip
from nnlab.data.remote import RemoteDataModule

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Kaggle's flat naming: <class>.<id>.<ext>, e.g. cat.12.jpg.
FLAT_NAME = re.compile(r"^(?P<label>[A-Za-z_]+)\.\d+\.[A-Za-z]+$")
# Folder names read as a data set's own splits: root/train/<class>/…, root/valid/<class>/…
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
# Bump when decoding or the cached layout changes, so older cache files are not reused.
CACHE_VERSION = 2


@dataclass(frozen=True)
class LabelledFiles:
    """Image files with their class indices, and the class names (sorted, lower case)."""

    files: list[Path]
    labels: list[int]
    classes: tuple[str, ...]


def find_images(root: str | Path) -> LabelledFiles:
    """The labelled images under `root`: class sub-folders (root/cat/…, root/Dog/…), or files
    named <class>.<id>.<ext> directly in root (Kaggle's cat.0.jpg). Class names are lower-cased
    so both layouts give the same classes."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such folder")
    by_class: dict[str, list[Path]] = {}
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for d in subdirs:
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            by_class.setdefault(d.name.lower(), []).extend(files)
    if not by_class:
        for p in sorted(root.iterdir()):
            match = FLAT_NAME.match(p.name)
            if match and p.suffix.lower() in IMAGE_EXTENSIONS:
                by_class.setdefault(match["label"].lower(), []).append(p)
    if not by_class:
        raise ConfigError(
            f"data.root={root} holds no labelled images: expected class sub-folders "
            "(cat/*.jpg, dog/*.jpg) or files named like cat.0.jpg and dog.0.jpg"
        )
    classes = tuple(sorted(by_class))
    files, labels = [], []
    for label, name in enumerate(classes):
        files.extend(by_class[name])
        labels.extend([label] * len(by_class[name]))
    return LabelledFiles(files, labels, classes)


def find_splits(root: str | Path) -> tuple[dict[str, LabelledFiles], list[str]]:
    """The labelled images under `root` by split, and why folders were left out. A root whose
    train/ (or training/) folder holds labelled images itself (class sub-folders, or Kaggle's
    train/cat.0.jpg names) is a data set with its own splits: train/, and where present val/
    (valid/, validation/, dev/) and test/ (testing/), each labelled with train's classes; other
    folders are left out. Any other root is one folder of classes: {"train": find_images}."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such folder")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    named = {SPLIT_NAMES.get(d.name.lower()): d for d in folders}
    if "train" not in named or not _holds_labelled_images(named["train"]):
        return {"train": find_images(root)}, []
    splits: dict[str, LabelledFiles] = {}
    left_out = []
    for d in folders:
        split = SPLIT_NAMES.get(d.name.lower())
        if split is None:
            left_out.append(f"{d.name}/ is not a split folder (train, val, test)")
            continue
        if split in splits:
            raise ConfigError(f"data.root={root} has two {split} folders; keep one")
        try:
            splits[split] = find_images(d)
        except ConfigError:
            if split == "train":
                raise
            left_out.append(f"{d.name}/ holds no labelled images")
    classes = splits["train"].classes
    for split, found in splits.items():
        unknown = sorted(set(found.classes) - set(classes))
        if unknown:
            raise ConfigError(
                f"data.root={root}: {split} has classes that train has not "
                f"({', '.join(unknown)}); train has {', '.join(classes)}"
            )
        labels = [classes.index(found.classes[label]) for label in found.labels]
        splits[split] = LabelledFiles(found.files, labels, classes)
    return splits, left_out


def _holds_labelled_images(folder: Path) -> bool:
    """Whether `folder` has sub-folders with images, or images named like cat.0.jpg."""
    for p in folder.iterdir():
        if p.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in p.rglob("*")):
            return True
        if p.suffix.lower() in IMAGE_EXTENSIONS and FLAT_NAME.match(p.name):
            return True
    return False


def decode_image(path: Path, size: int, grayscale: bool) -> np.ndarray | None:
    """One image as a (C, size, size) uint8 array, center-cropped to a square and resized; None
    if the file cannot be decoded (not an image, truncated, empty)."""
    from PIL import Image, ImageOps

    mode = "L" if grayscale else "RGB"
    try:
        with warnings.catch_warnings():
            # Many camera images carry malformed EXIF blocks; the pixels are fine.
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                # JPEG only: decode at the smallest 1/2^k scale still ≥ size (much faster).
                im.draft(mode, (size, size))
                square = ImageOps.fit(im.convert(mode), (size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(square, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # PIL raises OSError for unreadable and truncated files (UnidentifiedImageError is one).
        return None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_images(
    found: LabelledFiles,
    size: int,
    grayscale: bool,
    progress: bool = True,
    root: Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decodes every file (threads: PIL releases the GIL while decoding); returns the images
    (N, C, size, size) uint8, their labels, and the files that were skipped."""
    from tqdm.auto import tqdm

    channels = 1 if grayscale else 3
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        arrays = list(
            tqdm(
                pool.map(lambda p: decode_image(p, size, grayscale), found.files),
                total=len(found.files),
                desc="decoding images",
                unit="img",
                disable=not progress,
            )
        )
    keep = [i for i, a in enumerate(arrays) if a is not None]
    skipped = [
        str(p.relative_to(root) if root else p)
        for p, a in zip(found.files, arrays, strict=True)
        if a is None
    ]
    if keep:
        x = torch.from_numpy(np.stack([arrays[i] for i in keep]))
    else:
        x = torch.empty((0, channels, size, size), dtype=torch.uint8)
    y = torch.tensor([found.labels[i] for i in keep], dtype=torch.long)
    return x, y, skipped


def cache_key(root: Path, found: LabelledFiles, size: int, grayscale: bool) -> str:
    """A digest of the source (folder, every file's name, size and mtime) and of the decoding
    (size, mode): any change to the images or to the options gives another cache file."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{root.resolve()}|{size}|{grayscale}".encode())
    for path, label in zip(found.files, found.labels, strict=True):
        st = path.stat()
        h.update(f"|{path.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file renamed into place: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# Microsoft's release of the Asirra cats and dogs (the images of Kaggle's "Dogs vs. Cats").
# Microsoft publishes no checksum: the size is pinned and every member's CRC-32 is checked.
PETIMAGES = Remote(
    "kagglecatsanddogs_5340.zip",
    (
        "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
        "kagglecatsanddogs_5340.zip",
    ),
    known_hash=None,
    size=824_887_076,
    verify=verify_zip,
)


@register_datamodule
class ImageFolderDataModule(RemoteDataModule):
    """Image classification on a folder of your own (`root`): one sub-folder per class, any
    number of classes (or files named <class>.<id>.jpg), multiclass with softmax outputs.

    Images are center-cropped to a square, resized to `image_size`, kept as uint8 and cached
    in <data_dir>/<name>/cache (keyed by the folder, its files and the options), so later runs
    start in seconds; the MLPs flatten them. A root with split folders (train/<class>/…,
    val/…, test/…: see find_splits) keeps its own splits; val and test are otherwise seeded
    splits of the images.

    Args:
        root: the folder of images.
        image_size: side of the square images, in pixels.
        grayscale: one grey channel instead of RGB.
    """

    task = "multiclass"
    # Whether `root` must be given (a subclass may download a default folder instead).
    needs_root: ClassVar[bool] = True

    def __init__(
        self,
        name: str = "image_folder",
        root: str | Path | None = None,
        image_size: int = 64,
        grayscale: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not isinstance(image_size, int) or image_size < 1:
            raise ConfigError(f"data.image_size must be a positive int, got {image_size!r}")
        if root is None and self.needs_root:
            raise ConfigError(
                "data.root must name your image folder (one sub-folder per class), "
                "e.g. data.root=$HOME/pictures/flowers"
            )
        self.root = Path(root).expanduser() if root else None
        self.image_size, self.grayscale = image_size, grayscale

    @property
    def image_root(self) -> Path:
        """The folder the images are read from."""
        assert self.root is not None
        return self.root

    def prepare_files(self) -> None:
        self._cached()

    def preprocessing(self) -> dict[str, Any]:
        """As ArrayDataModule's, kind "image": an image file is decoded as the folder's were."""
        return {**super().preprocessing(), "kind": "image"}

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        data = self._cached()
        classes = tuple(data["classes"])
        self.check_classes(classes)
        return {name: (s["x"], s["y"]) for name, s in data["splits"].items()}, classes

    def check_classes(self, classes: tuple[str, ...]) -> None:
        if len(classes) < 2:
            raise ConfigError(
                f"{self.image_root} has {len(classes)} class ({', '.join(classes)}); "
                "classification needs at least two"
            )

    def _cached(self) -> dict[str, Any]:
        """The decoded images by split, from the cache file when it matches the source and
        options: {"classes", "splits": {split: {"x", "y"}}, "skipped"}."""
        found, left_out = find_splits(self.image_root)
        everything = LabelledFiles(
            [f for s in found.values() for f in s.files],
            [label for s in found.values() for label in s.labels],
            found["train"].classes,
        )
        key = cache_key(self.image_root, everything, self.image_size, self.grayscale)
        mode = "gray" if self.grayscale else "rgb"
        path = self.folder / "cache" / f"{self.image_size}px-{mode}-{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        # Said once, when the images are decoded (later runs read the cache).
        if len(found) > 1 or left_out:
            sizes = ", ".join(f"{split}/ {len(f.files)} images" for split, f in found.items())
            log.info("%s has split folders: %s", self.image_root, sizes)
        for note in left_out:
            log.warning("%s: %s: left out", self.image_root, note)
        splits, skipped = {}, []
        for split, files in found.items():
            x, y, bad = decode_images(
                files, self.image_size, self.grayscale, self.progress, self.image_root
            )
            splits[split] = {"x": x, "y": y}
            skipped += bad
        if skipped:
            log.warning(
                "skipped %d of %d images under %s that cannot be decoded (e.g. %s)",
                len(skipped),
                len(everything.files),
                self.image_root,
                ", ".join(skipped[:5]),
            )
        for split, decoded in splits.items():
            if len(decoded["x"]) == 0:
                raise ConfigError(
                    f"none of the {len(found[split].files)} images of {split} under "
                    f"{self.image_root} decode"
                )
        data = {"classes": list(everything.classes), "splits": splits, "skipped": skipped}
        save_atomic(data, path)
        log.info("cached %d images as %s", len(everything.files) - len(skipped), path)
        return data


@register_datamodule
class CatsVsDogsDataModule(ImageFolderDataModule):
    """Cats vs dogs, binary (0 = cat, 1 = dog): Microsoft's PetImages (about 25,000 photos, over
    a thousand of them undecodable and skipped), or the images of a local folder (`root`, class
    sub-folders or cat.N.jpg names). Otherwise as ImageFolderDataModule.
    """

    task = "binary"
    needs_root = False

    def __init__(self, name: str = "cats_vs_dogs", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    @property
    def image_root(self) -> Path:
        return self.root or self.folder / "kagglecatsanddogs" / "PetImages"

    def prepare_files(self) -> None:
        if self.root is None and not self.image_root.is_dir():
            paths = fetch([PETIMAGES], self.folder, self.name, self.progress)
            extract_fetched(paths[PETIMAGES.name], self.image_root.parent, self.progress)
        super().prepare_files()

    def check_classes(self, classes: tuple[str, ...]) -> None:
        if len(classes) != 2:
            raise ConfigError(
                f"{self.image_root} has {len(classes)} classes ({', '.join(classes)}); a binary "
                "data set needs exactly two (data=image_folder takes any number)"
            )
