"""The feature pipeline of the tables, fitted on the training rows only: numeric columns get
missing values imputed with the median (plus a 0/1 "was missing" column) and are standardized;
text columns get missing values as their own category and are one-hot encoded, categories
unseen in training encoding as all zeros. And the regression target's scale: optionally a log,
then standardization with training statistics."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nnlab.data.spec import TargetScale

if TYPE_CHECKING:  # sklearn is imported where it is used: it takes 0.5 s
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass
class Features:
    """A table's features, one row per table row, and what they were made from."""

    x: np.ndarray  # (rows, features) float32
    numeric_columns: list[str]  # the columns used as numbers
    text_columns: list[str]  # the columns used as categories
    names: list[str]  # one per feature; one-hot columns as <column>_<category>


def is_numeric(column: pd.Series) -> bool:
    """Whether a column holds numbers (int or float) rather than text."""
    return column.dtype.kind in "iuf"


def fit_features(
    table: pd.DataFrame, train: np.ndarray, categorical: Collection[str], source: str
) -> Features:
    """The features of every row of `table` (its columns are all features), the pipeline
    fitted on the rows `train`; numeric columns named in `categorical` are one-hot encoded as
    codes. `source` names the table in log messages.

    The numeric and the text columns go to their scikit-learn pipelines as one numpy array each
    (floats, objects), converted from the DataFrame once and then transformed in place: a
    ColumnTransformer on the DataFrame converts and copies it in each step (60,000 × 784
    numbers: 3.7 s of 9).
    """
    numeric = [c for c in table.columns if is_numeric(table[c]) and c not in categorical]
    text = [c for c in table.columns if c not in numeric]
    blocks, names = [], []
    if numeric:
        x, numeric_names = _numeric_features(table[numeric], train)
        blocks.append(x)
        names += numeric_names
    if text:
        _warn_about_ids(table, text, train, source)
        cells = np.stack([as_text(table[c]).to_numpy(object) for c in text], axis=1)
        pipeline = text_pipeline().fit(cells[train])
        blocks.append(pipeline.transform(cells).astype(np.float32))
        names += list(pipeline.get_feature_names_out(text))
    x = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    log.info(
        "%s: %d numeric and %d text columns → %d features",
        source,
        len(numeric),
        len(text),
        len(names),
    )
    return Features(x, numeric, text, names)


def _numeric_features(table: pd.DataFrame, train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The numeric columns' features (float32, row-major: the model's batches are rows) and
    their names."""
    x = table.to_numpy(np.float64, copy=True)  # column-major, as pandas holds the columns
    x_train = take_rows(x, train)
    pipeline = numeric_pipeline(bool(np.isnan(x).any()), bool(np.isnan(x_train).any()))
    pipeline.fit(x_train)
    del x_train  # transformed in place by the fit: of no more use
    out = pipeline.transform(x).astype(np.float32, order="C")
    return out, [feature_name(n) for n in pipeline.get_feature_names_out(list(table.columns))]


def take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] for a column-major x, column-major as well (the imputer's and the scaler's fit
    run column by column: on a row-major copy they take twice as long), gathered column by
    column (numpy's x[rows] gathers row by row: 60,000 × 784 numbers, 0.4 s instead of 0.25)."""
    out = np.empty((len(rows), x.shape[1]), order="F")
    for j in range(x.shape[1]):
        np.take(x[:, j], rows, out=out[:, j])
    return out


def numeric_pipeline(missing: bool, missing_in_train: bool) -> Pipeline:
    """Missing values imputed with the training median, plus a 0/1 "was missing" feature for
    each column with missing training values; then standardized. It transforms the array it
    is given in place.

    missing, missing_in_train: whether the table, and its training rows, miss any value.
    Without, the imputer would change nothing, and the indicator would add no feature: they
    are left out, and with them the copies of the table they make.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(copy=False)
    if not missing:
        return make_pipeline(scaler)
    imputer = SimpleImputer(strategy=median, add_indicator=missing_in_train, copy=False)
    return make_pipeline(imputer, scaler)


def text_pipeline() -> Pipeline:
    """Missing values as a category of their own ("missing"), then one-hot encoded; a category
    unseen in training encodes as all zeros."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    return make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )


def median(values: np.ndarray) -> float:
    """The median of a column's present values (NaN for none), as SimpleImputer's "median"
    strategy computes it, but with np.median's partition instead of a sort of the masked
    training table (60,000 × 784: 0.3 s instead of 8 s)."""
    return float(np.median(values)) if len(values) else math.nan


def as_text(column: pd.Series) -> pd.Series:
    """A column as text cells (objects; NaN where missing): numbers as Python writes them."""
    return column.astype(object).where(column.notna()).map(str, na_action="ignore")


def _warn_about_ids(table: pd.DataFrame, text: list[str], train: np.ndarray, source: str) -> None:
    """Warns about each text column with a distinct value in most training rows (a name, an
    id): it would become one feature per row."""
    for name in text:
        distinct = table[name].iloc[train].nunique(dropna=False)
        if distinct > max(20, len(train) // 2):
            log.warning(
                "%s: text column %s has %d distinct values in %d training rows (an id or a "
                "name?): one feature each; leave it out with data.drop=[%s]",
                source,
                name,
                distinct,
                len(train),
                name,
            )


def feature_name(name: str) -> str:
    """A numeric feature's name from sklearn's (x, missingindicator_x): x, missing_x."""
    if name.startswith("missingindicator_"):
        return "missing_" + name.removeprefix("missingindicator_")
    return name


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
