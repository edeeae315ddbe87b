"""Reading CSV files with pandas: the separator sniffed from the first lines, numbers and text
columns, missing cells, the Windows-1252 fallback, and rows of the wrong length named by line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnlab.core import ConfigError
from nnlab.data.csv_reader import read_csv, sniff_separator


def write(tmp_path: Path, text: str, name: str = "t.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_separator_is_sniffed(tmp_path: Path, sep: str) -> None:
    rows = [["id", "price", "kind"]] + [[str(i), f"{i}.5", f"k{i % 3}"] for i in range(30)]
    table = read_csv(write(tmp_path, "\n".join(sep.join(r) for r in rows) + "\n"))
    assert list(table.columns) == ["id", "price", "kind"]
    assert table["price"].tolist() == [i + 0.5 for i in range(30)]
    assert table["kind"].tolist()[:3] == ["k0", "k1", "k2"]


def test_the_sniffer_reads_the_lines_not_only_the_header() -> None:
    # The header has as many commas as semicolons (counting it alone would pick the comma),
    # but only the semicolons come the same number of times on every line.
    sample = "size, m2;price, eur;kind\n" + "10,5;100;a\n" * 10
    assert sniff_separator(sample) == ";"
    # One column: no separator, read as a comma-separated file of one column.
    assert sniff_separator("price\n1\n2\n") == ","


def test_numbers_text_and_missing_cells(tmp_path: Path) -> None:
    text = (
        "n, f ,t,flag,code,gap\n"
        "1, 2.5 , a ,True,007,\n"
        "2,NA,None,false,010,4\n"
        "3,  1e3, b,True,NULL,N/A\n"
    )
    table = read_csv(write(tmp_path, text), text=["code"])
    assert list(table.columns) == ["n", "f", "t", "flag", "code", "gap"]  # names stripped
    assert table["n"].dtype.kind == "i" and table["gap"].dtype.kind == "f"
    assert table["f"].tolist()[0] == 2.5 and np.isnan(table["f"][1]) and table["f"][2] == 1000
    # "None" is a category (Ames), not a missing cell; text cells are stripped.
    assert table["t"].tolist() == ["a", "None", "b"]
    # True/False as written in the file (pandas would make bools of them).
    assert table["flag"].tolist() == ["True", "false", "True"]
    # Columns asked for as text keep their cells as written: codes keep their zeros.
    assert table["code"].tolist()[:2] == ["007", "010"] and pd.isna(table["code"][2])
    assert np.isnan(table["gap"][0]) and table["gap"][1] == 4 and np.isnan(table["gap"][2])


def test_decimal_commas_where_semicolons_separate(tmp_path: Path) -> None:
    text = "a;b;c\n1,5;2.5;x,1\n-3,25;4;y\n"
    table = read_csv(write(tmp_path, text))
    assert table["a"].tolist() == [1.5, -3.25]
    assert table["b"].tolist() == [2.5, 4.0]
    assert table["c"].tolist() == ["x,1", "y"]


def test_windows_1252_past_the_first_lines_is_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ["name,x"] + [f"plain{i},{i}" for i in range(30_000)] + ["café,1"]
    path = write(tmp_path, "\n".join(lines) + "\n", encoding="cp1252")
    with caplog.at_level("WARNING"):
        table = read_csv(path)
    assert "is not UTF-8" in caplog.text and "Windows-1252" in caplog.text
    assert table["name"].iloc[-1] == "café" and len(table) == 30_001


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("y,a\n1,2\n3,4,5\n", r"line 3: 3 fields, but the header has 2"),
        ("y,a\n1,2,9\n3,4\n", r"line 2: 3 fields, but the header has 2"),
        ("y,a\n1,2\n\n3\n", r"line 4: 1 fields, but the header has 2"),
        ("y,a\n", r"has a header but no rows"),
        ("\n\n", r"is empty"),
    ],
)
def test_bad_files_are_refused_by_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_csv(write(tmp_path, text))


def test_quoted_separators_and_blank_lines(tmp_path: Path) -> None:
    text = 'name,x\n"Smith, J.",1\n\n"line\nbreak",\n'
    table = read_csv(write(tmp_path, text))
    assert table["name"].tolist() == ["Smith, J.", "line\nbreak"]
    assert table["x"].tolist()[0] == 1 and np.isnan(table["x"][1])


@pytest.mark.slow
def test_the_setup_benchmark_measures_a_small_table(tmp_path: Path, capsys) -> None:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "csv_setup.py"
    spec = importlib.util.spec_from_file_location("csv_setup_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    csv = tmp_path / "mnist.csv"
    bench.main(["--rows", "300", "--repeats", "1", "--csv", str(csv)])
    table = read_csv(csv)
    assert table.shape == (300, 785) and table.columns[0] == "label"
    assert table["label"].between(0, 9).all() and table.iloc[:, 1:].max().max() <= 255
    lines = capsys.readouterr().out.splitlines()
    run = json.loads(next(line for line in lines if line.startswith("{")))
    assert run["module"] == "nnlab.data.tables.CSVClassificationDataModule"
    assert run["features"] == 784 and run["train_rows"] == 204  # 300 − 60 test − 36 val
    assert run["seconds"] > 0
    if sys.platform != "win32":  # Windows has no getrusage: the benchmark reports NaN there
        assert run["peak_rss_mb"] >= run["rss_imports_mb"] > 0
    assert "setup" in lines[-1] and "peak RSS" in lines[-1]
