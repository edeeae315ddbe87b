"""What a datamodule's `load()` may return, made into what every data set trains on.

A `load()` returns `({"train": (x, y), ["val": (x, y),] ["test": (x, y)]}, class_names)`, where
x and y may be numpy arrays, torch tensors or nested lists, of any real dtype, and the class
names of any type. `checked_splits` converts them once, the same way for every data set:

- inputs: (N, ...) with one row per sample; uint8 stays uint8 (images, normalized per batch),
  any other real dtype becomes float32; every value finite (in float32's range);
- targets: classification labels of any integer (or bool, or whole-number float) dtype
  become int64 class indices 0..k-1 of shape (N,); regression targets become float32 (N,)
  or (N, k), finite;
- class names become `str` (bytes decoded); a classification data set without names gets
  "0".."k-1"; a regression data set has none.

Anything else (lengths that differ, a complex or text dtype, a label out of range, NaN) is one
ConfigError naming the data set, the split and what is wrong. The results hold plain Python
strings and tensors only, so a checkpoint that saves them is read back with weights only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nnlab.core import ConfigError
from nnlab.data.splits import Split

SPLITS = ("train", "val", "test")
# numpy dtype kinds that hold real numbers: bool, signed and unsigned ints, floats.
REAL_KINDS = "biuf"
FORM = "load() must return ({'train': (x, y), optionally 'val' and 'test'}, class_names)"


def checked_splits(loaded: Any, task: str, source: str) -> tuple[dict[str, Split], tuple[str, ...]]:
    """`load()`'s result (`loaded`) for a data set of `task`, converted and checked (see the
    module's docstring); `source` names the data set in messages."""
    if not (isinstance(loaded, tuple | list) and len(loaded) == 2):
        raise ConfigError(f"data {source}: {FORM}, got {type(loaded).__name__}")
    raw, names = loaded
    if not isinstance(raw, Mapping) or "train" not in raw:
        raise ConfigError(f"data {source}: {FORM}; the splits have no 'train'")
    unknown = [str(k) for k in raw if k not in SPLITS]
    if unknown:
        raise ConfigError(
            f"data {source}: load() returned split(s) {', '.join(unknown)}; "
            f"valid: {', '.join(SPLITS)}"
        )
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        if split not in raw:
            continue
        pair = raw[split]
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ConfigError(f"data {source}: split {split} must be a pair (x, y), got {pair!r}")
        x = as_array(pair[0], f"data {source}: {split} inputs")
        y = as_array(pair[1], f"data {source}: {split} targets")
        pairs[split] = (x, y)
    check_shapes(pairs, task, source)
    if task == "regression":
        if names is not None and len(names) > 0:
            raise ConfigError(
                f"data {source}: a regression data set has no class names, got {len(names)}"
            )
        class_names: tuple[str, ...] = ()
        splits = {
            s: (inputs(x, s, source), regression_targets(y, s, source))
            for s, (x, y) in pairs.items()
        }
    else:
        labels = {s: class_labels(y, s, source) for s, (_, y) in pairs.items()}
        class_names = named_classes(names, labels, task, source)
        splits = {
            s: (inputs(x, s, source), torch.from_numpy(labels[s])) for s, (x, _) in pairs.items()
        }
    return splits, class_names


def as_array(value: Any, what: str) -> np.ndarray:
    """`value` (a tensor, an array, nested lists) as a numpy array of real numbers; a
    ConfigError naming `what` and the dtype for anything else."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ConfigError(f"{what} are complex ({value.dtype}); they must be real numbers")
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged lists
        raise ConfigError(f"{what} cannot be read as one array: {e}") from None
    if array.dtype.kind not in REAL_KINDS:
        raise ConfigError(
            f"{what} have dtype {array.dtype}; they must be real numbers (bool, int or float)"
        )
    return array


def check_shapes(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], task: str, source: str
) -> None:
    """Every split has samples, as many targets as inputs, inputs of 2 dimensions or more,
    and the same shape of one sample (and of one target) as the training split's."""
    x_train, y_train = pairs["train"]
    for split, (x, y) in pairs.items():
        where = f"data {source}: {split}"
        if x.ndim < 2:
            raise ConfigError(
                f"{where} inputs have shape {tuple(x.shape)}; they must be (N, ...), one row "
                "per sample (one feature per sample: x.reshape(-1, 1))"
            )
        if len(x) == 0:
            raise ConfigError(f"{where} has no samples")
        if len(x) != len(y):
            raise ConfigError(f"{where} has {len(x)} inputs but {len(y)} targets")
        if x.shape[1:] != x_train.shape[1:]:
            raise ConfigError(
                f"{where} inputs are {tuple(x.shape[1:])} per sample, train's "
                f"{tuple(x_train.shape[1:])}"
            )
        if task == "regression" and y.shape[1:] != y_train.shape[1:]:
            raise ConfigError(
                f"{where} targets are {tuple(y.shape[1:])} per sample, train's "
                f"{tuple(y_train.shape[1:])}"
            )


def inputs(x: np.ndarray, split: str, source: str) -> torch.Tensor:
    """Inputs as trained on: uint8 kept, anything else float32, every value finite."""
    if x.dtype != np.uint8:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32, copy=False)
        finite = np.isfinite(x)
        if not finite.all():
            raise ConfigError(
                f"data {source}: {split} inputs hold {int((~finite).sum()):,} values that are "
                "not finite (NaN, ±inf, or beyond float32's ±3.4e38)"
            )
    return as_tensor(x)


def regression_targets(y: np.ndarray, split: str, source: str) -> torch.Tensor:
    """Regression targets as trained on: float32 (N,) or (N, k), every value finite."""
    if y.ndim not in (1, 2):
        raise ConfigError(
            f"data {source}: {split} targets have shape {tuple(y.shape)}; regression targets "
            "are (N,) or (N, k)"
        )
    with np.errstate(over="ignore"):
        y = y.astype(np.float32, copy=False)
    finite = np.isfinite(y)
    if not finite.all():
        raise ConfigError(
            f"data {source}: {split} targets hold {int((~finite).sum()):,} values that are not "
            "finite (NaN, ±inf, or beyond float32's ±3.4e38)"
        )
    return as_tensor(y)


def class_labels(y: np.ndarray, split: str, source: str) -> np.ndarray:
    """Classification targets as int64 class indices of shape (N,): any integer or bool dtype,
    or floats that are whole numbers; (N, 1) is taken as (N,). Never negative."""
    where = f"data {source}: {split} labels"
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(
            f"{where} have shape {tuple(y.shape)}; class labels are one index per sample, (N,)"
        )
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            bad = y[~whole][0].item()
            raise ConfigError(
                f"{where} must be class indices 0, 1, 2, …; they hold {bad!r} (regression "
                "targets belong to a data set of task regression)"
            )
    if len(y) and y.min() < 0:
        raise ConfigError(f"{where} must be class indices 0, 1, 2, …; they hold {y.min().item()!r}")
    if y.dtype.kind == "u" and len(y) and y.max() > np.iinfo(np.int64).max:
        raise ConfigError(f"{where} hold {y.max().item()!r}, out of any class range")
    if y.dtype.kind == "f" and len(y) and y.max() >= 2.0**63:
        raise ConfigError(f"{where} hold {y.max().item()!r}, out of any class range")
    return np.ascontiguousarray(y.astype(np.int64, copy=False))


def named_classes(
    names: Any, labels: Mapping[str, np.ndarray], task: str, source: str
) -> tuple[str, ...]:
    """The class names as str ("0".."k-1" when `names` is empty or None), checked against the
    labels: binary has two classes, every label below the number of names, no name twice."""
    highest = max(int(y.max()) for y in labels.values())
    if names is None or (isinstance(names, Sequence | np.ndarray) and len(names) == 0):
        count = 2 if task == "binary" else highest + 1
        names = [str(i) for i in range(count)]
    elif isinstance(names, str | bytes) or not hasattr(names, "__iter__"):
        raise ConfigError(f"data {source}: class names must be a sequence of names, got {names!r}")
    named = tuple(name_str(n) for n in names)
    if task == "binary" and len(named) != 2:
        raise ConfigError(
            f"data {source}: a binary data set has 2 classes (0 and 1), got {len(named)} "
            f"class names ({', '.join(named)})"
        )
    if len(named) < 2:
        raise ConfigError(
            f"data {source}: classification needs at least two classes, got {len(named)}"
        )
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise ConfigError(f"data {source}: class name(s) {', '.join(twice)} appear more than once")
    if highest >= len(named):
        raise ConfigError(
            f"data {source}: labels go up to {highest}, but there are {len(named)} classes "
            f"({', '.join(named)}): labels must be 0..{len(named) - 1}"
        )
    return named


def name_str(name: Any) -> str:
    """A class name as a plain str (numpy strings and numbers included; bytes decoded)."""
    if isinstance(name, bytes):
        return name.decode("utf-8", errors="replace")
    if isinstance(name, np.generic):
        return name_str(name.item())
    return str(name)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory where it can (a copy of a read-only array)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)
