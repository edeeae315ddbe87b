"""Image folders: the 160 real cat/dog JPEGs through the folder source, Kaggle's flat names, the
PetImages archive (with a corrupt and an empty JPEG) over loopback HTTP, the decoded-image
cache, and a folder of your own with any number of classes (data=image_folder)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from nnlab.core import ConfigError
from nnlab.data import images
from nnlab.data.download import MIRROR_ENV
from nnlab.data.images import CatsVsDogsDataModule, ImageFolderDataModule, find_images
from nnlab.train import train

from .helpers import http_fixtures
from .helpers.data_formats import jpeg, petimages_zip, shared
from .helpers.http_fixtures import FileServer

file_server = http_fixtures.file_server


def no_decoding(*args, **kwargs):
    raise AssertionError("images were decoded again instead of read from the cache")


def test_real_jpegs_load_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = shared("cats_vs_dogs/train")
    dm = CatsVsDogsDataModule(root=root, data_dir=tmp_path, progress=False, normalize="none")
    dm.prepare_data()
    raw, classes = dm.load()
    x, y = raw["train"]
    assert classes == ("cat", "dog")
    assert x.shape == (160, 3, 64, 64) and x.dtype == torch.uint8  # all 160 real JPEGs
    assert torch.bincount(y).tolist() == [80, 80]
    assert 20 < float(x.float().mean()) < 235  # real pictures, not blank
    cache = list((tmp_path / "cats_vs_dogs" / "cache").glob("64px-rgb-*.pt"))
    assert len(cache) == 1
    # Second run: read from the cache, nothing decoded.
    monkeypatch.setattr(images, "decode_images", no_decoding)
    again = CatsVsDogsDataModule(root=root, data_dir=tmp_path, progress=False, normalize="none")
    again.prepare_data()
    again.setup()
    assert torch.equal(again.load()[0]["train"][0], x)
    assert again.spec.task == "binary" and again.spec.input_shape == (3, 64, 64)
    assert again.spec.class_names == ("cat", "dog") and again.spec.num_targets == 1
    assert sum(len(v[0]) for v in again.splits.values()) == 160


def test_cache_is_keyed_by_size_and_mode(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for cls, color in (("cat", (250, 0, 0)), ("dog", (0, 0, 250))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(jpeg(color))
    small = CatsVsDogsDataModule(
        root=root, data_dir=tmp_path, image_size=16, grayscale=True, progress=False
    )
    x16 = small.load()[0]["train"][0]
    assert x16.shape == (6, 1, 16, 16)
    rgb32 = CatsVsDogsDataModule(root=root, data_dir=tmp_path, image_size=32, progress=False)
    x32 = rgb32.load()[0]["train"][0]
    assert x32.shape == (6, 3, 32, 32)
    names = sorted(
        p.name.split("-")[0] + p.name.split("-")[1]
        for p in (tmp_path / "cats_vs_dogs" / "cache").iterdir()
    )
    assert names == ["16pxgray", "32pxrgb"]
    # Changing an image invalidates the cache entry for that source.
    (root / "dog" / "0.png").write_bytes(jpeg((0, 250, 0)))
    changed = CatsVsDogsDataModule(root=root, data_dir=tmp_path, image_size=32, progress=False)
    x32_new = changed.load()[0]["train"][0]
    assert not torch.equal(x32_new, x32) and torch.equal(x32_new[:3], x32[:3])  # cats unchanged
    assert len(list((tmp_path / "cats_vs_dogs" / "cache").iterdir())) == 3


def test_flat_kaggle_names(tmp_path: Path) -> None:
    real = shared("cats_vs_dogs/train")
    flat = tmp_path / "train"
    flat.mkdir()
    for cls in ("cat", "dog"):
        for i in range(5):
            shutil.copyfile(real / cls / f"{cls}.{i}.jpg", flat / f"{cls}.{i}.jpg")
    (flat / "notes.txt").write_text("not an image")
    found = find_images(flat)
    assert found.classes == ("cat", "dog") and found.labels == [0] * 5 + [1] * 5
    dm = CatsVsDogsDataModule(root=flat, data_dir=tmp_path / "d", progress=False)
    assert dm.load()[0]["train"][0].shape == (10, 3, 64, 64)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class sub-folders \(cat/\*\.jpg.*cat\.0\.jpg"):
        find_images(tmp_path / "empty")
    for cls in ("cat", "dog", "fox"):
        (tmp_path / "three" / cls).mkdir(parents=True)
        (tmp_path / "three" / cls / "0.jpg").write_bytes(jpeg((1, 2, 3)))
    dm = CatsVsDogsDataModule(root=tmp_path / "three", data_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"3 classes \(cat, dog, fox\); a binary data set"):
        dm.load()
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        CatsVsDogsDataModule(image_size=0)


def test_petimages_archive_skips_corrupt_images(
    file_server: FileServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    archive, n_good = petimages_zip(n_per_class=6)
    url = file_server.add("ms/kagglecatsanddogs_5340.zip", archive)
    monkeypatch.setattr(
        images, "PETIMAGES", dataclasses.replace(images.PETIMAGES, urls=(url,), size=len(archive))
    )
    dm = CatsVsDogsDataModule(data_dir=tmp_path, progress=False, image_size=24)
    with caplog.at_level(logging.WARNING, logger="nnlab.data.images"):
        dm.prepare_data()
    skipped = [r for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert len(skipped) == 1  # one warning for all of them
    assert "skipped 2 of 14 images" in skipped[0].getMessage()
    assert "Cat/666.jpg" in skipped[0].getMessage() and "Dog/11702.jpg" in skipped[0].getMessage()
    extracted = tmp_path / "cats_vs_dogs" / "kagglecatsanddogs" / "PetImages"
    assert (extracted / "Cat" / "Thumbs.db").exists()  # extracted, but not taken for an image
    dm.setup()
    assert dm.spec.class_names == ("cat", "dog")
    assert sum(len(v[0]) for v in dm.splits.values()) == n_good
    # Extracted and cached: a new process downloads nothing and decodes nothing.
    monkeypatch.setattr(images, "decode_images", no_decoding)
    CatsVsDogsDataModule(data_dir=tmp_path, progress=False, image_size=24).prepare_data()
    assert file_server.requests["ms/kagglecatsanddogs_5340.zip"] == 1


def test_image_folder_of_your_own_any_number_of_classes(make_cfg, tmp_path: Path) -> None:
    """data=image_folder through train.py: the 160 real JPEGs as two classes plus a third of
    plain grey pictures, trained as a 3-way softmax."""
    real = shared("cats_vs_dogs/train")
    root = tmp_path / "pictures"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for f in sorted((real / cls).iterdir()):
            shutil.copyfile(f, root / cls / f.name)
    (root / "grey").mkdir()
    for i in range(80):
        (root / "grey" / f"{i}.jpg").write_bytes(jpeg((100 + i, 100 + i, 100 + i)))
    cfg = make_cfg(
        "data=image_folder",
        f"data.root={root}",
        f"paths.data_dir={tmp_path / 'data'}",
        "logger=none",
    )
    train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    spec = results["spec"]
    assert spec["task"] == "multiclass" and spec["class_names"] == ["cat", "dog", "grey"]
    assert spec["input_shape"] == [3, 32, 32] and spec["num_targets"] == 1
    # The grey third is told apart; cats vs dogs at least at chance: well above 1/3.
    assert results["test"]["test/acc"] > 0.55
    confusion = (Path(cfg.paths.output_dir) / "diagnostics" / "confusion_matrix.csv").read_text()
    grey = next(line for line in confusion.splitlines() if ",grey," in line).split(",")
    assert int(grey[-1]) == sum(map(int, grey[2:]))  # every grey validation picture
    assert list((tmp_path / "data" / "image_folder" / "cache").glob("32px-rgb-*.pt"))


def test_image_folder_needs_a_root_with_two_classes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.root must name your image folder"):
        ImageFolderDataModule()
    (tmp_path / "one" / "cat").mkdir(parents=True)
    (tmp_path / "one" / "cat" / "0.jpg").write_bytes(jpeg((1, 2, 3)))
    dm = ImageFolderDataModule(root=tmp_path / "one", data_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"has 1 class \(cat\); classification needs at least"):
        dm.load()


def picture_folder(root: Path, files: dict[str, int]) -> Path:
    """Writes small JPEGs: {"train/cat": 6, ...} puts 6 pictures in root/train/cat/."""
    for folder, n in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / folder / f"{i}.jpg").write_bytes(jpeg((30 * i % 255, 90, 160)))
    return root


def test_split_folders_become_the_data_sets_own_splits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = picture_folder(
        tmp_path / "pets",
        {"train/cat": 20, "train/dog": 20, "test/cat": 4, "test/dog": 3, "extras/x": 2},
    )
    (root / "valid").mkdir()
    (root / "valid" / "1.jpg").write_bytes(jpeg((1, 2, 3)))  # unlabelled: left out
    dm = ImageFolderDataModule(root=root, data_dir=tmp_path / "d", progress=False, seed=0)
    with caplog.at_level(logging.WARNING, logger="nnlab.data.images"):
        dm.setup()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "extras/ is not a split folder" in messages
    assert "valid/ holds no labelled images" in messages
    assert dm.spec.class_names == ("cat", "dog")
    test_x, test_y = dm.splits["test"]
    assert len(test_x) == 7 and torch.bincount(test_y).tolist() == [4, 3]  # test/ as it is
    # No val/ with labels: validation is drawn from train/ (15 % of 40), test is not.
    assert len(dm.splits["val"][0]) == 6 and len(dm.splits["train"][0]) == 34


def test_split_folders_label_every_split_with_the_train_classes(tmp_path: Path) -> None:
    root = picture_folder(
        tmp_path / "a", {"train/bird": 3, "train/cat": 3, "val/cat": 2, "test/bird": 2}
    )
    found, left_out = images.find_splits(root)
    assert set(found) == {"train", "val", "test"} and left_out == []
    assert all(f.classes == ("bird", "cat") for f in found.values())
    assert found["val"].labels == [1, 1] and found["test"].labels == [0, 0]
    picture_folder(tmp_path / "b", {"train/cat": 2, "val/cow": 1})
    with pytest.raises(ConfigError, match=r"val has classes that train has not \(cow\)"):
        images.find_splits(tmp_path / "b")


def test_kaggle_train_folder_of_named_files_is_a_split_and_test1_is_left_out(
    tmp_path: Path,
) -> None:
    root = tmp_path / "dogs-vs-cats"
    (root / "train").mkdir(parents=True)
    (root / "test1").mkdir()
    for i in range(4):
        (root / "train" / f"cat.{i}.jpg").write_bytes(jpeg((200, 100, 50)))
        (root / "train" / f"dog.{i}.jpg").write_bytes(jpeg((50, 100, 200)))
        (root / "test1" / f"{i}.jpg").write_bytes(jpeg((9, 9, 9)))
    found, left_out = images.find_splits(root)
    assert list(found) == ["train"] and found["train"].classes == ("cat", "dog")
    assert left_out == ["test1/ is not a split folder (train, val, test)"]


def test_a_class_named_train_is_still_a_class(tmp_path: Path) -> None:
    # Pictures of trains and planes: train/ holds images itself, not labelled folders.
    picture_folder(tmp_path / "vehicles", {"plane": 3, "train": 3})
    found, _ = images.find_splits(tmp_path / "vehicles")
    assert list(found) == ["train"] and found["train"].classes == ("plane", "train")
