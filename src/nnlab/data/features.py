"""The feature pipeline of the tables, fitted on the training rows only, as plain data
(`TablePipeline`: lists, numbers and text, so a checkpoint holding its `state()` is read with
weights only, and predict.py gives new rows exactly the features training gave).

Numeric columns get missing (and infinite) values imputed with the training median, plus a 0/1
"was missing" feature for each column with missing training values, and are standardized (the
0/1 features too); date columns become numbers (year, month, day of year, days since the first
training date) treated the same way; text columns get missing values as their own category and
are one-hot encoded, categories unseen in training encoding as all zeros. Identifiers are left
out."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nnlab.core import ConfigError
from nnlab.data import columns as kinds
from nnlab.data.spec import TargetScale

log = logging.getLogger(__name__)

# Why a column is not a feature, as the feature map says it.
DROPPED = "left out (data.drop)"
IDENTIFIER = "left out (identifier: a different value in every row)"
EMPTY = "left out (no value in the training rows)"
# One-hot columns listed one by one in the log line of the feature map; more are counted.
LOGGED_CATEGORIES = 6


@dataclass
class TablePipeline:
    """A table's fitted features and target, as plain data (see the module docstring).

    The features of a row, in order: the `numbers` columns and then each date column's parts
    (`inputs`), imputed with `medians` and standardized; a 0/1 feature per input in
    `indicators` (missing in training), standardized; then each `text` column one-hot over its
    `categories`. `means`, `scales`: of the inputs, then of the indicators.
    """

    columns: list[str]  # the table's columns but the target, in file order
    numbers: list[str]
    dates: dict[str, dict[str, Any]]  # column: {"format", "reference" (ISO), "hour"}
    inputs: list[str]
    medians: list[float]
    indicators: list[str]
    means: list[float]
    scales: list[float]
    text: list[str]
    categories: list[list[str]]
    dropped: dict[str, str]  # column: why it is no feature
    target: str = ""
    task: str = "regression"
    class_names: list[str] = field(default_factory=list)
    target_scale: dict[str, Any] | None = None  # TargetScale's fields
    source: str = "the table"  # names the table in messages
    # Whether new tables' unknown columns were warned about (not part of the state).
    _warned: bool = field(default=False, repr=False, compare=False)

    # -- plain data ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The pipeline as plain data (str, int, float, bool, None, lists, dicts), a copy."""
        return copy.deepcopy(
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name[0] != "_"}
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TablePipeline:
        """The pipeline `state()` gave; other keys of `state` are ignored."""
        names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        return cls(**{k: v for k, v in state.items() if k in names})

    # -- what it makes -----------------------------------------------------------------------
    @property
    def text_columns(self) -> list[str]:
        """The columns to read as text (read_csv's `text`): one-hot ones and dates, so that
        their cells stay as written (`007`, `20`)."""
        return [*self.text, *self.dates]

    @property
    def names(self) -> list[str]:
        """One name per feature: an input's, missing_<input>, <column>_<category>."""
        names = [*self.inputs, *(f"missing_{n}" for n in self.indicators)]
        for column, categories in zip(self.text, self.categories, strict=True):
            names += [f"{column}_{c}" for c in categories]
        return names

    def feature_map(self) -> dict[str, list[str] | str]:
        """Which features each column became (a list of names), or why it became none."""
        inputs = {c: [c] for c in self.numbers}
        for column in self.dates:
            inputs[column] = [n for n in self.inputs if n.startswith(f"{column}.")]
        out: dict[str, list[str] | str] = {}
        for column in self.columns:
            if column in self.dropped:
                out[column] = self.dropped[column]
            elif column in inputs:
                parts = [n for n in self.inputs if n in inputs[column]]
                out[column] = parts + [f"missing_{n}" for n in self.indicators if n in parts]
            elif column in self.text:
                categories = self.categories[self.text.index(column)]
                out[column] = [f"{column}_{c}" for c in categories]
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The features (float32, one row per row of `frame`) of a table with the training
        columns; its target column, if any, is not used. Raises ConfigError when a column
        the features need is missing; warns (once) about columns never seen in training."""
        self.check_columns(list(frame.columns))
        return self._features(self._inputs(frame), frame)

    def inverse_target(self, values: Any) -> Any:
        """Model outputs in the target's own terms: regression outputs as targets in their own
        units (float64 array; standardization and log undone), class indices as class names."""
        v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
        if self.task != "regression":
            return [self.class_names[int(i)] for i in v.reshape(-1)]
        v = v.astype(np.float64)
        if self.target_scale is None:
            return v
        scale = TargetScale(**self.target_scale)
        u = v * scale.std + scale.mean
        return np.exp(u) if scale.log else u

    def check_columns(self, header: list[str]) -> None:
        """Raises ConfigError naming the feature columns a new table lacks; warns (once per
        pipeline) about its columns never seen in training."""
        needed = [*self.numbers, *self.dates, *self.text]
        missing = [c for c in needed if c not in header]
        if missing:
            raise ConfigError(
                f"the table lacks column(s) {', '.join(missing)}, which the model was trained "
                f"on ({self.source}); its columns: {', '.join(header)}"
            )
        known = {*self.columns, self.target}
        extra = [c for c in header if c not in known]
        if extra and not self._warned:
            self._warned = True
            log.warning("columns never seen in training, not used: %s", ", ".join(extra))

    # -- the transform's steps -----------------------------------------------------------------
    def _inputs(self, frame: pd.DataFrame) -> np.ndarray:
        """The numeric inputs (float64, column-major, as pandas holds the columns): the number
        columns, then the date parts; NaN where missing or infinite (with a warning)."""
        numbers = frame[self.numbers]
        text = [c for c in self.numbers if not is_numeric(numbers[c])]
        if text:  # a new table whose column holds text where training saw numbers
            numbers = numbers.assign(**{c: self._as_numbers(frame[c], c) for c in text})
        x = numbers.to_numpy(np.float64, copy=True)
        if self.dates:
            parts = [self._date_parts(frame[c], c) for c in self.dates]
            x = np.asfortranarray(np.concatenate([x, *parts], axis=1))
        kinds.finite_or_missing(x, self.inputs, self.source)
        return x

    def _as_numbers(self, column: pd.Series, name: str) -> pd.Series:
        numbers = pd.to_numeric(column, errors="coerce")
        bad = column[numbers.isna() & column.notna()]
        if not bad.empty:
            raise ConfigError(
                f"column {name} holds {bad.iloc[0]!r} where training saw numbers ({self.source})"
            )
        return numbers

    def _date_parts(self, column: pd.Series, name: str) -> np.ndarray:
        date = self.dates[name]
        cells = kinds.as_cells(column)
        dates = kinds.parse_dates(cells, date["format"])
        bad = cells[dates.isna() & cells.notna()]
        if not bad.empty:
            raise ConfigError(
                f"column {name} holds {bad.iloc[0]!r}, not a date as in training "
                f"({date['format']}; {self.source})"
            )
        reference = pd.Timestamp(date["reference"])
        return kinds.date_parts(name, dates, reference, date["hour"]).to_numpy(np.float64)

    def _features(self, x: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        """The features from the numeric inputs x (imputed and standardized in place) and the
        text columns of `frame`."""
        blocks = []
        if self.inputs:
            missing = np.isnan(x[:, [self.inputs.index(n) for n in self.indicators]])
            for j in np.flatnonzero(np.isnan(x).any(axis=0)):
                np.nan_to_num(x[:, j], copy=False, nan=self.medians[j])
            if self.indicators:
                x = np.concatenate([x, missing.astype(np.float64)], axis=1)
            x -= np.asarray(self.means)
            x /= np.asarray(self.scales)
            blocks.append(x.astype(np.float32, order="C"))
        if self.text:
            blocks.append(self._one_hot(frame))
        return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]

    def _one_hot(self, frame: pd.DataFrame) -> np.ndarray:
        widths = [len(c) for c in self.categories]
        out = np.zeros((len(frame), sum(widths)), np.float32)
        offset, rows = 0, np.arange(len(frame))
        for column, categories in zip(self.text, self.categories, strict=True):
            cells = categories_of(frame[column])
            codes = pd.Index(categories, dtype=object).get_indexer(cells)
            seen = codes >= 0  # an unseen category: all zeros
            out[rows[seen], offset + codes[seen]] = 1.0
            offset += len(categories)
        return out


def is_numeric(column: pd.Series) -> bool:
    """Whether a column holds numbers (int or float) rather than text."""
    return column.dtype.kind in "iuf"


def categories_of(column: pd.Series) -> np.ndarray:
    """A text column's categories, one per cell (objects): the cells as written, numbers as
    Python writes them, "missing" where missing."""
    return kinds.as_cells(column).fillna("missing").to_numpy(object)


def fit_pipeline(
    table: pd.DataFrame,
    train: np.ndarray,
    drop: Collection[str],
    categorical: Collection[str],
    keep: Collection[str],
    source: str,
) -> tuple[TablePipeline, np.ndarray]:
    """The pipeline of a table's columns (all but the target), fitted on the rows `train`,
    and the features of every row (= its `transform` of `table`). Columns in `drop` are left
    out, those in `categorical` one-hot encoded as codes, those in `keep` used as they read
    (numbers or text) whatever they look like; of the others, identifiers are left out and
    dates become numbers (nnlab.data.columns)."""
    numbers, text, dates, dropped = column_kinds(table, train, drop, categorical, keep, source)
    if not numbers and not dates and not text:
        raise ConfigError(f"{source}: no feature columns are left")
    inputs = numbers + [n for c in dates for n in date_names(c, dates[c]["hour"])]
    pipeline = TablePipeline(
        columns=list(table.columns),
        numbers=numbers,
        dates=dates,
        inputs=inputs,
        medians=[],
        indicators=[],
        means=[],
        scales=[],
        text=text,
        categories=[],
        dropped=dropped,
        source=source,
    )
    x = pipeline._inputs(table)
    x = fit_numbers(pipeline, x, train)
    warn_about_ids(table, text, train, source)
    pipeline.categories = [sorted(set(categories_of(table[c].iloc[train]))) for c in text]
    features = pipeline._features(x, table)
    log_features(pipeline, features.shape[1])
    return pipeline, features


def column_kinds(
    table: pd.DataFrame,
    train: np.ndarray,
    drop: Collection[str],
    categorical: Collection[str],
    keep: Collection[str],
    source: str,
) -> tuple[list[str], list[str], dict[str, dict[str, Any]], dict[str, str]]:
    """The columns used as numbers, as text (one-hot), as dates ({column: its entry in
    TablePipeline.dates}) and left out ({column: why}); see fit_pipeline."""
    numbers, text, dates, dropped = [], [], {}, {}
    for name in table.columns:
        column = table[name]
        if name in drop:
            dropped[name] = DROPPED
        elif name in categorical or (name in keep and not is_numeric(column)):
            text.append(name)
        elif name in keep or (is_numeric(column) and not kinds.is_identifier(name, column)):
            numbers.append(name)
        elif not is_numeric(column) and (fmt := kinds.date_format(column)):
            dates[name] = date_entry(column.iloc[train], fmt)
        elif kinds.is_identifier(name, column):
            dropped[name] = IDENTIFIER
            log.warning(
                "%s: column %s has a different value in every row (an identifier): left out; "
                "data.keep=[%s] uses it",
                source,
                name,
                name,
            )
        else:
            text.append(name)
    return numbers, text, dates, dropped


def date_entry(train_cells: pd.Series, fmt: str) -> dict[str, Any]:
    """A date column's entry in TablePipeline.dates, from its training cells."""
    dates = kinds.parse_dates(kinds.as_cells(train_cells), fmt)
    first = dates.min()
    reference = (first if not pd.isna(first) else pd.Timestamp(0)).isoformat()
    return {"format": fmt, "reference": reference, "hour": kinds.has_times(dates)}


def date_names(column: str, hour: bool) -> list[str]:
    """The input names of a date column's parts (nnlab.data.columns.date_parts)."""
    return [f"{column}.{p}" for p in (*kinds.DATE_PARTS, *(("hour",) if hour else ()))]


def fit_numbers(pipeline: TablePipeline, x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Fits the medians, missing indicators, means and scales of the numeric inputs x on the
    training rows; inputs without a training value are left out (x without them)."""
    x_train = take_rows(x, train)
    medians = np.array([median(x_train[~np.isnan(x_train[:, j]), j]) for j in range(x.shape[1])])
    empty = np.isnan(medians)
    if empty.any():
        for name in np.asarray(pipeline.inputs)[empty]:
            source = name.rsplit(".", 1)[0] if name not in pipeline.numbers else name
            pipeline.dropped[source] = EMPTY
        keep = ~empty
        pipeline.inputs = [n for n, k in zip(pipeline.inputs, keep, strict=True) if k]
        pipeline.numbers = [n for n in pipeline.numbers if n not in pipeline.dropped]
        pipeline.dates = {c: d for c, d in pipeline.dates.items() if c not in pipeline.dropped}
        x, x_train, medians = x[:, keep], x_train[:, keep], medians[keep]
    missing = np.isnan(x_train)
    has_missing = missing.any(axis=0)
    pipeline.indicators = [n for n, m in zip(pipeline.inputs, has_missing, strict=True) if m]
    for j in np.flatnonzero(has_missing):
        x_train[missing[:, j], j] = medians[j]
    block = x_train
    if has_missing.any():
        block = np.concatenate([x_train, missing[:, has_missing]], axis=1)
    mean, std = block.mean(axis=0), block.std(axis=0)
    # A constant column (std 0, or rounding noise around a constant) is divided by 1.
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    pipeline.medians = medians.tolist()
    pipeline.means, pipeline.scales = mean.tolist(), np.where(std > tiny, std, 1.0).tolist()
    return x


def take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] for a column-major x, column-major as well (the statistics run column by
    column: on a row-major copy they take twice as long), gathered column by column (numpy's
    x[rows] gathers row by row: 60,000 × 784 numbers, 0.4 s instead of 0.25)."""
    out = np.empty((len(rows), x.shape[1]), order="F")
    for j in range(x.shape[1]):
        np.take(x[:, j], rows, out=out[:, j])
    return out


def median(values: np.ndarray) -> float:
    """The median of a column's present values (NaN for none), by np.median's partition
    rather than a sort (60,000 × 784: 0.3 s instead of 8 s)."""
    return float(np.median(values)) if len(values) else np.nan


def warn_about_ids(table: pd.DataFrame, text: list[str], train: np.ndarray, source: str) -> None:
    """Warns about each text column with a distinct value in most training rows (a name, a
    ticket number): it would become one feature per value."""
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


def log_features(pipeline: TablePipeline, count: int) -> None:
    """Logs which columns became which features (one-hot columns counted past a few)."""
    said = []
    for column, features in pipeline.feature_map().items():
        if isinstance(features, str):
            said.append(f"{column}: {features}")
        elif len(features) > LOGGED_CATEGORIES:
            said.append(f"{column} → {len(features)} features ({features[0]}, …)")
        elif features != [column]:
            said.append(f"{column} → {', '.join(features)}")
    log.info(
        "%s: %d numeric, %d date and %d text columns → %d features%s",
        pipeline.source,
        len(pipeline.numbers),
        len(pipeline.dates),
        len(pipeline.text),
        count,
        "; " + "; ".join(said) if said else "",
    )
