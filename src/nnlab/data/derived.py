"""Features a data set derives from its file's own columns, by name: training computes them with
the same function that predict.py applies to new rows, so a table in the file's own format
predicts. A checkpoint stores only the name ("derived" in its preprocessing); the function is
looked up here, never read from the file."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from nnlab.core import ConfigError

# California housing: StatLib's cal_housing.data names, and Géron's housing.csv names for each.
CALIFORNIA_RAW = {
    "longitude": "longitude",
    "latitude": "latitude",
    "housingMedianAge": "housing_median_age",
    "totalRooms": "total_rooms",
    "totalBedrooms": "total_bedrooms",
    "population": "population",
    "households": "households",
    "medianIncome": "median_income",
    "medianHouseValue": "median_house_value",
}
# scikit-learn's eight features, then its target.
CALIFORNIA_FEATURES = (
    "MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude",
    "Longitude",
)  # fmt: skip
CALIFORNIA_TARGET = "MedHouseVal"


def california_features(frame: pd.DataFrame) -> pd.DataFrame:
    """scikit-learn's California features (per district: median income, house age, rooms,
    bedrooms and occupants per household, population, latitude, longitude) and, where the
    house value is there, its target, from a table with cal_housing.data's or housing.csv's
    columns. A table that has the features already is returned as it is; other columns (an id)
    are kept."""
    if all(c in frame.columns for c in CALIFORNIA_FEATURES):
        return frame
    raw = {}
    for name, snake in CALIFORNIA_RAW.items():
        column = name if name in frame.columns else snake if snake in frame.columns else None
        if column is not None:
            raw[name] = frame[column]
    missing = [n for n in CALIFORNIA_RAW if n not in raw and n != "medianHouseValue"]
    if missing:
        snake = ", ".join(CALIFORNIA_RAW[n] for n in missing)
        raise ConfigError(
            f"the table has neither scikit-learn's California features ("
            f"{', '.join(CALIFORNIA_FEATURES)}) nor the housing.csv columns they come from "
            f"(it lacks {snake}); its columns: {', '.join(map(str, frame.columns))}"
        )
    households = raw["households"]
    derived = {
        "MedInc": raw["medianIncome"],
        "HouseAge": raw["housingMedianAge"],
        "AveRooms": raw["totalRooms"] / households,
        "AveBedrms": raw["totalBedrooms"] / households,
        "Population": raw["population"],
        "AveOccup": raw["population"] / households,
        "Latitude": raw["latitude"],
        "Longitude": raw["longitude"],
    }
    if "medianHouseValue" in raw:
        derived[CALIFORNIA_TARGET] = raw["medianHouseValue"]
    used = {c for n, s in CALIFORNIA_RAW.items() for c in (n, s)}
    rest = {c: frame[c] for c in frame.columns if c not in used}  # an id column, say
    return pd.DataFrame({**derived, **rest}, index=frame.index)


DERIVED: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "california_housing": california_features,
}


def derivation(name: str | None) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """The function named `name` in a table's preprocessing ("derived"; None: none)."""
    if name is None:
        return None
    if not isinstance(name, str) or name not in DERIVED:
        raise ConfigError(
            f"the checkpoint's table derives features by {name!r}, which is none of nnlab's "
            f"({', '.join(DERIVED)})"
        )
    return DERIVED[name]
