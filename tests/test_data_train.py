"""Training on real data, end to end (slow): train.py against the loopback mirror for Ames and
MNIST, two real DDP ranks preparing data once, and the quality bars on real data: an MLP on the
real MNIST test images reaches ≥ 0.90 validation accuracy, Ames with a log target a validation
RMSE(log) ≤ 0.20."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from nnlab.data.base import ArrayDataModule, Split
from nnlab.data.download import MIRROR_ENV
from nnlab.data.vision import read_idx
from nnlab.tasks import MulticlassTask

from .helpers import http_fixtures
from .helpers.data_formats import digest, idx_gz, shared
from .helpers.fitting import quiet_trainer
from .helpers.http_fixtures import FileServer

pytestmark = pytest.mark.slow
file_server = http_fixtures.file_server
REPO = Path(__file__).parents[1]
AMES_PATH = "ames_house_prices/kaggle_house_pred_train.csv"


def run_train(args: list[str], tmp_path: Path, server: FileServer, script: str | None = None):
    """train.py in a subprocess, downloading from the loopback mirror into tmp_path/data."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        MIRROR_ENV: server.base_url,
        "NNLAB_DATA_DIR": str(tmp_path / "data"),
    }
    run_dir = tmp_path / "run"
    cmd = [sys.executable, *(["-c", script] if script else ["train.py"])]
    cmd += [*args, "logger=none", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((run_dir / "results.json").read_text())


def test_ames_over_mirror_reaches_rmse_log(file_server: FileServer, tmp_path: Path) -> None:
    file_server.add(AMES_PATH, shared("ames_house_prices/train.csv"))
    results = run_train(["data=ames_house_prices", "trainer.max_epochs=40"], tmp_path, file_server)
    assert file_server.requests[AMES_PATH] == 1
    assert results["spec"]["target_scale"]["log"] is True
    assert results["val"]["val/rmse_log"] <= 0.20
    assert 5_000 < results["val"]["val/mae_orig"] < 40_000  # dollars


MNIST_WRAPPER = """
import dataclasses, runpy, sys
from nnlab.data import vision
v = vision.IDX_VARIANTS["mnist"]
md5 = {**v.md5, "train-images-idx3-ubyte.gz": sys.argv[1]}
vision.IDX_VARIANTS["mnist"] = dataclasses.replace(v, md5=md5)
sys.argv = ["train.py", *sys.argv[2:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_mnist_over_mirror_end_to_end(file_server: FileServer, tmp_path: Path) -> None:
    """train.py data=mnist with NNLAB_DATA_MIRROR: the three real files with their canonical md5;
    train-images is a stand-in (real test images, tiled) whose md5 the wrapper registers."""

    raw = shared("mnist/MNIST/raw")
    for name in (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ):
        file_server.add(f"mnist/{name}", raw / name)
    images = idx_gz(read_idx(raw / "t10k-images-idx3-ubyte.gz").repeat(6, axis=0))
    file_server.add("mnist/train-images-idx3-ubyte.gz", images)
    md5 = digest(images).removeprefix("md5:")
    args = [md5, "data=mnist", "trainer.max_epochs=1", "+trainer.limit_train_batches=20"]
    results = run_train(args, tmp_path, file_server, script=MNIST_WRAPPER)
    assert (
        results["spec"]["input_shape"] == [1, 28, 28] and len(results["spec"]["class_names"]) == 10
    )
    assert results["choices"]["data"] == "mnist"
    assert all(n == 1 for p, n in file_server.requests.items() if p.startswith("mnist/"))
    assert len(file_server.requests) == 4


def test_ddp_ranks_prepare_once(file_server: FileServer, tmp_path: Path) -> None:
    """Two real DDP ranks (gloo on CPU) both run prepare_data: one download."""
    file_server.add(AMES_PATH, shared("ames_house_prices/train.csv"))
    file_server.delays[AMES_PATH] = 2.0
    args = ["data=ames_house_prices", "trainer=ddp_cpu", "trainer.max_epochs=1"]
    results = run_train(args, tmp_path, file_server)
    assert file_server.requests[AMES_PATH] == 1
    assert "val/rmse_log" in results["val"]


class RealMNISTTest(ArrayDataModule):
    """The real MNIST test images (the only MNIST images in ../shared/data), split by the base
    class into train/val/test."""

    task = "multiclass"

    def load(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        raw = shared("mnist/MNIST/raw")
        x = torch.from_numpy(read_idx(raw / "t10k-images-idx3-ubyte.gz").copy()).unsqueeze(1)
        y = torch.from_numpy(read_idx(raw / "t10k-labels-idx1-ubyte.gz").astype("int64"))
        return {"train": (x, y)}, tuple("0123456789")


def test_mlp_on_real_mnist_reaches_90_percent(tmp_path: Path) -> None:
    L.seed_everything(0, verbose=False)
    dm = RealMNISTTest(batch_size=64, val_fraction=0.15, test_fraction=0.15, seed=0)
    dm.setup()
    module = MulticlassTask(
        spec=dm.spec.to_dict(),
        model={
            "_target_": "nnlab.nn.networks.MLP",
            "hidden_sizes": [256],
            "activation": {"name": "relu"},
        },
        loss={"name": "auto"},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    )
    trainer = quiet_trainer(max_epochs=6, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    val = trainer.validate(module, datamodule=dm, verbose=False)[0]
    assert val["val/acc"] >= 0.90
