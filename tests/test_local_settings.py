"""Per-machine settings: a `.env` file in the launch folder (python-dotenv) and the optional,
git-ignored configs/local/default.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from nnlab.core.env import load_env_file
from nnlab.core.hydra import register_resolvers

from .conftest import CONFIG_DIR, ROOT


def test_env_file_sets_what_the_environment_does_not(tmp_path, monkeypatch):
    monkeypatch.delenv("NNLAB_TEST_NEW", raising=False)
    monkeypatch.setenv("NNLAB_TEST_SET", "from the shell")
    (tmp_path / ".env").write_text(
        "# a comment\nNNLAB_TEST_NEW=from the file\nNNLAB_TEST_SET=from the file\n"
    )
    assert load_env_file(tmp_path) == ["NNLAB_TEST_NEW"]
    assert os.environ["NNLAB_TEST_NEW"] == "from the file"
    assert os.environ["NNLAB_TEST_SET"] == "from the shell"  # the environment wins
    monkeypatch.delenv("NNLAB_TEST_NEW")


def test_no_env_file_changes_nothing(tmp_path):
    before = dict(os.environ)
    assert load_env_file(tmp_path) == []
    assert dict(os.environ) == before


def test_env_file_in_the_launch_folder_reaches_the_config(tmp_path):
    (tmp_path / ".env").write_text(f"NNLAB_DATA_DIR={tmp_path / 'datasets'}\n")
    env = {k: v for k, v in os.environ.items() if k != "NNLAB_DATA_DIR"}
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--cfg", "job", "--resolve", "-p", "paths"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"data_dir: {tmp_path / 'datasets'}\n" in proc.stdout


def test_env_example_names_the_documented_variables():
    text = (ROOT / ".env.example").read_text()
    for name in ("WANDB_API_KEY", "MLFLOW_TRACKING_URI", "NNLAB_DATA_DIR"):
        assert f"# {name}=" in text  # commented out: copying the example sets nothing


def compose_train(config_dir: Path, *overrides: str):
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
            return compose("train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def configs_copy(tmp_path: Path) -> Path:
    """A copy of configs/ without a local/default.yaml (this checkout may have one)."""
    copy = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, copy)
    (copy / "local" / "default.yaml").unlink(missing_ok=True)
    return copy


def test_configs_compose_without_a_local_file(configs_copy):
    cfg = compose_train(configs_copy)
    assert cfg.trainer.max_epochs == 20 and cfg.seed == 42


def test_a_local_file_sets_this_machines_defaults_and_the_command_line_wins(configs_copy):
    (configs_copy / "local" / "default.yaml").write_text(
        "# @package _global_\nseed: 7\ntrainer:\n  max_epochs: 3\npaths:\n  data_dir: /scratch\n"
    )
    cfg = compose_train(configs_copy)
    assert (cfg.seed, cfg.trainer.max_epochs, cfg.paths.data_dir) == (7, 3, "/scratch")
    cfg = compose_train(configs_copy, "trainer.max_epochs=5")
    assert (cfg.seed, cfg.trainer.max_epochs) == (7, 5)


def test_git_ignores_local_settings_but_not_their_readme():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    paths = ["configs/local/default.yaml", ".env", "configs/local/README.md"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == paths[:2]


def test_make_help_lists_every_target_with_what_it_does():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    targets = phony.split(":", 1)[1].split()
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    listed = {line.split()[1]: line for line in proc.stdout.splitlines() if line.strip()}
    assert sorted(listed) == sorted(targets)
    assert all(len(line.split()) > 2 for line in listed.values())  # each says what it does
    assert {"help", "clean"} <= set(targets)
