"""The toy data sets: the synthetic linear regression unchanged by default, and its outliers in
the training split alone; the one seeded split that every datamodule and the tables share."""

from __future__ import annotations

import hashlib

import pytest
import torch
from hydra.utils import instantiate

from nnlab.core import ConfigError
from nnlab.data.base import ArrayDataModule, Split
from nnlab.data.splits import seeded_splits
from nnlab.data.tables import CSVRegressionDataModule
from nnlab.data.toy import LinearRegressionDataModule

# sha256 of the default LinearRegressionDataModule(seed=0)'s splits (train, val, test; x then y),
# as the code before the outlier option made them.
LINEAR_SEED0 = "3afd4249c08dcbc15e76da41f541212a7974310ef0f875abe6e4daa4c7852224"


def digest(dm) -> str:
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        for t in dm.splits[split]:
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def test_linear_regression_without_outliers_is_the_data_it_was() -> None:
    dm = LinearRegressionDataModule(seed=0)
    dm.setup()
    assert digest(dm) == LINEAR_SEED0
    assert len(dm.outliers) == 0


@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_outliers_shift_that_fraction_of_the_training_targets_only(fraction: float) -> None:
    clean = LinearRegressionDataModule(seed=3)
    dirty = LinearRegressionDataModule(seed=3, outlier_fraction=fraction, outlier_shift=8.0)
    clean.setup()
    dirty.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(clean.splits[split][0], dirty.splits[split][0])
    for split in ("val", "test"):  # evaluated on clean targets
        assert torch.equal(clean.splits[split][1], dirty.splits[split][1])
    y_clean, y_dirty = clean.splits["train"][1], dirty.splits["train"][1]
    shifted = (y_dirty != y_clean).nonzero().flatten()
    assert len(shifted) == round(fraction * len(y_clean))
    assert sorted(shifted.tolist()) == sorted(dirty.outliers.tolist())
    shift = (y_dirty - y_clean)[shifted]
    expected = 8.0 * float(y_clean.std())  # in standard deviations of the clean targets
    assert torch.allclose(shift, torch.full_like(shift, expected), rtol=1e-5)
    # The true line is the one the clean data follows.
    assert clean.true_bias == dirty.true_bias
    assert torch.equal(clean.true_weight, dirty.true_weight)


def test_outlier_options_from_the_config(make_cfg) -> None:
    cfg = make_cfg("data=linear_regression", "data.outlier_fraction=0.1")
    dm = instantiate(cfg.data)
    assert (dm.outlier_fraction, dm.outlier_shift) == (0.1, 10.0)
    with pytest.raises(ConfigError, match=r"outlier_fraction must be in \[0, 1\), got 1.5"):
        LinearRegressionDataModule(outlier_fraction=1.5)


def test_the_tables_split_their_rows_as_the_datamodules_split_tensors(tmp_path) -> None:
    """A table's rows land in the split where the seeded split puts the n-th sample of any
    data set: one split function, used by both."""
    n = 50
    lines = ["row,y"] + [f"{i},{2 * i}" for i in range(n)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    dm = CSVRegressionDataModule(
        path=tmp_path / "t.csv", target="y", seed=5, normalize="none", standardize_target=False
    )
    dm.setup()
    idx = torch.arange(n)
    expected = seeded_splits({"train": (idx, idx)}, dm.val_fraction, dm.test_fraction, seed=5)
    for split in ("train", "val", "test"):
        assert torch.equal(dm.splits[split][1], 2.0 * expected[split][1].float())
    # And the datamodules' setup splits tensors the same way.
    ids = Ids(seed=5, normalize="none")
    ids.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(ids.splits[split][1], expected[split][1])


class Ids(ArrayDataModule):
    """50 samples whose target is their index."""

    task = "regression"

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        idx = torch.arange(50)
        return {"train": (idx[:, None].float(), idx)}, ()
