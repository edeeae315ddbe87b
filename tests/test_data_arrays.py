"""Data in any reasonable form (issue 24, item 1): what a datamodule's `load()` returns is
converted and checked once by the base class (nnlab.data.arrays), and what a checkpoint saves
of a data set (its spec, the run's hyper-parameters, the datamodule's state) is plain Python and
tensors, read back with torch.load(weights_only=True)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nnlab.core import ConfigError
from nnlab.data.arrays import checked_splits
from nnlab.data.base import ArrayDataModule
from nnlab.tasks import build_module

from .conftest import CONFIG_DIR
from .helpers.data_formats import shared


class BreastCancer(ArrayDataModule):
    """A user's data set as the issue found it: scikit-learn's arrays and numpy class names."""

    task = "binary"

    def load(self):
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        return {"train": (d.data, d.target)}, tuple(d.target_names)


class Given(ArrayDataModule):
    """Returns whatever it is given, to check each form and each refusal."""

    def __init__(self, task: str, loaded: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task, self.loaded = task, loaded

    def load(self):
        return self.loaded

    def checked(self):
        return checked_splits(self.load(), self.task, self.describe_source())


def weights_only_roundtrip(value: Any) -> Any:
    """`value` saved with torch.save and read back as a checkpoint is: weights only."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def saved_parts(cfg, datamodule: ArrayDataModule) -> dict[str, Any]:
    """What a checkpoint holds of a data set: the task module's hyper-parameters (spec, data
    config, model...) and the datamodule's state (its preprocessing)."""
    module = build_module(cfg, datamodule.spec)
    return {"hyper_parameters": dict(module.hparams), "datamodule": datamodule.state_dict()}


def test_numpy_from_scikit_learn_trains_into_a_weights_only_checkpoint(make_cfg) -> None:
    cfg = make_cfg("data=digits")  # its model, loss, optimizer; the data is the user's
    dm = BreastCancer(batch_size=32)
    dm.setup()
    assert dm.spec.class_names == ("malignant", "benign")
    assert all(type(name) is str for name in dm.spec.class_names)
    x, y = dm.splits["train"]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert dm.spec.input_shape == (30,)
    saved = saved_parts(cfg, dm)
    assert weights_only_roundtrip(saved) == saved


def csv_files(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    rows = ["area,rooms,kind,price"] + [
        f"{a:.1f},{r},{k},{p:.2f}"
        for a, r, k, p in zip(
            rng.uniform(50, 200, 60),
            rng.integers(1, 6, 60),
            rng.choice(["flat", "house"], 60),
            rng.uniform(1e5, 5e5, 60),
            strict=True,
        )
    ]
    houses = tmp_path / "houses.csv"
    houses.write_text("\n".join(rows) + "\n")
    iris = tmp_path / "iris.csv"
    iris.write_text(
        "a,b,species\n"
        + "".join(
            f"{i % 7},{i % 5},{['setosa', 'virginica', 'versicolor'][i % 3]}\n" for i in range(60)
        )
    )
    return {"houses": str(houses), "iris": str(iris)}


# Every shipped data config, with the overrides that build it here, offline and small.
def offline_overrides(tmp_path: Path) -> dict[str, list[str] | str]:
    csv = csv_files(tmp_path)
    cache = f"paths.data_dir={tmp_path / 'data'}"
    return {
        "digits": [],
        "xor": [],
        "separable": [],
        "linear_regression": [],
        "synthetic_mnist": ["data.n_train=600", "data.n_test=100"],
        "house_prices_csv": [f"data.path={csv['houses']}", "data.target=price"],
        "csv_classification": [f"data.path={csv['iris']}", "data.target=species"],
        "cats_vs_dogs": [f"data.root={shared('cats_vs_dogs')}", "data.image_size=16", cache],
        "image_folder": [f"data.root={shared('cats_vs_dogs')}", "data.image_size=16", cache],
        "california_housing": [f"data.path={shared('california_housing/housing.csv')}", cache],
        "ames_house_prices": [f"data.path={shared('ames_house_prices/train.csv')}", cache],
        # Not buildable offline here: shared/data has MNIST's test files only, the others none.
        "mnist": "needs MNIST's training files (shared/data has the test files only)",
        "fashion_mnist": "a download",
        "kmnist": "a download",
        "cifar10_cats_dogs": "a download",
    }


def test_the_list_names_every_shipped_data_config(tmp_path: Path) -> None:
    shipped = {p.stem for p in (CONFIG_DIR / "data").glob("*.yaml")}
    assert set(offline_overrides(tmp_path)) == shipped


@pytest.mark.parametrize(
    "name",
    [
        "digits",
        "xor",
        "separable",
        "linear_regression",
        "synthetic_mnist",
        "house_prices_csv",
        "csv_classification",
        "cats_vs_dogs",
        "image_folder",
        "california_housing",
        "ames_house_prices",
    ],
)
def test_every_shipped_data_set_saves_as_plain_data(make_cfg, tmp_path: Path, name: str) -> None:
    overrides = offline_overrides(tmp_path)[name]
    assert isinstance(overrides, list)
    cfg = make_cfg(f"data={name}", *overrides)
    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup()
    assert all(type(name) is str for name in dm.spec.class_names)
    saved = saved_parts(cfg, dm)
    loaded = weights_only_roundtrip(saved)
    assert loaded == saved
    assert OmegaConf.to_container(cfg.data, resolve=True) == loaded["hyper_parameters"]["data"]


@pytest.mark.parametrize(
    ("x", "y", "task", "names", "x_dtype", "expected_names"),
    [
        # int8 labels, float64 inputs, numpy string names
        (
            np.ones((6, 2)),
            np.array([0, 1, 2, 0, 1, 2], np.int8),
            "multiclass",
            np.array(["a", "b", "c"]),
            torch.float32,
            ("a", "b", "c"),
        ),
        # uint16 labels, uint8 images kept, names as numbers, bytes and numpy ints
        (
            np.zeros((4, 1, 2, 2), np.uint8),
            np.array([0, 1, 2, 1], np.uint16),
            "multiclass",
            [7, b"seven", np.int64(3)],
            torch.uint8,
            ("7", "seven", "3"),
        ),
        # bool labels, lists, no names: "0", "1"
        (
            [[0.0], [1.0], [2.0], [3.0]],
            [False, True, True, False],
            "binary",
            None,
            torch.float32,
            ("0", "1"),
        ),
        # whole-number float labels (pandas' usual), (N, 1), torch float64
        (
            torch.ones(4, 3, dtype=torch.float64),
            np.array([[0.0], [1.0], [3.0], [2.0]]),
            "multiclass",
            (),
            torch.float32,
            ("0", "1", "2", "3"),
        ),
    ],
)
def test_labels_and_names_in_any_form(x, y, task, names, x_dtype, expected_names) -> None:
    dm = Given(task, ({"train": (x, y)}, names), val_fraction=0.25, test_fraction=0.25)
    splits, class_names = dm.checked()
    assert class_names == expected_names
    assert all(type(n) is str for n in class_names)
    x_t, y_t = splits["train"]
    assert x_t.dtype == x_dtype and y_t.dtype == torch.int64 and y_t.dim() == 1
    assert y_t.tolist() == np.asarray(y).reshape(-1).astype(np.int64).tolist()


def test_regression_targets_become_float32() -> None:
    x = np.arange(20, dtype=np.int32).reshape(10, 2)
    y = np.arange(10, dtype=np.int64)
    dm = Given("regression", ({"train": (x, y), "test": (x[:3], y[:3])}, ()))
    splits, names = dm.checked()
    assert names == ()
    assert splits["train"][1].dtype == torch.float32
    assert splits["test"][0].dtype == torch.float32
    assert splits["train"][1].tolist() == list(range(10))


SOURCE = "tests.test_data_arrays.Given"
ROWS = np.zeros((4, 2))


@pytest.mark.parametrize(
    ("task", "loaded", "message"),
    [
        ("binary", (ROWS, [0, 1, 0, 1]), "load() must return ("),
        ("binary", ({"val": (ROWS, [0, 1, 0, 1])}, None), "the splits have no 'train'"),
        (
            "binary",
            ({"train": (ROWS, [0, 1, 0, 1]), "holdout": (ROWS, [0, 1, 0, 1])}, None),
            "split(s) holdout; valid: train, val, test",
        ),
        ("binary", ({"train": (ROWS, [0, 1, 0])}, None), "train has 4 inputs but 3 targets"),
        ("binary", ({"train": (np.zeros(4), [0, 1, 0, 1])}, None), "x.reshape(-1, 1)"),
        (
            "binary",
            ({"train": (ROWS, [0, 1, 0, 1]), "test": (np.zeros((2, 3)), [0, 1])}, None),
            "test inputs are (3,) per sample, train's (2,)",
        ),
        ("binary", ({"train": (ROWS + 1j, [0, 1, 0, 1])}, None), "dtype complex128"),
        ("binary", ({"train": (np.array([["a", "b"]] * 4), [0, 1, 0, 1])}, None), "dtype <U1"),
        (
            "binary",
            ({"train": (torch.zeros(4, 2, dtype=torch.cfloat), [0, 1, 0, 1])}, None),
            "complex",
        ),
        (
            "binary",
            ({"train": (np.array([[0, 1], [2, np.nan], [1, 1], [0, 0]]), [0, 1, 0, 1])}, None),
            "1 values that are not finite",
        ),
        (
            "regression",
            ({"train": (np.full((4, 2), 1e300), [0.0, 1.0, 2.0, 3.0])}, None),
            "beyond float32",
        ),
        (
            "regression",
            ({"train": (ROWS, [0.0, 1.0, np.inf, 3.0])}, None),
            "train targets hold 1 values that are not finite",
        ),
        (
            "regression",
            ({"train": (ROWS, [0.0, 1.0, 2.0, 3.0])}, ("a", "b")),
            "a regression data set has no class names, got 2",
        ),
        ("binary", ({"train": (ROWS, [0, 1, 2, 1])}, None), "labels go up to 2, but there are 2"),
        ("binary", ({"train": (ROWS, [0, 1, 0, 1])}, ("a", "b", "c")), "binary data set has 2"),
        (
            "multiclass",
            ({"train": (ROWS, [0, 1, 5, 1])}, ("a", "b", "c")),
            "labels go up to 5, but there are 3 classes (a, b, c): labels must be 0..2",
        ),
        ("multiclass", ({"train": (ROWS, [0, -1, 2, 1])}, None), "they hold -1"),
        ("multiclass", ({"train": (ROWS, [0.0, 0.5, 2.0, 1.0])}, None), "they hold 0.5"),
        (
            "multiclass",
            ({"train": (ROWS, np.full(4, 2**64 - 1, np.uint64))}, None),
            "out of any class range",
        ),
        (
            "multiclass",
            ({"train": (ROWS, [0, 1, 2, 1])}, ("a", "b", "a")),
            "class name(s) a appear more than once",
        ),
        ("multiclass", ({"train": (ROWS, [0, 0, 0, 0])}, ("a",)), "at least two classes"),
        ("multiclass", ({"train": (ROWS, np.zeros((4, 2), int))}, None), "(N,)"),
        (
            "multiclass",
            ({"train": (ROWS, [[0], [1], [0, 1], [1]])}, None),
            "cannot be read as one array",
        ),
    ],
)
def test_bad_data_is_one_error_naming_the_data_set(task, loaded, message) -> None:
    dm = Given(task, loaded)
    with pytest.raises(ConfigError) as e:
        dm.setup()
    assert str(e.value).startswith(f"data {SOURCE}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert dm.spec is None and not dm.splits  # nothing half set up
