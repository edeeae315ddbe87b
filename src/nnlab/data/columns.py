"""What a table's columns mean, guessed from their names and cells: an identifier (unique per
row, meaning nothing as a number: left out), a column of dates or timestamps (turned into
numbers: year, month, day of year, days since the first training date), and non-finite
numbers (treated as missing)."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Name parts that say a column is an identifier: Id, user_id, customerID, uuid, row_index...
ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "key", "index", "idx"})
# The name pandas gives a header cell left empty (an index written by DataFrame.to_csv).
UNNAMED = re.compile(r"^Unnamed: \d+$")
# A name's words: runs of letters split where camelCase changes case, and runs of digits.
WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# Rows a text column needs before one distinct value per row says "identifier" rather than
# "a tiny table": below, it stays a category unless its name says id.
ID_MIN_ROWS = 20

# The date and timestamp formats a text column is tried with, in order (pandas parses a column
# with one explicit format far faster than guessing per cell). Day-first dates come after the
# American month-first ones: 03/04/2014 reads as March 4. ISO8601 takes the remaining ISO forms
# (fractions of seconds, time zones).
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y%m%dT%H%M%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "ISO8601",
)
# Cells a format is first tried on, before the whole column.
DATE_SAMPLE = 50
# The numbers a date column becomes, after its name and a dot; "hour" only where the training
# dates have times of day.
DATE_PARTS = ("year", "month", "day_of_year", "days")


def name_says_id(name: str) -> bool:
    """Whether a column's name says it identifies rows (Id, user_id, customerID, uuid, an
    unnamed index column)."""
    if not name.strip() or UNNAMED.match(name):
        return True
    return any(word.lower() in ID_WORDS for word in WORDS.findall(name))


def is_identifier(name: str, column: pd.Series) -> bool:
    """Whether a column identifies the rows rather than describing them: a value in every row,
    each value once, and either integers under a name that says id (a row number, a customer
    number) or text (an id code, a hash, a name: one-hot, it would make one feature per row,
    never seen again outside training). Numbers under other names are kept: a float feature
    or a lot size can be unique per row too."""
    n, numeric = len(column), column.dtype.kind in "iuf"
    if n < 2 or (numeric and not name_says_id(name)) or column.isna().any():
        return False
    if column.nunique() != n:
        return False
    if numeric:
        values = column.to_numpy(np.float64)
        return bool(np.all(values == np.round(values)))
    return n >= ID_MIN_ROWS or name_says_id(name)


def date_format(column: pd.Series) -> str | None:
    """The format (one of DATE_FORMATS) every present cell of a text column is a date in, or
    None: not a date column."""
    if column.dtype.kind in "iufb":
        return None
    present = column.dropna()
    if present.empty or not all(isinstance(v, str) for v in present.iloc[:DATE_SAMPLE]):
        return None
    sample = present.iloc[:DATE_SAMPLE]
    for fmt in DATE_FORMATS:
        if parse_dates(sample, fmt).notna().all() and parse_dates(present, fmt).notna().all():
            return fmt
    return None


def parse_dates(column: pd.Series, fmt: str) -> pd.Series:
    """A text column's cells as timestamps (time-zone-less, in UTC where a zone is given);
    NaT where missing or not in format `fmt`."""
    with np.errstate(all="ignore"):
        dates = pd.to_datetime(column, format=fmt, errors="coerce", utc=True)
    return dates.dt.tz_localize(None)


def has_times(dates: pd.Series) -> bool:
    """Whether any timestamp has a time of day other than midnight."""
    present = dates.dropna()
    return bool((present != present.dt.normalize()).any())


def date_parts(name: str, dates: pd.Series, reference: pd.Timestamp, hour: bool) -> pd.DataFrame:
    """The numbers a date column becomes (NaN where missing): `<name>.year`, `.month`,
    `.day_of_year`, `.days` (days since `reference`, the first training date; fractional with
    times) and, with `hour`, `.hour` (fractional: 13:30 is 13.5)."""
    parts = {
        "year": dates.dt.year,
        "month": dates.dt.month,
        "day_of_year": dates.dt.day_of_year,
        "days": (dates - reference) / pd.Timedelta(days=1),
    }
    if hour:
        parts["hour"] = (dates - dates.dt.normalize()) / pd.Timedelta(hours=1)
    return pd.DataFrame(
        {f"{name}.{k}": v.to_numpy(np.float64, na_value=np.nan) for k, v in parts.items()},
        index=dates.index,
    )


def as_cells(column: pd.Series) -> pd.Series:
    """A column as text cells (objects; NaN where missing): numbers as Python writes them."""
    return column.astype(object).where(column.notna()).map(str, na_action="ignore")


def finite_or_missing(x: np.ndarray, names: list[str], source: str) -> None:
    """Replaces ±inf in the columns of x (in place) by NaN, to be imputed like a missing cell,
    with a warning naming each such column and how many it had."""
    infinite = np.isinf(x)
    if not infinite.any():
        return
    counts = infinite.sum(axis=0)
    said = ", ".join(f"{names[j]} ({counts[j]})" for j in np.flatnonzero(counts))
    log.warning("%s: infinite values treated as missing in %s", source, said)
    x[infinite] = np.nan
