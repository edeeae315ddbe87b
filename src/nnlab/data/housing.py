"""The two house-price tables that download: Ames (Kaggle's "House Prices: Advanced Regression
Techniques" train.csv) and California housing (the 1990 census districts of StatLib, as
scikit-learn fetches them); either may be read from a copy the user has instead."""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from nnlab.core import ConfigError, DataUnavailableError
from nnlab.core.components import register_datamodule
from nnlab.data.csv_reader import read_csv
from nnlab.data.derived import CALIFORNIA_RAW, california_features
from nnlab.data.download import Remote, fetch
from nnlab.data.features import is_numeric
from nnlab.data.remote import RemoteDataModule
from nnlab.data.tables import RegressionTableDataModule


class DownloadedTable(RemoteDataModule, RegressionTableDataModule):
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


# -- Ames (Kaggle "House Prices: Advanced Regression Techniques") ------------------------------
AMES_TRAIN = Remote(
    "kaggle_house_pred_train.csv",
    ("http://d2l-data.s3-accelerate.amazonaws.com/kaggle_house_pred_train.csv",),
    "sha1:585e9cc93e70b39160e7921475f9bcd7d31219ce",
)


@register_datamodule
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

    def read_table(self) -> pd.DataFrame:
        return read_csv(self.source, text=self.text_read)


# -- California housing (StatLib, as scikit-learn fetches it) ----------------------------------
CAL_HOUSING = Remote(
    "cal_housing.tgz",
    ("https://ndownloader.figshare.com/files/5976036",),
    "sha256:aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681",
)
CAL_HOUSING_MEMBER = "CaliforniaHousing/cal_housing.data"
# The columns of cal_housing.data, in file order, and of Géron's housing.csv (the same columns,
# snake_case, plus ocean_proximity).
CAL_HOUSING_COLUMNS = tuple(CALIFORNIA_RAW)
HOUSING_CSV_COLUMNS = tuple(CALIFORNIA_RAW.values())


def read_housing_csv(path: str | Path) -> np.ndarray:
    """Géron's housing.csv as cal_housing.data's (n, 9) float array, NaN where blank."""
    table = read_csv(path)
    missing = [c for c in HOUSING_CSV_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"data.path={path} is not the Hands-On ML housing.csv: no column "
            f"{', '.join(missing)} (it has {', '.join(table.columns)}); a cal_housing.tgz also "
            "works"
        )
    text = [c for c in HOUSING_CSV_COLUMNS if not is_numeric(table[c])]
    if text:
        raise ConfigError(f"data.path={path}: column {text[0]} has a non-numeric cell")
    return table[list(HOUSING_CSV_COLUMNS)].to_numpy(np.float64)


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


@register_datamodule
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

    def read_table(self) -> pd.DataFrame:
        path = self.source
        columns = read_housing_csv(path) if path.suffix == ".csv" else read_cal_housing(path)
        return california_features(pd.DataFrame(columns, columns=list(CAL_HOUSING_COLUMNS)))

    def preprocessing(self) -> dict[str, Any]:
        # predict.py derives the same features from new rows in the file's own columns.
        return {**super().preprocessing(), "derived": "california_housing"}
