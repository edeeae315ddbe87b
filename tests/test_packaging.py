"""`pip install .` gives a working nnlab: the configs inside the package, console scripts that
run from any folder with outputs under that folder's logs/, and `python -m nnlab --version`."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

import nnlab
from nnlab.__main__ import main
from nnlab.core.hydra import config_dir

from .conftest import CONFIG_DIR, ROOT


def test_version_is_written_once(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nnlab {nnlab.__version__}"
    # pyproject.toml reads the version from nnlab.__version__ (dynamic): the same string.
    assert importlib.metadata.version("nnlab") == nnlab.__version__


def test_python_m_nnlab_version_in_a_fresh_interpreter(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab", "--version"], cwd=tmp_path, env=env, capture_output=True
    )
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"nnlab {nnlab.__version__}"


def test_unknown_command_names_the_valid_ones(capsys):
    assert main(["fit"]) == 2
    assert "unknown command 'fit'; valid: train, eval, predict" in capsys.readouterr().err


def test_a_checkout_composes_its_own_configs_folder():
    assert Path(config_dir()) == CONFIG_DIR  # edits to configs/ take effect without reinstalling


def install_wheel(tmp_path: Path) -> Path:
    """Builds nnlab's wheel and installs it into a fresh virtual environment whose other
    packages are this interpreter's; returns the environment's scripts folder."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(wheels), "."], cwd=ROOT, check=True, capture_output=True)
    (wheel,) = wheels.glob("nnlab-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # ensurepip: offline, from the wheel Python bundles
    scripts = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = scripts / "python"
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    where = [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    purelib = subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies: this interpreter's site-packages, searched after the installed nnlab.
    Path(purelib, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return scripts


@pytest.mark.slow
def test_installed_wheel_trains_from_any_folder(tmp_path):
    scripts = install_wheel(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)

    packaged = Path(
        run(
            scripts / "python", "-c", "import nnlab.core.hydra as h; print(h.config_dir())"
        ).stdout.strip()
    )
    assert packaged.parts[-2:] == ("nnlab", "configs") and "site-packages" in packaged.parts
    shipped = {p.relative_to(packaged) for p in packaged.rglob("*.yaml")}
    assert shipped == {p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.yaml")}

    version = run(scripts / "python", "-m", "nnlab", "--version")
    assert version.stdout.strip() == f"nnlab {nnlab.__version__}"
    overrides = ("trainer.max_epochs=1", "print_config=false", "diagnostics=none", "logger=none")
    proc = run(scripts / "nnlab-train", *overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = (work / "logs" / "train" / "runs").glob("*/results.json")
    assert (results.parent / "train.log").is_file()  # the log is named after the task


def test_nnlab_sub_command_is_the_train_app(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab", "train", "--cfg", "job", "model=linear"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_target_: nnlab.nn.networks.MLP" in proc.stdout and "hidden_sizes: []" in proc.stdout
