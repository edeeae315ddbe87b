"""House prices and other tables: a CSV (or the StatLib California archive) with a numeric target
column becomes standardized numeric features, imputed missing values and one-hot text columns,
all fitted on the training split only; the target can be log-transformed and is standardized
with training-split statistics, and the scale travels in the DataSpec so metrics are also
reported in the target's own units."""

from __future__ import annotations

import csv
import logging
import math
import re
import tarfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from nnlab.core import ConfigError
from nnlab.data.base import ArrayDataModule, Split
from nnlab.data.download import DataUnavailableError, Remote, fetch
from nnlab.data.remote import RemoteDataModule
from nnlab.data.spec import TargetScale
from nnlab.data.splits import seeded_splits

log = logging.getLogger(__name__)

# Cells read as missing. "None" is not among them: Ames uses it as a category (MasVnrType).
MISSING = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL"})
Row = list[Any]
# Class names of a classification target; () for regression.
Classes = tuple[str, ...]


# A number written with a decimal comma, e.g. -1,5.
DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d+)$")
# Field separators a CSV file may use (commas; semicolons where the comma is the decimal mark).
DELIMITERS = ",;\t|"


def read_csv(path: str | Path) -> tuple[list[str], list[Row]]:
    """The header and the rows of a CSV file with a header line (cells as strings); the field
    separator (comma, semicolon, tab or bar) is found from the header line, and a file that is
    not UTF-8 is read as Windows-1252 (what spreadsheets export elsewhere), with a warning."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.path={path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        log.warning("%s is not UTF-8 (%s): read as Windows-1252", path, e.reason)
        text = path.read_bytes().decode("cp1252", errors="replace")
    lines = text.splitlines(keepends=True)
    if not lines:
        raise ConfigError(f"{path} is empty")
    # The separator the header line uses most; a one-column header keeps the comma.
    first = lines[0]
    delimiter = max(DELIMITERS, key=first.count) if any(map(first.count, DELIMITERS)) else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    rows = [row for row in reader if row]
    if delimiter == ";":  # where fields are split by semicolons, the comma is the decimal mark
        rows = [[DECIMAL_COMMA.sub(r"\1.\2", cell) for cell in row] for row in rows]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ConfigError(
                f"{path}, line {i + 2}: {len(row)} fields, but the header has {len(header)}"
            )
    if not rows:
        raise ConfigError(f"{path} has a header but no rows")
    return header, rows


def _as_float(value: Any) -> float:
    """A cell as a float; NaN when missing. Raises ValueError for text."""
    if isinstance(value, float | int):
        return float(value)
    value = value.strip()
    return math.nan if value in MISSING else float(value)


def _numeric(values: Sequence[Any]) -> np.ndarray | None:
    """The column as floats (NaN where missing), or None if any present cell is text."""
    try:
        # numpy parses a column of number strings in C, 10× faster than cell by cell; a
        # missing or text cell makes it raise, and the column is read cell by cell.
        return np.array(values, dtype=np.float64)
    except ValueError:
        pass
    try:
        return np.array([_as_float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None


class TableDataModule(ArrayDataModule):
    """A table whose `target` column is predicted from the others; subclasses decide what the
    target is (a number to regress, or a class).

    Features, fitted on the training split only: numeric columns get missing values imputed
    with the median (plus a 0/1 "was missing" column) and are standardized; text columns (and
    those named in `categorical`) get missing values as their own category and are one-hot
    encoded, categories unseen in training encoding as all zeros. Rows without a target are
    left out (with a warning).

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

    def read_table(self) -> tuple[list[str], list[Row]]:
        """The header and rows of the table (cells as strings or numbers)."""
        raise NotImplementedError

    def describe_source(self) -> str:
        """The table's name in error messages."""
        return type(self).__name__

    def read_targets(self, header: list[str], rows: list[Row]) -> tuple[np.ndarray, Classes]:
        """The target column as an array (NaN where missing) and the class names (none for
        regression); raises ConfigError when it cannot hold this task's targets."""
        raise NotImplementedError

    def target_tensor(self, y: np.ndarray, train: np.ndarray) -> torch.Tensor:
        """The targets as the model trains on them, fitted on the training rows `train`."""
        raise NotImplementedError

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        header, rows = self.read_table()
        self._check_columns(header)
        y, classes = self.read_targets(header, rows)
        present = ~np.isnan(y)
        if not present.all():
            log.warning(
                "%s: %d rows have no %s and are left out",
                self.describe_source(),
                int((~present).sum()),
                self.target,
            )
            rows = [r for r, keep in zip(rows, present, strict=True) if keep]
            y = y[present]
        # The seeded split the base class makes, on row indices, so that the feature pipeline
        # and the target scale can be fitted on the training rows alone.
        idx = torch.arange(len(rows))
        parts = seeded_splits(
            {"train": (idx, idx)}, self.val_fraction, self.test_fraction, self.seed
        )
        train, val, test = (parts[s][0] for s in ("train", "val", "test"))
        features = [i for i, h in enumerate(header) if h != self.target and h not in self.drop]
        if not features:
            raise ConfigError(f"{self.describe_source()}: no feature columns are left")
        x = self._fit_features(header, rows, features, train.numpy())
        y_t = self.target_tensor(y, train.numpy())
        x_t = torch.from_numpy(x).float()
        splits = {
            name: (x_t[i], y_t[i]) for name, i in (("train", train), ("val", val), ("test", test))
        }
        return splits, classes

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

    def _fit_features(
        self, header: list[str], rows: list[Row], features: list[int], train: np.ndarray
    ) -> np.ndarray:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        numeric, text, columns = [], [], []
        by_column = list(zip(*rows, strict=True))
        for j, i in enumerate(features):
            values = by_column[i]
            as_float = None if header[i] in self.categorical else _numeric(values)
            if as_float is not None:
                numeric.append(j)
                columns.append(as_float)
            else:
                text.append(j)
                cells = [str(v).strip() for v in values]
                columns.append(np.array([np.nan if c in MISSING else c for c in cells], object))
        # One float table when every column is a number (sklearn is far slower on objects).
        table = np.stack([c.astype(object) for c in columns] if text else columns, axis=1)
        names = [header[i] for i in features]
        for j in text:
            distinct = len(set(table[train, j]))
            if distinct > max(20, len(train) // 2):
                log.warning(
                    "%s: text column %s has %d distinct values in %d training rows (an id or a "
                    "name?): one feature each; leave it out with data.drop=[%s]",
                    self.describe_source(),
                    names[j],
                    distinct,
                    len(train),
                    names[j],
                )
        self.numeric_columns = [names[j] for j in numeric]
        self.text_columns = [names[j] for j in text]
        pipeline = ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    numeric,
                ),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="missing"),
                        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    ),
                    text,
                ),
            ],
            sparse_threshold=0.0,
        )
        pipeline.fit(table[train])
        out = pipeline.transform(table).astype(np.float32)
        self.feature_names = [_feature_name(n, names) for n in pipeline.get_feature_names_out()]
        log.info(
            "%s: %d numeric and %d text columns → %d features",
            self.describe_source(),
            len(numeric),
            len(text),
            out.shape[1],
        )
        return out


class TabularDataModule(TableDataModule):
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

    def read_targets(self, header: list[str], rows: list[Row]) -> tuple[np.ndarray, Classes]:
        t = header.index(self.target)
        y = _numeric([r[t] for r in rows])
        if y is None:
            bad = next(r[t] for r in rows if _safe_float(r[t]) is None)
            numeric = [
                h for i, h in enumerate(header) if _numeric([r[i] for r in rows]) is not None
            ]
            raise ConfigError(
                f"data.target={self.target} in {self.describe_source()} is not numeric (it holds "
                f"{bad!r}); regression needs a number to predict (data=csv_classification "
                f"predicts classes). Numeric columns: {', '.join(numeric) or 'none'}"
            )
        present = y[~np.isnan(y)]
        if self.log_target and (present <= 0).any():
            raise ConfigError(
                f"data.log_target=true needs {self.target} > 0, but its minimum is "
                f"{present.min():g}"
            )
        return y, ()

    def target_tensor(self, y: np.ndarray, train: np.ndarray) -> torch.Tensor:
        y_model = np.log(y) if self.log_target else y
        mean, std = 0.0, 1.0
        if self.standardize_target:
            mean = float(y_model[train].mean())
            std = float(y_model[train].std()) or 1.0
        if self.standardize_target or self.log_target:
            self.target_scale = TargetScale(mean, std, self.log_target)
        return torch.from_numpy((y_model - mean) / std).float()


def _safe_float(value: Any) -> float | None:
    try:
        return _as_float(value)
    except ValueError:
        return None


def _feature_name(name: str, columns: list[str]) -> str:
    """sklearn's x3 / x3_Pave style names with the column names put back in."""
    prefix, _, rest = name.partition("__")
    head, sep, tail = rest.partition("_")
    if head.startswith("x") and head[1:].isdigit():
        return columns[int(head[1:])] + (sep + tail if sep else "")
    if rest.startswith("missingindicator_x"):
        return "missing_" + columns[int(rest.removeprefix("missingindicator_x"))]
    return rest or prefix


class CSVFile:
    """The table of a TableDataModule read from a CSV file with a header line (`path`)."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ConfigError("data.path must name a CSV file, e.g. data.path=my_table.csv")
        self.path = Path(path).expanduser()

    def describe_source(self) -> str:
        return str(self.path)

    def read_table(self) -> tuple[list[str], list[Row]]:
        return read_csv(self.path)


class HousePricesCSVDataModule(CSVFile, TabularDataModule):
    """Any CSV file with a header line (`path`): predicts the numeric column `target` from the
    others."""


class CSVClassificationDataModule(CSVFile, TableDataModule):
    """Any CSV file with a header line (`path`): predicts the class in column `target` (text or
    numbers, e.g. species or 0/1) from the others, as a softmax over the classes found (see
    TableDataModule for the features). Classes are the distinct target values, sorted
    (numerically when they are all numbers).
    """

    task = "multiclass"

    def read_targets(self, header: list[str], rows: list[Row]) -> tuple[np.ndarray, Classes]:
        t = header.index(self.target)
        cells = [str(r[t]).strip() for r in rows]
        values = sorted({c for c in cells if c not in MISSING})
        if all(_safe_float(v) is not None for v in values):
            values.sort(key=float)
        if len(values) < 2:
            raise ConfigError(
                f"data.target={self.target} in {self.describe_source()} holds "
                f"{len(values)} class ({', '.join(values)}); classification needs at least two"
            )
        index = {v: i for i, v in enumerate(values)}
        y = np.array([index.get(c, np.nan) for c in cells], dtype=np.float64)
        return y, tuple(values)

    def target_tensor(self, y: np.ndarray, train: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64))


# -- Ames (Kaggle "House Prices: Advanced Regression Techniques") ------------------------------
AMES_TRAIN = Remote(
    "kaggle_house_pred_train.csv",
    ("http://d2l-data.s3-accelerate.amazonaws.com/kaggle_house_pred_train.csv",),
    "sha1:585e9cc93e70b39160e7921475f9bcd7d31219ce",
)


class DownloadedTable(RemoteDataModule, TabularDataModule):
    """A table downloaded as one file, or read from a copy the user has (`path`): then nothing
    is downloaded and the data folder is not touched.

    path: a local copy of the file (or another format the subclass reads), not checksummed.
    """

    # What a user may have instead of the download, for the error message of a failed one.
    copies: ClassVar[str]

    def __init__(self, path: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path).expanduser() if path else None

    def remote(self) -> Remote:
        """The file to download."""
        raise NotImplementedError

    @property
    def source(self) -> Path:
        """The file the table is read from."""
        return self.path or self.folder / self.remote().name

    def describe_source(self) -> str:
        return str(self.source)

    def prepare_data(self) -> None:
        if self.path is None:
            super().prepare_data()
        elif not self.path.is_file():
            raise ConfigError(f"data.path={self.path}: no such file")

    def prepare_files(self) -> None:
        try:
            fetch([self.remote()], self.folder, self.name, self.progress)
        except DataUnavailableError as e:
            hint = f"Or read a copy you have ({self.copies}): data.path=<file>"
            raise DataUnavailableError(f"{e}\n{hint}") from None


class AmesHousePricesDataModule(DownloadedTable):
    """The 1,460 sold houses of Kaggle's Ames house-price competition (its train.csv, as the d2l
    book hosts it): 79 features, 43 of them text, predicting SalePrice in dollars.

    path: a copy of that file you already have (Kaggle's own train.csv is the same file), read
    instead of the download.
    """

    copies = "Kaggle's train.csv of the competition"

    def __init__(
        self,
        name: str = "ames_house_prices",
        target: str = "SalePrice",
        drop: Sequence[str] = ("Id",),
        categorical: Sequence[str] = ("MSSubClass",),
        log_target: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            target=target,
            drop=drop,
            categorical=categorical,
            log_target=log_target,
            **kwargs,
        )

    def remote(self) -> Remote:
        return AMES_TRAIN

    def read_table(self) -> tuple[list[str], list[Row]]:
        return read_csv(self.source)


# -- California housing (StatLib, as scikit-learn fetches it) ----------------------------------
CAL_HOUSING = Remote(
    "cal_housing.tgz",
    ("https://ndownloader.figshare.com/files/5976036",),
    "sha256:aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681",
)
CAL_HOUSING_MEMBER = "CaliforniaHousing/cal_housing.data"
# The columns of cal_housing.data, in file order.
CAL_HOUSING_COLUMNS = (
    "longitude", "latitude", "housingMedianAge", "totalRooms", "totalBedrooms",
    "population", "households", "medianIncome", "medianHouseValue",
)  # fmt: skip


# Hands-On ML's housing.csv: the same columns, snake_case, plus ocean_proximity.
HOUSING_CSV_COLUMNS = (
    "longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms",
    "population", "households", "median_income", "median_house_value",
)  # fmt: skip


def read_housing_csv(path: str | Path) -> np.ndarray:
    """Géron's housing.csv as cal_housing.data's (n, 9) float array, NaN where blank."""
    header, rows = read_csv(path)
    missing = [c for c in HOUSING_CSV_COLUMNS if c not in header]
    if missing:
        raise ConfigError(
            f"data.path={path} is not the Hands-On ML housing.csv: no column "
            f"{', '.join(missing)} (it has {', '.join(header)}); a cal_housing.tgz also works"
        )
    index = [header.index(c) for c in HOUSING_CSV_COLUMNS]
    try:
        return np.array([[_as_float(row[i]) for i in index] for row in rows], dtype=np.float64)
    except ValueError as e:
        raise ConfigError(f"data.path={path}: a non-numeric cell ({e})") from None


def read_cal_housing(path: str | Path) -> np.ndarray:
    """cal_housing.data from the StatLib archive as a (20640, 9) float array."""
    with tarfile.open(path) as tf:
        try:
            member = tf.extractfile(CAL_HOUSING_MEMBER)
        except KeyError:
            member = None
        if member is None:
            raise ValueError(f"{path} holds no {CAL_HOUSING_MEMBER}")
        data = np.loadtxt(member, delimiter=",", ndmin=2)
    if data.shape[1] != len(CAL_HOUSING_COLUMNS):
        raise ValueError(f"{path}: {data.shape[1]} columns, expected {len(CAL_HOUSING_COLUMNS)}")
    return data


class CaliforniaHousingDataModule(DownloadedTable):
    """California districts of the 1990 census (20,640, StatLib): scikit-learn's eight features
    (MedInc, HouseAge, AveRooms, AveBedrms, Population, AveOccup, Latitude, Longitude)
    predicting the median house value in dollars.

    path: a copy you already have, read instead of the download: StatLib's cal_housing.tgz,
    or the housing.csv of Géron's Hands-On Machine Learning (the same districts and nine
    columns under other names, 207 totalBedrooms blank: imputed, with a missing_AveBedrms
    feature; its added ocean_proximity column is not used, so the features stay scikit-learn's).
    """

    copies = "cal_housing.tgz, or Hands-On ML's housing.csv"

    def __init__(
        self, name: str = "california_housing", target: str = "MedHouseVal", **kwargs: Any
    ) -> None:
        super().__init__(name=name, target=target, **kwargs)

    def remote(self) -> Remote:
        return CAL_HOUSING

    def read_table(self) -> tuple[list[str], list[Row]]:
        path = self.source
        columns = read_housing_csv(path) if path.suffix == ".csv" else read_cal_housing(path)
        d = dict(zip(CAL_HOUSING_COLUMNS, columns.T, strict=True))
        households = d["households"]
        table = {
            "MedInc": d["medianIncome"],
            "HouseAge": d["housingMedianAge"],
            "AveRooms": d["totalRooms"] / households,
            "AveBedrms": d["totalBedrooms"] / households,
            "Population": d["population"],
            "AveOccup": d["population"] / households,
            "Latitude": d["latitude"],
            "Longitude": d["longitude"],
            "MedHouseVal": d["medianHouseValue"],
        }
        header = list(table)
        return header, np.stack(list(table.values()), axis=1).tolist()
