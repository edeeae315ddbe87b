"""Every data config composes with Hydra, passes validation with the task its class declares,
and builds its datamodule without touching the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf.errors import MissingMandatoryValue

from nnlab.core import ConfigError
from nnlab.data.download import MIRROR_ENV
from nnlab.data.remote import RemoteDataModule
from nnlab.validation import validate

from .conftest import ROOT
from .helpers.http_fixtures import closed_port_url

TASKS = {
    "mnist": "multiclass",
    "fashion_mnist": "multiclass",
    "kmnist": "multiclass",
    "california_housing": "regression",
    "ames_house_prices": "regression",
    "house_prices_csv": "regression",
    "csv_classification": "multiclass",
    "cats_vs_dogs": "binary",
    "image_folder": "multiclass",
    "cifar10_cats_dogs": "binary",
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_data_config(name: str, tmp_path: Path, make_cfg) -> None:
    overrides = [f"data={name}", f"paths.data_dir={tmp_path / 'data'}"]
    if name in ("house_prices_csv", "csv_classification"):
        overrides += [f"data.path={tmp_path / 'h.csv'}", "data.target=price"]
    if name == "image_folder":
        overrides += [f"data.root={tmp_path / 'pictures'}"]
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


def test_missing_mandatory_key_is_named(make_cfg) -> None:
    # train.py turns this into "error: data.path must be set, e.g. data.path=...".
    with pytest.raises(MissingMandatoryValue) as e:
        instantiate(make_cfg("data=house_prices_csv").data)
    assert e.value.full_key == "data.path"


def test_constructor_mistake_is_a_config_error(make_cfg) -> None:
    cfg = make_cfg("data=mnist", "data.variant=emnist")
    with pytest.raises(InstantiationException) as e:
        instantiate(cfg.data)
    # train.py unwraps Hydra's wrapper and prints only this message.
    assert isinstance(e.value.__cause__, ConfigError)
    assert "valid: mnist, fashion_mnist, kmnist" in str(e.value.__cause__)


def test_offline_train_py_prints_the_message_not_a_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        MIRROR_ENV: closed_port_url("").rstrip("/"),
        "NNLAB_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "data=ames_house_prices", "logger=none"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: data=ames_house_prices: 1 file(s) are missing" in proc.stderr
    assert "kaggle_house_pred_train.csv" in proc.stderr and "connection refused" in proc.stderr
    assert str(tmp_path / "data" / "ames_house_prices") in proc.stderr
