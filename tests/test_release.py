"""Release hygiene: the sdist and the wheel hold every config (and no machine's local settings)
and pass twine check; LICENSE, CITATION.cff and CHANGELOG.md agree with pyproject.toml and
nnlab.__version__; the release workflow builds, checks and installs what it publishes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import nnlab

from .conftest import ROOT


def shipped_configs() -> set[str]:
    """The tracked files of configs/, relative to it, that a release ships (all but
    configs/local/)."""
    tracked = subprocess.run(
        ["git", "ls-files", "configs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {
        p.removeprefix("configs/")
        for p in tracked
        if p.endswith(".yaml") and not p.startswith("configs/local/")
    }


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built by `python -m build` from a copy of the checkout's tracked files,
    with a local settings file added that neither may ship."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout (the tracked files are what a release builds)")
    pytest.importorskip("build", reason="the test extra's `build` is not installed")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    source = tmp_path_factory.mktemp("release") / "nnlab"
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    (source / "configs" / "local").mkdir(exist_ok=True)
    (source / "configs" / "local" / "default.yaml").write_text("# @package _global_\nseed: 1\n")
    out = source.parent / "dist"
    # --no-isolation: the build uses this environment's setuptools (no download).
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sdist,) = out.glob("nnlab-*.tar.gz")
    (wheel,) = out.glob("nnlab-*.whl")
    return sdist, wheel


def test_the_sdist_holds_every_config_and_the_license(dists):
    sdist, _ = dists
    prefix = f"nnlab-{nnlab.__version__}/"
    with tarfile.open(sdist) as tar:
        names = {n.removeprefix(prefix) for n in tar.getnames()}
    configs = {n.removeprefix("configs/") for n in names if n.startswith("configs/")}
    assert shipped_configs() <= configs
    assert not any(n.startswith("local/") and n.endswith(".yaml") for n in configs)
    assert {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in"} <= names


def test_the_wheel_holds_every_config_inside_the_package_and_the_license(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    configs = {n.removeprefix("nnlab/configs/") for n in names if n.startswith("nnlab/configs/")}
    assert configs == shipped_configs()  # and nothing of configs/local/
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"Version: {nnlab.__version__}" in metadata
    assert "License-Expression: MIT" in metadata


def test_twine_check_passes_on_both(dists):
    pytest.importorskip("twine", reason="the test extra's `twine` is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2


def test_license_citation_and_changelog_agree_with_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python >= 3.11)
    assert 'license = "MIT"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == nnlab.__version__
    assert citation["license"] == "MIT"
    assert f"## [{nnlab.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert 'dynamic = ["version"]' in pyproject  # read from nnlab.__version__


def test_the_release_workflow_builds_checks_installs_and_trains_before_publishing():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as true
    jobs = workflow["jobs"]

    def commands(job: str) -> str:
        return "\n".join(step.get("run", "") for step in jobs[job]["steps"])

    assert "python -m build" in commands("build") and "twine check" in commands("build")
    install = commands("install")
    assert "-m venv" in install and "pip install dist/*.whl" in install
    assert 'nnlab" --version' in install and 'nnlab" train' in install
    assert jobs["install"]["needs"] == "build" and jobs["publish"]["needs"] == "install"
    assert jobs["publish"]["permissions"]["id-token"] == "write"  # trusted publishing
