"""Tables read as their columns mean: identifiers left out (and only identifiers), dates and
timestamps as numbers rather than one-hot columns, infinite cells as missing, infinite targets'
rows left out, a continuous classification target refused; data.drop, data.categorical and
data.keep override every guess."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nnlab.core import ConfigError
from nnlab.data.columns import is_identifier, name_says_id
from nnlab.data.features import IDENTIFIER
from nnlab.data.tables import CSVClassificationDataModule, CSVRegressionDataModule
from nnlab.train import train

from .helpers.data_formats import shared


def write(tmp_path: Path, columns: dict[str, list], name: str = "t.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def regression(path: Path, **kwargs) -> CSVRegressionDataModule:
    dm = CSVRegressionDataModule(path=path, target="price", seed=0, **kwargs)
    dm.setup()
    return dm


def sales(n: int = 60) -> dict[str, list]:
    """Columns of a small sales table: an id, a float and an integer unique per row, a hex
    code, a category, a price."""
    rng = np.random.default_rng(1)
    return {
        "id": rng.choice(10**9, n, replace=False).tolist(),
        "area": rng.uniform(50, 250, n).round(3).tolist(),  # unique per row: a feature
        "lot": rng.choice(np.arange(1000, 90000), n, replace=False).tolist(),  # ditto
        "hash": [f"{h:08x}" for h in rng.choice(2**31, n, replace=False)],
        "kind": [("flat", "house")[i % 2] for i in range(n)],
        "price": (1000 * np.arange(n) + 5000).tolist(),
    }


def test_identifiers_are_left_out_with_a_warning_and_only_they(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, sales())
    with caplog.at_level("WARNING"):
        dm = regression(path)
    assert dm.numeric_columns == ["area", "lot"] and dm.text_columns == ["kind"]
    assert dm.feature_map["id"] == dm.feature_map["hash"] == IDENTIFIER
    assert dm.feature_map["area"] == ["area"] and dm.feature_map["kind"] == [
        "kind_flat",
        "kind_house",
    ]
    assert "column id has a different value in every row (an identifier): left out" in caplog.text
    assert "data.keep=[hash] uses it" in caplog.text
    assert dm.spec.input_shape == (4,)


def test_drop_categorical_and_keep_override_the_guesses(tmp_path: Path) -> None:
    path = write(tmp_path, sales())
    dm = regression(path, keep=["id", "hash"], drop=["lot"], categorical=["kind"])
    assert dm.numeric_columns == ["id", "area"] and dm.text_columns == ["hash", "kind"]
    assert dm.feature_map["lot"] == "left out (data.drop)"
    assert len(dm.feature_map["hash"]) == len(dm.splits["train"][0])  # one per training row
    coded = regression(path, categorical=["id"])
    assert coded.text_columns == ["id", "kind"]
    with pytest.raises(ConfigError, match=r"data\.keep names colour, not columns"):
        regression(path, keep=["colour"])


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("Id", [3, 1, 2], True),
        ("customerID", [10, 11, 12], True),
        ("", [0, 1, 2], True),  # DataFrame.to_csv's index column
        ("area", [1.5, 2.5, 3.5], False),  # a float feature, unique per row
        ("year", [2001, 2002, 2003], False),  # integers, but named as a quantity
        ("user_id", [1.5, 2.0, 3.0], False),  # not integers
        ("id", [1, 1, 2], False),  # repeated: a group, not an identifier
        ("id", [1, None, 2], False),  # not in every row
        ("code", ["a", "b", "c"], False),  # three rows of text: too few to tell
        ("uuid", ["a", "b", "c"], True),
    ],
)
def test_what_is_an_identifier(name: str, values: list, expected: bool) -> None:
    assert is_identifier(name, pd.Series(values)) is expected
    assert name_says_id("PassengerId") and not name_says_id("valid")


@pytest.mark.parametrize(
    ("cells", "hour"),
    [
        (["2014-10-13", "2015-01-02", "2014-12-31"], False),
        (["20141013T000000", "20150102T000000", "20141231T000000"], False),
        (["2014-10-13 00:00", "2015-01-02 13:30", "2014-12-31 08:00"], True),
        (["10/13/2014", "1/2/2015", "12/31/2014"], False),
        (["2014-10-13T00:00:00Z", "2015-01-02T13:30:00Z", "2014-12-31T08:00:00Z"], True),
    ],
)
def test_dates_become_numbers_not_one_hot_columns(
    tmp_path: Path, cells: list[str], hour: bool
) -> None:
    n = 60
    columns = {"date": [cells[i % 3] for i in range(n)], "x": list(range(n % 7, n % 7 + n))}
    columns["price"] = [10.0 * i for i in range(n)]
    columns["date"][5] = ""  # a missing date: imputed, flagged
    dm = regression(write(tmp_path, columns))
    parts = ["date.year", "date.month", "date.day_of_year", "date.days"]
    parts += ["date.hour"] if hour else []
    assert dm.date_columns == ["date"] and dm.text_columns == []
    assert dm.feature_map["date"] == [*parts, "missing_date.year", "missing_date.month",
                                      "missing_date.day_of_year", "missing_date.days",
                                      *(["missing_date.hour"] if hour else [])]  # fmt: skip
    x = torch.cat([x for x, _ in dm.splits.values()])
    assert torch.isfinite(x).all()
    # The parts of the three dates, back from their standardized features.
    pipeline = dm.pipeline
    x = pipeline.transform(pd.DataFrame({"date": cells, "x": [0, 1, 2]}))
    parts = {}
    for name in ("date.year", "date.month", "date.days"):
        j = pipeline.inputs.index(name)
        parts[name] = (x[:, j].astype(np.float64) * pipeline.scales[j] + pipeline.means[j]).tolist()
    hours = np.array([0, 13.5, 8]) / 24 if hour else 0
    assert pipeline.dates["date"]["reference"].startswith("2014-10-13")
    assert np.allclose(parts["date.year"], [2014, 2015, 2014], atol=1e-4)
    assert np.allclose(parts["date.month"], [10, 1, 12], atol=1e-4)
    assert np.allclose(parts["date.days"], np.array([0, 81, 79]) + hours, atol=1e-3)


def test_infinite_cells_are_missing_values_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 40
    columns = {"a": [float(i) for i in range(n)], "b": [1.0] * n, "price": list(range(n))}
    columns["a"][3], columns["a"][7], columns["b"][0] = np.inf, -np.inf, np.inf
    with caplog.at_level("WARNING"):
        dm = regression(write(tmp_path, columns))
    assert "infinite values treated as missing in a (2), b (1)" in caplog.text
    assert all(torch.isfinite(x).all() for x, _ in dm.splits.values())
    assert {"missing_a", "missing_b"} & set(dm.feature_names)


def test_rows_with_an_infinite_target_are_left_out_and_metrics_stay_finite(
    tmp_path: Path, make_cfg, caplog: pytest.LogCaptureFixture
) -> None:
    n = 60
    columns = {"x": [float(i % 13) for i in range(n)], "price": [3.0 * (i % 13) for i in range(n)]}
    columns["price"][4], columns["price"][9] = np.inf, None
    path = write(tmp_path, columns)
    cfg = make_cfg(
        "data=house_prices_csv",
        f"data.path={path}",
        "data.target=price",
        "trainer.max_epochs=1",
        "logger=none",
        "diagnostics=none",
    )
    with caplog.at_level("WARNING"):
        train(cfg)
    assert "rows left out: 1 without price, 1 with an infinite price" in caplog.text
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    metrics = {**results["val"], **results["test"]}
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    # results.json says which columns became which features.
    assert results["features"] == {"x": ["x"]}


def test_a_continuous_classification_target_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    columns = {"x": list(range(n)), "price": (rng.lognormal(12, 0.4, n) // 100 * 100).tolist()}
    dm = CSVClassificationDataModule(path=write(tmp_path, columns), target="price")
    with pytest.raises(ConfigError, match=r"holds 3\d\d distinct values in 400 rows .*fewer than "
                       r"5 rows per class.*data=house_prices_csv"):  # fmt: skip
        dm.setup()
    # Few values with fractions: measurements too.
    columns["price"] = [0.5 + i % 25 for i in range(n)]
    dm = CSVClassificationDataModule(path=write(tmp_path, columns), target="price")
    with pytest.raises(
        ConfigError, match=r"25 distinct values in 400 rows .*numbers with fractions"
    ):
        dm.setup()
    # Integers written as floats, a few of them: classes.
    columns["price"] = [float(i % 3) for i in range(n)]
    dm = CSVClassificationDataModule(path=write(tmp_path, columns), target="price")
    dm.setup()
    assert dm.spec.class_names == ("0.0", "1.0", "2.0")


def test_real_ames_id_is_left_out_as_an_identifier() -> None:
    path = shared("ames_house_prices/train.csv")
    dm = CSVRegressionDataModule(path=path, target="SalePrice", seed=0)
    dm.setup()
    assert dm.feature_map["Id"] == IDENTIFIER
    assert [c for c, f in dm.feature_map.items() if isinstance(f, str)] == ["Id"]
    assert "LotArea" in dm.numeric_columns and dm.date_columns == []


def test_the_house_sales_benchmark_table_reads_as_it_means(tmp_path: Path) -> None:
    """The CSV of docs/data.md's before/after: its id is left out, its date becomes numbers."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "house_sales.py"
    spec = importlib.util.spec_from_file_location("house_sales_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    csv = tmp_path / "sales.csv"
    bench.house_sales(300, seed=0).to_csv(csv, index=False)
    assert csv.read_text().splitlines()[1].split(",")[1].endswith("T000000")
    dm = regression(csv)
    assert dm.feature_map["id"] == IDENTIFIER and dm.date_columns == ["date"]
    assert dm.numeric_columns == [
        "bedrooms", "bathrooms", "sqft_living", "grade", "yr_built", "waterfront"
    ]  # fmt: skip
    assert dm.spec.input_shape == (15,)  # 6 numbers, 4 date parts, 5 conditions
