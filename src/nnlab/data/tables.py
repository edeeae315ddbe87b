"""Tables as data sets: a table whose `target` column is predicted from the others, as numbers
to regress or as classes, with the features of nnlab.data.features fitted on the training split
only; and any CSV file as such a table. The fitted pipeline is plain data
(`TableDataModule.preprocessing()`), rebuilt for new rows by `table_pipeline_from_state`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnlab.core import ConfigError
from nnlab.core.components import register_datamodule
from nnlab.data.base import ArrayDataModule, Split
from nnlab.data.csv_reader import read_csv
from nnlab.data.features import TablePipeline, fit_pipeline, is_numeric
from nnlab.data.spec import TargetScale
from nnlab.data.splits import seeded_splits

log = logging.getLogger(__name__)

# Class names of a classification target; () for regression.
Classes = tuple[str, ...]
# A classification target needs this many rows per class on average: fewer, and its values are
# measurements (prices, sizes) rather than classes.
ROWS_PER_CLASS = 5
# At most this many distinct values in a classification target with non-integer numbers.
MAX_FRACTIONAL_CLASSES = 20


def table_pipeline_from_state(state: dict[str, Any]) -> TablePipeline:
    """The fitted pipeline of a TableDataModule's `preprocessing()` (as saved in a
    checkpoint), to give new rows the features training gave its rows (`transform`) and to read
    outputs in the target's own terms (`inverse_target`)."""
    if state.get("kind") != "table":
        raise ConfigError(f"not a table's preprocessing (kind {state.get('kind')!r})")
    return TablePipeline.from_state(state)


class TableDataModule(ArrayDataModule):
    """A table whose `target` column is predicted from the others; subclasses decide what the
    target is (a number to regress, or a class) and where the table comes from.

    Features (nnlab.data.features), fitted on the training split only: numeric columns get
    missing and infinite values imputed with the median (plus a 0/1 "was missing" column) and
    are standardized; date columns become numbers (year, month, day of year, days since the
    first training date) treated the same way; text columns (and those named in `categorical`)
    get missing values as their own category and are one-hot encoded, categories unseen in
    training encoding as all zeros. Identifiers (a different value in every row: text, or
    integers under a name such as id) are left out with a warning. Rows without a target are
    left out (with a warning).

    Args:
        target: the column to predict.
        drop: columns that are not features (e.g. a leak).
        categorical: numeric-looking columns that are codes, to one-hot encode (e.g. MSSubClass).
        keep: columns used as they read (numbers, or text one-hot encoded), never taken for an
            identifier or a date.
    """

    def __init__(
        self,
        target: str,
        drop: Sequence[str] = (),
        categorical: Sequence[str] = (),
        keep: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not target:
            raise ConfigError("data.target must name the column to predict")
        self.target, self.drop, self.categorical = target, list(drop), list(categorical)
        self.keep = list(keep)
        # Filled by load(): the fitted pipeline; the columns used as numbers, dates and
        # categories; the names of the features (one-hot columns as <column>_<category>), and
        # which features each column became (or why none: the feature map of results.json).
        self.pipeline: TablePipeline | None = None
        self.numeric_columns: list[str] = []
        self.date_columns: list[str] = []
        self.text_columns: list[str] = []
        self.feature_names: list[str] = []
        self.feature_map: dict[str, list[str] | str] = {}

    # -- what a subclass provides ------------------------------------------------------------
    def read_table(self) -> pd.DataFrame:
        """The table: numeric columns as numbers, the others as text (NaN where missing);
        columns in `text_read` as text whatever they hold."""
        raise NotImplementedError

    def describe_source(self) -> str:
        """The table's name in error messages."""
        return type(self).__name__

    def read_targets(self, table: pd.DataFrame) -> tuple[np.ndarray, Classes]:
        """The target column as an array (NaN where missing, ±inf where infinite) and the
        class names (none for regression); raises ConfigError when it cannot hold this task's
        targets."""
        raise NotImplementedError

    def target_tensor(self, y: np.ndarray, train: np.ndarray) -> torch.Tensor:
        """The targets as the model trains on them, fitted on the training rows `train`."""
        raise NotImplementedError

    @property
    def text_read(self) -> list[str]:
        """The columns read as text whatever they hold: codes, and (classification) the
        target, whose classes are named as written."""
        return self.categorical

    # -- the same for every table -------------------------------------------------------------
    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        table = self.read_table()
        self._check_columns(list(table.columns))
        y, classes = self.read_targets(table)
        table, y = self._rows_with_targets(table, y)
        # The seeded split the base class makes, on row indices, so that the feature pipeline
        # and the target scale can be fitted on the training rows alone.
        idx = torch.arange(len(table))
        # k-fold (data.folds): classes stratify the folds, by their indices in y.
        stratify = self.task != "regression"
        labels = torch.from_numpy(y).long() if stratify else idx
        parts = seeded_splits(
            {"train": (idx, labels)},
            self.val_fraction,
            self.test_fraction,
            self.seed,
            self.folds,
            self.fold,
            stratify,
        )
        train, val, test = (parts[s][0] for s in ("train", "val", "test"))
        features = self._features(table, train.numpy())
        y_t = self.target_tensor(y, train.numpy())
        self.pipeline.target, self.pipeline.task = self.target, self.task
        self.pipeline.class_names = list(classes)
        scale = getattr(self, "target_scale", None)
        self.pipeline.target_scale = None if scale is None else asdict(scale)
        x_t = torch.from_numpy(features)
        splits = {
            name: (x_t[i], y_t[i]) for name, i in (("train", train), ("val", val), ("test", test))
        }
        return splits, classes

    def _rows_with_targets(
        self, table: pd.DataFrame, y: np.ndarray
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows whose target is present and finite; the others are left out with a
        warning that counts them."""
        missing, infinite = np.isnan(y), np.isinf(y)
        if not (missing.any() or infinite.any()):
            return table, y
        said = [f"{int(missing.sum())} without {self.target}"] if missing.any() else []
        said += [f"{int(infinite.sum())} with an infinite {self.target}"] if infinite.any() else []
        log.warning("%s: rows left out: %s", self.describe_source(), ", ".join(said))
        keep = ~(missing | infinite)
        if not keep.any():
            raise ConfigError(f"{self.describe_source()}: no row has a finite {self.target}")
        return table[keep], y[keep]

    def _features(self, table: pd.DataFrame, train: np.ndarray) -> np.ndarray:
        source = self.describe_source()
        columns = table.drop(columns=[self.target])
        self.pipeline, features = fit_pipeline(
            columns, train, self.drop, self.categorical, self.keep, source
        )
        pipeline = self.pipeline
        self.numeric_columns, self.text_columns = pipeline.numbers, pipeline.text
        self.date_columns = list(pipeline.dates)
        self.feature_names = pipeline.names
        self.feature_map = pipeline.feature_map()
        return features

    def preprocessing(self) -> dict[str, Any]:
        """The fitted table pipeline as plain data, with "kind": "table" (see
        ArrayDataModule.preprocessing; `table_pipeline_from_state` rebuilds it)."""
        base = super().preprocessing()
        return {**base, **self.pipeline.state(), "kind": "table"}

    def _check_columns(self, header: list[str]) -> None:
        cols = ", ".join(header)
        if self.target not in header:
            raise ConfigError(
                f"data.target={self.target} is not a column of {self.describe_source()}; "
                f"its columns: {cols}"
            )
        named = (("drop", self.drop), ("categorical", self.categorical), ("keep", self.keep))
        for key, names in named:
            unknown = [n for n in names if n not in header]
            if unknown:
                raise ConfigError(
                    f"data.{key} names {', '.join(unknown)}, not columns of "
                    f"{self.describe_source()}; its columns: {cols}"
                )
        if self.target in (*self.drop, *self.categorical, *self.keep):
            raise ConfigError(
                f"data.target={self.target} cannot also be in data.drop/categorical/keep"
            )


def scale_target(
    y: np.ndarray, train: np.ndarray, log_target: bool, standardize: bool
) -> tuple[np.ndarray, TargetScale | None]:
    """The regression targets as the model trains on them, log(y) if `log_target`, then
    (· − mean) / std with the statistics of the rows `train` if `standardize`; and the scale
    that maps them back (None when they are the targets themselves)."""
    y_model = np.log(y) if log_target else y
    mean, std = 0.0, 1.0
    if standardize:
        mean = float(y_model[train].mean())
        std = float(y_model[train].std()) or 1.0
    scale = TargetScale(mean, std, log_target) if standardize or log_target else None
    return (y_model - mean) / std, scale


class RegressionTableDataModule(TableDataModule):
    """Regression on a table: predicts the numeric `target` column from the others (see
    TableDataModule for the features).

    Args:
        log_target: train on log(target) (targets must be > 0); the metric of Kaggle's house
            price competition is the RMSE of log prices.
        standardize_target: train on (target − mean) / std with training-split statistics.
    """

    task = "regression"

    def __init__(
        self,
        target: str,
        log_target: bool = False,
        standardize_target: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(target=target, **kwargs)
        self.log_target, self.standardize_target = log_target, standardize_target
        self.target_scale: TargetScale | None = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.spec is not None and self.spec.target_scale != self.target_scale:
            self.spec = replace(self.spec, target_scale=self.target_scale)

    def read_targets(self, table: pd.DataFrame) -> tuple[np.ndarray, Classes]:
        column = table[self.target]
        if not is_numeric(column):
            bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
            numeric = [c for c in table.columns if is_numeric(table[c])]
            raise ConfigError(
                f"data.target={self.target} in {self.describe_source()} is not numeric (it holds "
                f"{bad.iloc[0]!r}); regression needs a number to predict (data=csv_classification "
                f"predicts classes). Numeric columns: {', '.join(numeric) or 'none'}"
            )
        y = column.to_numpy(np.float64, na_value=np.nan)
        present = y[np.isfinite(y)]
        largest = float(np.abs(present).max(initial=0.0))
        if largest > float(np.finfo(np.float32).max):  # training and its metrics: float32
            raise ConfigError(
                f"data.target={self.target} in {self.describe_source()} holds {largest:g}, "
                "beyond float32's range (3.4e38) in which the target scaling and the metrics on "
                f"the original scale are computed: rescale the {self.target} column (e.g. "
                "divide it by a power of ten)"
            )
        if self.log_target and (present <= 0).any():
            raise ConfigError(
                f"data.log_target=true needs {self.target} > 0, but its minimum is "
                f"{present.min():g}"
            )
        return y, ()

    def target_tensor(self, y: np.ndarray, train: np.ndarray) -> torch.Tensor:
        y_model, self.target_scale = scale_target(
            y, train, self.log_target, self.standardize_target
        )
        return torch.from_numpy(y_model).float()


class ClassificationTableDataModule(TableDataModule):
    """Classification on a table: predicts the class in column `target` (text or numbers, e.g.
    species or 0/1) from the others, as a softmax over the classes found (see TableDataModule
    for the features). Classes are the distinct target values as written, sorted (numerically
    when they are all numbers).
    """

    task = "multiclass"

    @property
    def text_read(self) -> list[str]:
        return [*self.categorical, self.target]

    def read_targets(self, table: pd.DataFrame) -> tuple[np.ndarray, Classes]:
        cells = table[self.target]
        if is_numeric(cells):  # a table not read as text (codes): the numbers as written
            cells = cells.map(str, na_action="ignore")
        values = sorted(cells.dropna().unique())
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
        if not numbers.isna().any():
            values = [v for _, v in sorted(zip(numbers, values, strict=True))]
        if len(values) < 2:
            raise ConfigError(
                f"data.target={self.target} in {self.describe_source()} holds "
                f"{len(values)} class ({', '.join(values)}); classification needs at least two"
            )
        self._check_class_count(values, numbers, int(cells.notna().sum()))
        index = {v: i for i, v in enumerate(values)}
        y = cells.map(index).to_numpy(np.float64, na_value=np.nan)
        return y, tuple(values)

    def _check_class_count(self, values: list[str], numbers: pd.Series, rows: int) -> None:
        """Raises ConfigError for a target that holds measurements rather than classes: fewer
        than ROWS_PER_CLASS rows per distinct value, or more than MAX_FRACTIONAL_CLASSES
        numbers with fractions."""
        fractional = not numbers.isna().any() and bool((numbers != numbers.round()).any())
        too_many = len(values) * ROWS_PER_CLASS > rows
        if not too_many and not (fractional and len(values) > MAX_FRACTIONAL_CLASSES):
            return
        examples = ", ".join(values[:3])
        why = (
            f"fewer than {ROWS_PER_CLASS} rows per class" if too_many else "numbers with fractions"
        )
        raise ConfigError(
            f"data.target={self.target} in {self.describe_source()} holds {len(values):,} "
            f"distinct values in {rows:,} rows ({examples}, …): {why}, a number to predict "
            f"rather than a class; use the regression data module: data=house_prices_csv"
        )

    def target_tensor(self, y: np.ndarray, train: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64))


class CSVFile:
    """The table of a TableDataModule read from a CSV file with a header line (`path`)."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ConfigError("data.path must name a CSV file, e.g. data.path=my_table.csv")
        self.path = Path(path).expanduser()

    def describe_source(self) -> str:
        return str(self.path)

    def read_table(self) -> pd.DataFrame:
        return read_csv(self.path, text=self.text_read)


@register_datamodule
class CSVRegressionDataModule(CSVFile, RegressionTableDataModule):
    """Any CSV file with a header line (`path`): predicts the numeric column `target` from the
    others (see TableDataModule for the features)."""


@register_datamodule
class CSVClassificationDataModule(CSVFile, ClassificationTableDataModule):
    """Any CSV file with a header line (`path`): predicts the class in column `target` from the
    others (see ClassificationTableDataModule)."""
