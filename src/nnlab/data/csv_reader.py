"""Reading a CSV file with a header line into a pandas DataFrame whose columns are numbers or
text: the field separator sniffed from the first lines, a file that is not UTF-8 read as
Windows-1252 (with a warning), numbers parsed by pandas' C parser, and rows of another length
than the header refused with their line number."""

from __future__ import annotations

import csv
import itertools
import logging
import re
import warnings
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from nnlab.core import ConfigError

log = logging.getLogger(__name__)

# Cells read as missing. "None" is not among them: Ames uses it as a category (MasVnrType).
MISSING = ("", "NA", "N/A", "NaN", "nan", "null", "NULL")
# Field separators a CSV file may use (commas; semicolons where the comma is the decimal mark).
DELIMITERS = ",;\t|"
# A number written with a decimal comma, e.g. -1,5.
DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d+)$")
# Lines the separator is sniffed from.
SNIFF_LINES = 20


def read_csv(path: str | Path, text: Collection[str] = ()) -> pd.DataFrame:
    """The table of a CSV file with a header line (names stripped of spaces).

    A column whose present cells are all numbers holds numbers (int or float; NaN where
    missing, see MISSING); any other column, and those named in `text`, holds text: the cells
    as written, stripped of spaces, NaN where missing. Fields may be separated by commas,
    semicolons (then `1,5` is the number 1.5), tabs or bars: whichever the first lines use
    consistently (csv.Sniffer), else the one the header line uses most.
    """
    path = Path(path)
    sep, encoding = _dialect(path)
    try:
        frame = _parse(path, sep, encoding, text)
    except UnicodeDecodeError as e:  # past the first lines
        encoding = _fallback(path, e)
        frame = _parse(path, sep, encoding, text)
    if frame.empty:
        raise ConfigError(f"{path} has a header but no rows")
    return frame


def read_csv_chunks(
    path: str | Path, rows: int, text: Collection[str] = ()
) -> Iterator[pd.DataFrame]:
    """The table of a CSV file as read_csv reads it, `rows` rows at a time, for files too large
    to hold at once (predict.py). Whether a column holds numbers is decided per chunk; give the
    columns that must stay text in `text`."""
    path = Path(path)
    sep, encoding = _dialect(path)
    options = _options(sep, encoding)
    names = [str(c).strip() for c in pd.read_csv(path, nrows=0, **options).columns]
    try:
        for chunk in pd.read_csv(path, dtype=str, chunksize=rows, **options):
            chunk.columns = names
            for name in names:
                chunk[name] = _tidy(chunk[name], name in text, sep == ";")
            yield chunk
    except pd.errors.ParserError as e:
        check_row_lengths(path, sep, encoding, len(names))
        raise ConfigError(f"{path}: {e}") from None


def _dialect(path: Path) -> tuple[str, str]:
    """The field separator and the encoding of a CSV file, from its first lines."""
    if not path.is_file():
        raise ConfigError(f"data.path={path}: no such file")
    with path.open("rb") as f:
        head = list(itertools.islice(f, SNIFF_LINES))
    if not any(line.strip() for line in head):
        raise ConfigError(f"{path} is empty")
    encoding = "utf-8-sig"
    try:
        sample = b"".join(head).decode(encoding)
    except UnicodeDecodeError as e:
        encoding = _fallback(path, e)
        sample = b"".join(head).decode(encoding, errors="replace")
    return sniff_separator(sample), encoding


def sniff_separator(sample: str) -> str:
    """The field separator (one of DELIMITERS) of a CSV file's first lines: the one they use
    consistently, else the one the header line uses most (a one-column header: a comma)."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:  # no separator used the same way on every line
        first = sample.splitlines()[0] if sample else ""
        return max(DELIMITERS, key=first.count) if any(map(first.count, DELIMITERS)) else ","


def _fallback(path: Path, error: UnicodeDecodeError) -> str:
    """The encoding a file that is not UTF-8 is read with (what spreadsheets export in western
    Europe and America), said in a warning."""
    log.warning("%s is not UTF-8 (%s): read as Windows-1252", path, error.reason)
    return "cp1252"


def _options(sep: str, encoding: str) -> dict[str, Any]:
    """pandas.read_csv's options for a file with this separator and encoding."""
    return {
        "sep": sep,
        "encoding": encoding,
        "encoding_errors": "strict" if encoding.startswith("utf") else "replace",
        # Where fields are split by semicolons, the comma is the decimal mark.
        "decimal": "," if sep == ";" else ".",
        "keep_default_na": False,
        "na_values": list(MISSING),
        "skipinitialspace": True,
        "index_col": False,  # a row with an extra field is an error, not an index
        "low_memory": False,  # one pass: faster, and one type per column
    }


def _parse(path: Path, sep: str, encoding: str, text: Collection[str]) -> pd.DataFrame:
    """read_csv's table, read with this separator and encoding."""
    options = _options(sep, encoding)
    names = [str(c).strip() for c in pd.read_csv(path, nrows=0, **options).columns]
    # By position: pandas' names are not yet stripped.
    dtypes = {i: str for i, name in enumerate(names) if name in text}
    try:
        with warnings.catch_warnings():
            # A first row longer than the header: pandas drops the extra fields with a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=dtypes, **options)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as e:
        check_row_lengths(path, sep, encoding, len(names))
        raise ConfigError(f"{path}: {e}") from None
    frame.columns = names
    # A short row leaves its last fields missing: only then can a row be short.
    if frame.iloc[:, -1].isna().any():
        check_row_lengths(path, sep, encoding, len(names))
    # True/False cells, which pandas reads as bools, as the text they are in the file.
    flags = [i for i, dtype in enumerate(frame.dtypes) if _holds_bools(dtype)]
    if flags:
        raw = pd.read_csv(path, usecols=flags, dtype=str, **options)
        for i, column in zip(flags, raw.columns, strict=True):
            frame[names[i]] = raw[column]
    for i, name in enumerate(names):
        if frame.dtypes.iloc[i].kind not in "iuf" or name in text:
            frame[name] = _tidy(frame[name], name in text, sep == ";")
    return frame


def _holds_bools(dtype: Any) -> bool:
    """Whether pandas read a column as bools: all True/False, or mixed with missing cells (as
    objects; text columns are pandas strings)."""
    return dtype.kind == "b" or (dtype.kind == "O" and not isinstance(dtype, pd.StringDtype))


def _tidy(column: pd.Series, keep_text: bool, decimal_comma: bool) -> pd.Series:
    """A column pandas read as text: numbers (float, NaN where missing) where every present
    cell is one (after stripping spaces, and decimal commas where they are the decimal mark),
    else text (strings stripped of spaces as objects, NaN where missing)."""
    cells = column.astype(object).where(column.notna())
    cells = cells.map(lambda v: v.strip() if isinstance(v, str) else v)
    cells = cells.where(~cells.isin(MISSING))
    if keep_text:
        return cells
    present = cells.notna()
    numbers = cells.str.replace(DECIMAL_COMMA, r"\1.\2", regex=True) if decimal_comma else cells
    numbers = pd.to_numeric(numbers, errors="coerce")
    return cells if (numbers.isna() & present).any() else numbers.astype("float64")


def check_row_lengths(path: Path, sep: str, encoding: str, n_columns: int) -> None:
    """Raises ConfigError naming the first line (of the file, from 1) whose number of fields is
    not the header's; blank lines are skipped, as pandas does."""
    with path.open(encoding=encoding, errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=sep, skipinitialspace=True)
        next(reader)
        for row in reader:
            if len(row) != n_columns and any(cell.strip() for cell in row):
                raise ConfigError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                    f"{n_columns}"
                )
