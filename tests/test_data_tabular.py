"""House prices and CSV tables: the StatLib California archive and the real Ames train.csv over
loopback HTTP, the real California housing.csv as a user's CSV, the pipeline fitted on the
training split only, log targets, metrics in dollars, and the errors for bad columns."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlab.core import ConfigError
from nnlab.data import housing
from nnlab.data.download import MIRROR_ENV, DataUnavailableError
from nnlab.data.housing import AmesHousePricesDataModule, CaliforniaHousingDataModule
from nnlab.data.spec import DataSpec, TargetScale
from nnlab.data.tables import CSVClassificationDataModule, CSVRegressionDataModule
from nnlab.evaluate import evaluate
from nnlab.tasks import RegressionTask
from nnlab.train import train

from .helpers import http_fixtures
from .helpers.data_formats import california_rows, digest, shared, statlib_tgz
from .helpers.http_fixtures import FileServer

file_server = http_fixtures.file_server
# scikit-learn's feature names, in its order.
SKLEARN_FEATURES = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup"]
SKLEARN_FEATURES += ["Latitude", "Longitude"]


def all_targets(dm) -> torch.Tensor:
    return torch.cat([dm.splits[s][1] for s in ("train", "val", "test")]).double()


def test_california_statlib_archive(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    rows = california_rows(400)
    archive = statlib_tgz(rows)
    url = file_server.add("figshare/5976036", archive)
    remote = dataclasses.replace(
        housing.CAL_HOUSING, urls=(url,), known_hash=digest(archive, "sha256")
    )
    monkeypatch.setattr(housing, "CAL_HOUSING", remote)
    dm = CaliforniaHousingDataModule(data_dir=tmp_path, progress=False, normalize="none", seed=3)
    dm.prepare_data()
    table = dm.read_table()
    assert list(table.columns) == [*SKLEARN_FEATURES, "MedHouseVal"]
    # scikit-learn's derived features: rooms, bedrooms and occupants per household.
    assert table.iloc[0, 2] == pytest.approx(rows[0, 3] / rows[0, 6], rel=1e-5)
    assert table.iloc[0, 5] == pytest.approx(rows[0, 5] / rows[0, 6], rel=1e-5)
    dm.setup()
    assert dm.spec.task == "regression" and dm.spec.input_shape == (8,)
    assert dm.numeric_columns == SKLEARN_FEATURES and dm.text_columns == []
    # Features and target are standardized with training statistics only.
    x_train, y_train = dm.splits["train"]
    assert x_train.mean(0).abs().max() < 1e-5 and abs(float(y_train.mean())) < 1e-5
    assert abs(float(dm.splits["val"][0].mean())) > 1e-4
    # The target scale maps training targets back to dollars.
    dollars = dm.spec.target_scale.to_original(all_targets(dm))
    assert np.allclose(np.sort(dollars.numpy()), np.sort(rows[:, 8]), rtol=1e-4)
    assert file_server.requests["figshare/5976036"] == 1


HOUSING_CSV_HEADER = "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,"
HOUSING_CSV_HEADER += "population,households,median_income,median_house_value,ocean_proximity"


def test_california_from_a_local_archive_or_hands_on_ml_csv_gives_the_same_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # nothing may be downloaded
    rows = california_rows(300)
    archive = tmp_path / "cal_housing.tgz"
    archive.write_bytes(statlib_tgz(rows))
    csv = tmp_path / "housing.csv"
    lines = [",".join(f"{v:.6f}" for v in row) + ",NEAR BAY" for row in rows]
    csv.write_text("\n".join([HOUSING_CSV_HEADER, *lines]) + "\n")
    modules = []
    for path in (archive, csv):
        dm = CaliforniaHousingDataModule(data_dir=tmp_path / "cache", path=str(path), seed=1)
        dm.prepare_data()
        dm.setup()
        modules.append(dm)
    a, b = modules
    assert a.feature_names == b.feature_names == SKLEARN_FEATURES  # ocean_proximity not used
    for split in ("train", "val", "test"):
        assert torch.equal(a.splits[split][0], b.splits[split][0])
        assert torch.equal(a.splits[split][1], b.splits[split][1])
    assert not (tmp_path / "cache").exists()  # the data folder was not touched


def test_real_hands_on_ml_housing_csv_as_california_housing(tmp_path: Path) -> None:
    path = shared("california_housing/housing.csv")
    columns = housing.read_housing_csv(path)
    assert columns.shape == (20640, 9)
    assert int(np.isnan(columns[:, 4]).sum()) == 207  # blank total_bedrooms (PROVENANCE.md)
    assert columns[:, 8].mean() == pytest.approx(206855.82, abs=0.01)
    dm = CaliforniaHousingDataModule(data_dir=tmp_path, path=str(path), seed=0)
    dm.prepare_data()
    dm.setup()
    # scikit-learn's eight features, and a flag for the imputed bedrooms.
    assert dm.feature_names == [*SKLEARN_FEATURES, "missing_AveBedrms"]
    assert dm.spec.input_shape == (9,)
    assert not any(torch.isnan(x).any() for x, _ in dm.splits.values())
    dollars = dm.spec.target_scale.to_original(all_targets(dm)).numpy()
    assert dollars.max() == pytest.approx(500001, rel=1e-6)


def test_a_local_copy_that_is_missing_or_not_the_table_is_named(tmp_path: Path) -> None:
    dm = CaliforniaHousingDataModule(data_dir=tmp_path, path=str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match=r"data\.path=.*nope\.csv: no such file"):
        dm.prepare_data()
    other = tmp_path / "other.csv"
    other.write_text("a,median_income\n1,2\n")
    dm = CaliforniaHousingDataModule(data_dir=tmp_path, path=str(other))
    with pytest.raises(ConfigError, match=r"not the Hands-On ML housing\.csv: no column longitude"):
        dm.setup()


def test_a_failed_download_points_to_data_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # the discard port: refused
    dm = CaliforniaHousingDataModule(data_dir=tmp_path, progress=False)
    with pytest.raises(DataUnavailableError, match=r"housing.csv\): data.path=<file>"):
        dm.prepare_data()


def test_ames_from_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # nothing may be downloaded
    path = shared("ames_house_prices/train.csv")
    dm = AmesHousePricesDataModule(data_dir=tmp_path, path=str(path), progress=False)
    dm.prepare_data()
    dm.setup()
    assert {k: len(v[0]) for k, v in dm.splits.items()} == {"train": 993, "val": 175, "test": 292}
    prices = dm.spec.target_scale.to_original(all_targets(dm)).numpy()
    assert prices.mean() == pytest.approx(180921.20, rel=1e-6)


def test_eval_reads_the_data_where_this_machine_keeps_it(
    file_server: FileServer, make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "ames_house_prices/kaggle_house_pred_train.csv"
    file_server.add(name, shared("ames_house_prices/train.csv"))
    monkeypatch.setenv(MIRROR_ENV, file_server.base_url)
    quiet = ("logger=none", "diagnostics=none")
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    cfg = make_cfg(
        "data=ames_house_prices", f"paths.data_dir={elsewhere}", "trainer.max_epochs=1", *quiet
    )
    train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    # Another machine: the checkpoint's absolute data_dir does not exist there.
    shutil.move(elsewhere, here)
    eval_cfg = make_cfg(
        f"ckpt_path={results['ckpt_path']}",
        f"paths.data_dir={here}",
        "logger=none",
        config_name="eval",
    )
    assert evaluate(eval_cfg) == pytest.approx(results["test"], rel=1e-5)
    assert file_server.requests[name] == 1


def test_ames_real_file_over_mirror(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_csv = shared("ames_house_prices/train.csv")  # its sha1 is the canonical one
    file_server.add("ames_house_prices/kaggle_house_pred_train.csv", train_csv)
    monkeypatch.setenv(MIRROR_ENV, file_server.base_url)
    dm = AmesHousePricesDataModule(data_dir=tmp_path, progress=False, normalize="none")
    dm.prepare_data()
    dm.setup()
    assert file_server.requests["ames_house_prices/kaggle_house_pred_train.csv"] == 1
    assert len(dm.text_columns) == 44  # Kaggle's 43 text columns and the MSSubClass code
    assert "Id" not in dm.numeric_columns and "SalePrice" not in dm.numeric_columns
    assert {k: len(v[0]) for k, v in dm.splits.items()} == {"train": 993, "val": 175, "test": 292}
    assert not torch.isnan(dm.splits["train"][0]).any()
    scale = dm.spec.target_scale
    assert scale.log
    prices = scale.to_original(all_targets(dm)).numpy()
    assert prices.min() == pytest.approx(34900, rel=1e-6)
    assert prices.max() == pytest.approx(755000, rel=1e-6)
    assert prices.mean() == pytest.approx(180921.20, rel=1e-6)
    # Missing LotFrontage is imputed, and flagged in a feature of its own.
    assert "missing_LotFrontage" in dm.feature_names and "MSZoning_C (all)" in dm.feature_names


def test_real_california_csv_as_user_table() -> None:
    dm = CSVRegressionDataModule(
        path=shared("california_housing/housing.csv"), target="median_house_value"
    )
    dm.setup()
    assert dm.text_columns == ["ocean_proximity"]
    assert "missing_total_bedrooms" in dm.feature_names  # the 207 blanks
    assert dm.spec.input_shape == (len(dm.feature_names),) == (14,)
    assert not any(torch.isnan(x).any() for x, _ in dm.splits.values())
    assert dm.spec.target_scale.log is False
    assert sum(len(x) for x, _ in dm.splits.values()) == 20640


def test_unseen_category_and_training_only_fit(tmp_path: Path) -> None:
    n = 60
    lines = ["price,area,kind"] + [f"{100 + i},{i},{'a' if i % 2 else 'b'}" for i in range(n)]
    lines[-1] = "999,1000,zzz"  # one row whose category and size appear in one split only
    path = tmp_path / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    dm = CSVRegressionDataModule(path=path, target="price", seed=0)
    dm.setup()
    x_all = torch.cat([dm.splits[s][0] for s in ("train", "val", "test")])
    in_train = any(float(row[0]) > 5 for row in dm.splits["train"][0])
    # kind_zzz is a feature only if the odd row fell in the training split.
    assert ("kind_zzz" in dm.feature_names) == in_train
    assert x_all.shape[1] == len(dm.feature_names)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"target": "cost"},
            "data.target=cost is not a column of .*its columns: price, area, kind",
        ),
        (
            {"target": "kind"},
            "data.target=kind .* is not numeric \\(it holds 'a'\\).*Numeric columns: price, area",
        ),
        ({"target": "price", "drop": ["Id"]}, "data.drop names Id, not columns"),
        ({"target": "area", "log_target": True}, "log_target=true needs area > 0"),
    ],
)
def test_clear_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = tmp_path / "houses.csv"
    path.write_text("price,area,kind\n" + "".join(f"{100 + i},{i},a\n" for i in range(20)))
    with pytest.raises(ConfigError, match=message):
        CSVRegressionDataModule(path=path, **kwargs).setup()


def test_missing_file_and_ragged_rows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.path=.*nope\.csv: no such file"):
        CSVRegressionDataModule(path=tmp_path / "nope.csv", target="y").setup()
    path = tmp_path / "ragged.csv"
    path.write_text("y,a\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3: 1 fields, but the header has 2"):
        CSVRegressionDataModule(path=path, target="y").setup()


def test_regression_metrics_in_original_units() -> None:
    scale = TargetScale(mean=12.0, std=0.4, log=True)
    spec = DataSpec("regression", (3,), 1, target_scale=scale)
    assert DataSpec.from_dict(spec.to_dict()) == spec  # survives the checkpoint's hparams
    module = RegressionTask(
        spec=spec.to_dict(),
        model={"_target_": "nnlab.nn.networks.MLP", "hidden_sizes": []},
        loss={"name": "auto"},
    )
    metrics = module.metrics["val_metrics"]
    output, target = torch.tensor([0.5, -1.0, 0.0]), torch.tensor([0.0, -1.5, 0.25])
    metrics.update(output, target)
    values = metrics.compute()
    log_pred, log_true = output.double() * 0.4 + 12.0, target.double() * 0.4 + 12.0
    dollars = (log_pred.exp() - log_true.exp()).abs()
    assert values["val/rmse_log"] == pytest.approx(
        float((log_pred - log_true).pow(2).mean().sqrt()), rel=1e-5
    )
    assert values["val/rmse_orig"] == pytest.approx(float(dollars.pow(2).mean().sqrt()), rel=1e-5)
    assert values["val/mae_orig"] == pytest.approx(float(dollars.mean()), rel=1e-5)
    assert values["val/mse"] == pytest.approx(float((output - target).pow(2).mean()), rel=1e-5)
    assert not math.isnan(float(values["val/r2"]))


def test_real_csv_classification_ocean_proximity(make_cfg) -> None:
    """A real class column: the Hands-On ML housing.csv's ocean_proximity (5 classes) from the
    other columns, trained through train.py well above the majority class."""
    path = shared("california_housing/housing.csv")
    dm = CSVClassificationDataModule(path=str(path), target="ocean_proximity", seed=0)
    dm.setup()
    classes = ("<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN")
    assert dm.spec.task == "multiclass" and dm.spec.class_names == classes
    assert dm.spec.num_targets == 1 and "ocean_proximity" not in dm.feature_names
    y = torch.cat([dm.splits[s][1] for s in ("train", "val", "test")])
    assert y.dtype == torch.int64 and len(y) == 20640
    assert torch.bincount(y).tolist() == [9136, 6551, 5, 2290, 2658]
    cfg = make_cfg(
        "data=csv_classification",
        f"data.path={path}",
        "data.target=ocean_proximity",
        "trainer.max_epochs=3",
        "logger=none",
        "diagnostics=none",
    )
    train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["test"]["test/acc"] > 0.8  # the majority class is 44 %


def test_csv_classes_sorted_numerically_missing_targets_left_out(tmp_path: Path) -> None:
    lines = ["x,label"] + [f"{i},{(1, 2, 10)[i % 3]}" for i in range(60)] + ["61,", "62,NA"]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    dm = CSVClassificationDataModule(path=str(tmp_path / "t.csv"), target="label", seed=0)
    dm.setup()
    assert dm.spec.class_names == ("1", "2", "10")  # numbers, not text order ("1", "10", "2")
    assert sum(len(v[1]) for v in dm.splits.values()) == 60
    (tmp_path / "one.csv").write_text("x,label\n1,a\n2,a\n")
    one = CSVClassificationDataModule(path=str(tmp_path / "one.csv"), target="label")
    with pytest.raises(ConfigError, match=r"holds 1 class \(a\); classification needs"):
        one.setup()


def test_semicolon_csv_with_decimal_commas_and_an_id_like_column(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spreadsheet's European export: ';' between fields, ',' as the decimal mark, a byte
    order mark; a text column with a different value in every row (a name) is left out as an
    identifier, and one with a distinct value in most training rows is warned about (one
    feature per value)."""
    lines = ["Name;Fare;Sex;Ticket;Survived"]
    lines += [
        f"Person {i};{7 + i % 5},25;{'fm'[i % 2]};T{i - i % 5 // 4};{i % 2}" for i in range(60)
    ]
    (tmp_path / "t.csv").write_bytes(("\n".join(lines) + "\n").encode("utf-8-sig"))
    dm = CSVClassificationDataModule(path=str(tmp_path / "t.csv"), target="Survived", seed=0)
    with caplog.at_level("WARNING"):
        dm.setup()
    assert dm.numeric_columns == ["Fare"] and dm.text_columns == ["Sex", "Ticket"]
    assert "Fare" in dm.feature_names and dm.spec.class_names == ("0", "1")
    assert dm.feature_map["Name"] == "left out (identifier: a different value in every row)"
    assert "column Name has a different value in every row (an identifier)" in caplog.text
    distinct = dm.pipeline.categories[1]
    assert f"text column Ticket has {len(distinct)} distinct values in 41 training rows" in (
        caplog.text
    )
    assert 20 < len(distinct) < 41  # repeated tickets: no identifier, but one feature per value
    assert "data.drop=[Ticket]" in caplog.text and "column Sex" not in caplog.text


def test_windows_1252_csv_and_tiny_tables(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A spreadsheet's non-UTF-8 export is read (with a warning); ten rows still give two or
    more per split (R² needs two); four rows leave 2 after the test split, too few to split
    again, and are refused with what to change."""
    lines = ["name,café,price"] + [f"{c},{i},{100 * i}" for i, c in enumerate("ABCDEFGHIJ", 1)]
    (tmp_path / "t.csv").write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    dm = CSVRegressionDataModule(path=str(tmp_path / "t.csv"), target="price", seed=0)
    with caplog.at_level("WARNING"):
        dm.setup()
    assert "is not UTF-8" in caplog.text and "café" in dm.numeric_columns
    assert sorted(len(y) for _, y in dm.splits.values()) == [2, 2, 6]
    (tmp_path / "four.csv").write_text("x,price\n1,1\n2,2\n3,3\n4,4\n")
    tiny = CSVRegressionDataModule(path=str(tmp_path / "four.csv"), target="price")
    with pytest.raises(ConfigError, match="of only 2 samples and keep 2 on each side"):
        tiny.setup()
