"""The tables' fitted pipeline as plain data (what predict.py stores in a checkpoint): it
survives torch.load(weights_only=True), gives a re-read table exactly the training features,
maps outputs back to the target's own terms, and names the columns a new table lacks or adds."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nnlab.core import ConfigError
from nnlab.data.csv_reader import read_csv
from nnlab.data.splits import seeded_splits
from nnlab.data.tables import (
    CSVClassificationDataModule,
    CSVRegressionDataModule,
    table_pipeline_from_state,
)


def houses(tmp_path: Path, n: int = 80) -> Path:
    """A small house-sales table: an id, a date, numbers with blanks, a text and a code column,
    and a price."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        area = "" if i % 9 == 0 else f"{rng.uniform(50, 250):.1f}"
        day = pd.Timestamp("2014-05-02") + pd.Timedelta(days=int(rng.integers(0, 365)))
        kind = ("flat", "house", "")[i % 3]
        rows.append(
            f"{1000 + 7 * i},{day:%Y%m%dT000000},{area},{kind},{20 + 10 * (i % 4)},"
            f"{100_000 + 1000 * i}"
        )
    path = tmp_path / "houses.csv"
    path.write_text("id,date,area,kind,code,price\n" + "\n".join(rows) + "\n")
    return path


def setup(path: Path, **kwargs) -> CSVRegressionDataModule:
    dm = CSVRegressionDataModule(path=path, target="price", seed=0, **kwargs)
    dm.setup()
    return dm


def training_features(dm) -> torch.Tensor:
    """The features of the table's rows in file order (the splits put them in seeded order)."""
    n = sum(len(x) for x, _ in dm.splits.values())
    idx = torch.arange(n)
    parts = seeded_splits({"train": (idx, idx)}, dm.val_fraction, dm.test_fraction, dm.seed)
    out = torch.empty(n, dm.spec.in_features)
    for split in ("train", "val", "test"):
        out[parts[split][0]] = dm.splits[split][0]
    return out


def test_the_state_is_plain_data_and_rebuilds_the_training_features(tmp_path: Path) -> None:
    path = houses(tmp_path)
    dm = setup(path, categorical=["code"], log_target=True)
    state = dm.preprocessing()
    assert state["kind"] == "table" and state["target"] == "price"
    torch.save({"prep": state}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)["prep"]
    assert loaded == state
    pipeline = table_pipeline_from_state(loaded)
    assert pipeline.names == dm.feature_names
    frame = read_csv(path, text=pipeline.text_columns)
    x = pipeline.transform(frame)
    assert x.dtype == np.float32 and x.shape == (80, len(dm.feature_names))
    assert torch.equal(torch.from_numpy(x), training_features(dm))
    # The target column is not used: the same features without it, and on any subset of rows.
    assert np.array_equal(pipeline.transform(frame.drop(columns="price").iloc[5:9]), x[5:9])
    # Outputs back in dollars: the training targets are the file's prices.
    y = torch.cat([dm.splits[s][1] for s in ("train", "val", "test")])
    prices = np.sort(pipeline.inverse_target(y))
    assert np.allclose(prices, np.sort(frame["price"].to_numpy(float)), rtol=1e-5)


def test_classes_come_back_as_their_names(tmp_path: Path) -> None:
    lines = ["x,kind"] + [f"{i % 7},{'abc'[i % 3]}" for i in range(60)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    dm = CSVClassificationDataModule(path=tmp_path / "t.csv", target="kind", seed=0)
    dm.setup()
    pipeline = table_pipeline_from_state(dm.preprocessing())
    assert pipeline.inverse_target(torch.tensor([2, 0, 1])) == ["c", "a", "b"]
    assert pipeline.task == "multiclass" and pipeline.target_scale is None


def test_new_tables_missing_or_extra_columns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dm = setup(houses(tmp_path))
    pipeline = table_pipeline_from_state(dm.preprocessing())
    frame = read_csv(tmp_path / "houses.csv", text=pipeline.text_columns)
    with pytest.raises(ConfigError, match=r"lacks column\(s\) area, kind, which the model"):
        pipeline.transform(frame.drop(columns=["area", "kind"]))
    # The id was left out in training: a table without it is fine.
    without_id = pipeline.transform(frame.drop(columns=["id"]))
    extra = frame.assign(colour="red", garden=1.0)
    with caplog.at_level(logging.WARNING):
        x = pipeline.transform(extra)
        pipeline.transform(extra)
    assert np.array_equal(x, without_id)
    assert caplog.text.count("never seen in training, not used: colour, garden") == 1


def test_new_cells_unseen_missing_or_of_the_wrong_kind(tmp_path: Path) -> None:
    dm = setup(houses(tmp_path))
    pipeline = table_pipeline_from_state(dm.preprocessing())
    frame = read_csv(tmp_path / "houses.csv", text=pipeline.text_columns).iloc[:2].copy()
    frame["kind"] = ["castle", "flat"]  # castle: never seen, all zeros
    frame["area"] = [math.inf, np.nan]  # imputed with the training median
    frame["date"] = ["20160101T000000", "20140502T000000"]  # after training: days go on
    x = pipeline.transform(frame)
    names = pipeline.names
    kinds = [j for j, n in enumerate(names) if n.startswith("kind_")]
    assert x[0, kinds].sum() == 0 and x[1, names.index("kind_flat")] == 1
    area = names.index("area")
    assert x[0, area] == x[1, area]  # both the median, standardized
    assert x[0, names.index("missing_area")] == x[1, names.index("missing_area")] > 0
    days = names.index("date.days")
    assert x[0, days] > x[1, days]
    frame["area"] = ["big", "1"]
    with pytest.raises(ConfigError, match="column area holds 'big' where training saw numbers"):
        pipeline.transform(frame)
    frame["area"] = [1.0, 2.0]
    frame["date"] = ["yesterday", "20140502T000000"]
    with pytest.raises(ConfigError, match="column date holds 'yesterday', not a date"):
        pipeline.transform(frame)


def test_not_a_table_state() -> None:
    with pytest.raises(ConfigError, match="not a table's preprocessing"):
        table_pipeline_from_state({"kind": "array"})
