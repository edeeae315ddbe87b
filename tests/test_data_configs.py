"""Every data config composes with Hydra, passes validation with the task its class declares,
and builds its datamodule without touching the network."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from nnlab.config import validate
from nnlab.data.remote import RemoteDataModule

TASKS = {
    "mnist": "multiclass",
    "fashion_mnist": "multiclass",
    "kmnist": "multiclass",
    "california_housing": "regression",
    "ames_house_prices": "regression",
    "house_prices_csv": "regression",
    "cats_vs_dogs": "binary",
    "cifar10_cats_dogs": "binary",
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_data_config(name: str, tmp_path: Path, make_cfg) -> None:
    overrides = [f"data={name}", f"paths.data_dir={tmp_path / 'data'}"]
    if name == "house_prices_csv":
        overrides += [f"data.path={tmp_path / 'h.csv'}", "data.target=price"]
    cfg = make_cfg(*overrides)
    assert validate(cfg) == TASKS[name]
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.task == TASKS[name]
    if isinstance(dm, RemoteDataModule):
        # The mirror layout uses the config's file name, passed explicitly.
        assert dm.name == name
        assert dm.folder == tmp_path / "data" / name
        assert dm.prepare_data_per_node
    assert not (tmp_path / "data").exists()  # building a datamodule downloads nothing
