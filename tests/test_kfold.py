"""k-fold cross-validation: data.folds=K data.fold=i cuts seeded (stratified) folds out of the
training data and leaves the test split as it is; experiment=cv runs the folds as a multirun
whose report gives mean ± sd over folds and seeds."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import torch

from nnlab.core import ConfigError
from nnlab.data.housing import AmesHousePricesDataModule
from nnlab.data.splits import seeded_splits
from nnlab.data.toy import DigitsDataModule

from .conftest import SHARED_DATA, run_script

AMES = SHARED_DATA / "ames_house_prices" / "train.csv"


def rows(split: tuple[torch.Tensor, torch.Tensor]) -> set[tuple[float, ...]]:
    """A split's samples as a set of rows (digits images are distinct enough to identify)."""
    x = split[0].flatten(1)
    return {tuple(r.tolist()) for r in x}


@pytest.fixture(scope="module")
def digits_folds() -> list[DigitsDataModule]:
    modules = []
    for fold in range(5):
        data = DigitsDataModule(folds=5, fold=fold, seed=3)
        data.setup("fit")
        modules.append(data)
    return modules


def test_the_folds_partition_the_training_data_and_the_test_split_stays(digits_folds):
    plain = DigitsDataModule(seed=3)
    plain.setup("fit")
    vals = [rows(d.splits["val"]) for d in digits_folds]
    pool = rows(plain.splits["train"]) | rows(plain.splits["val"])
    assert set().union(*vals) == pool  # every training sample validates once...
    assert sum(len(v) for v in vals) == len(pool)  # ...and only once
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    for d in digits_folds:
        assert torch.equal(d.splits["test"][0], plain.splits["test"][0])  # untouched
        assert rows(d.splits["train"]) == pool - rows(d.splits["val"])


def test_classification_folds_are_stratified(digits_folds):
    pool_labels = torch.cat([digits_folds[0].splits["train"][1], digits_folds[0].splits["val"][1]])
    for d in digits_folds:
        labels = d.splits["val"][1]
        for c in range(10):
            expected = (pool_labels == c).sum().item() / 5
            assert abs((labels == c).sum().item() - expected) < 1  # within one sample


def test_folds_are_seeded():
    x = torch.arange(100.0).unsqueeze(1)
    raw = {"train": (x, torch.zeros(100)), "test": (x[:10], torch.zeros(10))}

    def val(seed: int) -> list[float]:
        return seeded_splits(raw, 0.2, 0.2, seed, folds=4, fold=1)["val"][0].flatten().tolist()

    assert val(1) == val(1) and val(1) != val(2) and len(val(1)) == 25


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fold": 2}, "data.fold=2 needs data.folds"),
        ({"folds": 1}, "data.folds must be null or an int >= 2, got 1"),
        ({"folds": 5, "fold": 5}, r"data.fold must be an int in 0..4 for data.folds=5, got 5"),
        ({"folds": 5, "fold": -1}, r"data.fold must be an int in 0..4"),
    ],
)
def test_bad_folds_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        DigitsDataModule(**options)


def test_too_many_folds_for_the_data_is_refused():
    data = DigitsDataModule(folds=1000, fold=0)
    with pytest.raises(ConfigError, match=r"cannot cut \d+ samples into data.folds=1000 folds"):
        data.setup("fit")


@pytest.mark.skipif(not AMES.is_file(), reason=f"needs the shared Ames file {AMES}")
def test_ames_folds_partition_its_rows_and_keep_its_test_rows(tmp_path):
    tables = []
    for fold in (0, 4):
        data = AmesHousePricesDataModule(
            path=str(AMES), data_dir=str(tmp_path), folds=5, fold=fold, seed=0
        )
        data.setup("fit")
        tables.append(data)
    first, last = tables
    # The same test houses: their prices, in dollars (each fold scales targets and features
    # with its own training rows), are the same in the same order.
    prices = [d.target_scale.to_original(d.splits["test"][1].double()) for d in tables]
    assert torch.allclose(prices[0], prices[1], rtol=1e-5)
    n_pool = len(first.splits["train"][0]) + len(first.splits["val"][0])
    assert n_pool == len(last.splits["train"][0]) + len(last.splits["val"][0])
    assert len(first.splits["val"][0]) in (n_pool // 5, n_pool // 5 + 1)


def test_cv_experiment_reports_mean_and_sd_over_folds_and_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    run_script(
        "train.py",
        "experiment=cv",
        "data=xor",
        "data.folds=2",  # range(${data.folds}): two jobs per seed
        "seed=1,2",  # swept on the command line too
        "trainer.max_epochs=1",
        "diagnostics=none",
        "print_config=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert len(results) == 4
    swept = sorted(
        sorted(o for o in r["overrides"] if o.startswith(("data.fold=", "seed="))) for r in results
    )
    assert swept == sorted([f"data.fold={f}", f"seed={s}"] for f in (0, 1) for s in (1, 2))
    values = [r["value"] for r in results]
    with open(sweep / "aggregate.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert int(row["n"]) == 4
    assert float(row["value_mean"]) == pytest.approx(statistics.fmean(values))
    assert float(row["value_sd"]) == pytest.approx(statistics.stdev(values))
    tests = [r["test"]["test/acc"] for r in results]
    assert float(row["test/acc_mean"]) == pytest.approx(statistics.fmean(tests))
    report = (sweep / "report.md").read_text()
    assert "## Mean ± sd over " in report and "data.fold" in report
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    assert f"| 4 | {mean:.4f} ± {sd:.4f} |" in report
