"""The W&B sweep workspace: its spec (pure data) and the wandb-workspaces objects built from it.
Saving it needs a key and the network, so that step is not run here."""

from __future__ import annotations

import re

import pytest

from nnlab.dashboards import GROUP_BY, STEP, build_workspace, workspace_spec


def panels(spec: dict) -> dict[str, dict]:
    return {p["title"]: p for s in spec["sections"] for p in s["panels"]}


def test_spec_groups_by_init_and_activation_with_the_lecture_panels():
    spec = workspace_spec("me", group="train-2026-01-01_00-00-00_abc123")
    assert spec["groupby"] == ["choices.init", "choices.activation"]
    by_title = panels(spec)
    assert by_title["training loss"]["y"] == ["train/loss"]
    assert by_title["validation accuracy"]["y"] == ["val/acc"]
    # Per-layer panels match every layer's key, and nothing else.
    std = by_title["activation std per layer"]["regex"]
    assert re.fullmatch(std, "activation_std/layer1")
    assert re.fullmatch(std, "activation_std/layer12")
    assert not re.fullmatch(std, "activation_mean/layer1")
    dead = by_title["fraction of dead units per layer (ReLU)"]["regex"]
    assert re.fullmatch(dead, "dead_fraction/layer2")
    negative = by_title["units in the negative regime (leaky ReLU, PReLU, ELU)"]["regex"]
    assert re.fullmatch(negative, "negative_fraction/layer1")
    assert not re.fullmatch(negative, "dead_fraction/layer1")
    assert re.fullmatch(by_title["gradient norm per layer"]["regex"], "grad_norm/output")


def test_regression_sweeps_compare_mse():
    by_title = panels(workspace_spec("me", task="regression"))
    assert by_title["validation MSE"]["y"] == ["val/mse"]
    assert "diagnostics/pred_vs_actual" in by_title["validation predictions"]["keys"]
    with pytest.raises(ValueError, match="classification, regression"):
        workspace_spec("me", task="ranking")


def test_workspace_objects_build_offline():
    pytest.importorskip("wandb_workspaces", reason="the dashboards extra is not installed")
    spec = workspace_spec("me", project="nnlab", group="train-sweep")
    workspace = build_workspace(spec)
    assert (workspace.entity, workspace.project) == ("me", "nnlab")
    assert [s.name for s in workspace.sections] == [s["name"] for s in spec["sections"]]
    assert [g.name for g in workspace.runset_settings.groupby] == list(GROUP_BY)
    line = workspace.sections[1].panels[0]
    assert line.metric_regex == "activation_std/.*" and line.x == STEP
