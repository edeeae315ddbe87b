"""Tables as data sets: a table whose `target` column is predicted from the others, as numbers
to regress or as classes, with the features of nnlab.data.features fitted on the training split
only; and any CSV file as such a table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnlab.core import ConfigError
from nnlab.data.base import ArrayDataModule, Split
from nnlab.data.csv_reader import read_csv
from nnlab.data.features import Features, fit_features, is_numeric, scale_target
from nnlab.data.spec import TargetScale
from nnlab.data.splits import seeded_splits

log = logging.getLogger(__name__)

# Class names of a classification target; () for regression.
Classes = tuple[str, ...]


class TableDataModule(ArrayDataModule):
    """A table whose `target` column is predicted from the others; subclasses decide what the
    target is (a number to regress, or a class) and where the table comes from.

    Features (nnlab.data.features), fitted on the training split only: numeric columns get
    missing values imputed with the median (plus a 0/1 "was missing" column) and are
    standardized; text columns (and those named in `categorical`) get missing values as their
    own category and are one-hot encoded, categories unseen in training encoding as all zeros.
    Rows without a target are left out (with a warning).

    Args:
        target: the column to predict.
        drop: columns that are not features (e.g. an Id).
        categorical: numeric-looking columns that are codes, to one-hot encode (e.g. MSSubClass).
    """

    def __init__(
        self,
        target: str,
        drop: Sequence[str] = (),
        categorical: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not target:
            raise ConfigError("data.target must name the column to predict")
        self.target, self.drop, self.categorical = target, list(drop), list(categorical)
        # Filled by load(): the columns used as numbers and as categories, and the names of
        # the resulting features (one-hot columns as <column>_<category>).
        self.numeric_columns: list[str] = []
        self.text_columns: list[str] = []
        self.feature_names: list[str] = []

    # -- what a subclass provides ------------------------------------------------------------
    def read_table(self) -> pd.DataFrame:
        """The table: numeric columns as numbers, the others as text (NaN where missing);
        columns in `text_read` as text whatever they hold."""
        raise NotImplementedError

    def describe_source(self) -> str:
        """The table's name in error messages."""
        return type(self).__name__

    def read_targets(self, table: pd.DataFrame) -> tuple[np.ndarray, Classes]:
        """The target column as an array (NaN where missing) and the class names (none for
        regression); raises ConfigError when it cannot hold this task's targets."""
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
        present = ~np.isnan(y)
        if not present.all():
            log.warning(
                "%s: %d rows have no %s and are left out",
                self.describe_source(),
                int((~present).sum()),
                self.target,
            )
            table, y = table[present], y[present]
        # The seeded split the base class makes, on row indices, so that the feature pipeline
        # and the target scale can be fitted on the training rows alone.
        idx = torch.arange(len(table))
        parts = seeded_splits(
            {"train": (idx, idx)}, self.val_fraction, self.test_fraction, self.seed
        )
        train, val, test = (parts[s][0] for s in ("train", "val", "test"))
        features = self._features(table, train.numpy())
        y_t = self.target_tensor(y, train.numpy())
        x_t = torch.from_numpy(features.x)
        splits = {
            name: (x_t[i], y_t[i]) for name, i in (("train", train), ("val", val), ("test", test))
        }
        return splits, classes

    def _features(self, table: pd.DataFrame, train: np.ndarray) -> Features:
        columns = [c for c in table.columns if c != self.target and c not in self.drop]
        if not columns:
            raise ConfigError(f"{self.describe_source()}: no feature columns are left")
        features = fit_features(table[columns], train, self.categorical, self.describe_source())
        self.numeric_columns, self.text_columns = features.numeric_columns, features.text_columns
        self.feature_names = features.names
        return features

    def _check_columns(self, header: list[str]) -> None:
        cols = ", ".join(header)
        if self.target not in header:
            raise ConfigError(
                f"data.target={self.target} is not a column of {self.describe_source()}; "
                f"its columns: {cols}"
            )
        for key, names in (("drop", self.drop), ("categorical", self.categorical)):
            unknown = [n for n in names if n not in header]
            if unknown:
                raise ConfigError(
                    f"data.{key} names {', '.join(unknown)}, not columns of "
                    f"{self.describe_source()}; its columns: {cols}"
                )
        if self.target in self.drop or self.target in self.categorical:
            raise ConfigError(f"data.target={self.target} cannot also be in data.drop/categorical")


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
        present = y[~np.isnan(y)]
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
        index = {v: i for i, v in enumerate(values)}
        y = cells.map(index).to_numpy(np.float64, na_value=np.nan)
        return y, tuple(values)

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


class CSVRegressionDataModule(CSVFile, RegressionTableDataModule):
    """Any CSV file with a header line (`path`): predicts the numeric column `target` from the
    others (see TableDataModule for the features)."""


class CSVClassificationDataModule(CSVFile, ClassificationTableDataModule):
    """Any CSV file with a header line (`path`): predicts the class in column `target` from the
    others (see ClassificationTableDataModule)."""
