"""Shared fixtures: compose the real configs with Hydra, and run the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from nnlab.core.hydra import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def make_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Composes configs/<config_name>.yaml with overrides, as `python train.py ...` would, with
    outputs in a temporary folder and no progress bar."""

    runs = iter(range(1_000_000))

    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        register_resolvers()
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # kept by HydraConfig; train.py never sees it either
            cfg.paths.output_dir = str(tmp_path / f"run{next(runs)}")
            cfg.paths.log_dir = str(tmp_path / "logs")
            if cfg.get("trainer"):  # predict.yaml has none
                cfg.trainer.enable_progress_bar = False
            if cfg.get("callbacks"):
                cfg.callbacks.pop("progress_bar", None)
        return cfg

    yield make
    GlobalHydra.instance().clear()


def run_script(
    script: str,
    *args: str,
    cwd: Path,
    timeout: float = 300,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Runs a root entry point (train.py, eval.py) in a fresh interpreter, as a user would: no
    stdin, so a prompt fails instead of waiting."""
    env = env or {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
