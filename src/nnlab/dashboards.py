"""A W&B workspace for comparing the runs of a sweep, grouped by init and activation, with
panels for loss, accuracy (or MSE), activation std per layer, dead units and gradient flow.

    python -m nnlab.dashboards --entity <you> [--project nnlab] [--group <sweep group>]
        [--task classification|regression]

`workspace_spec` describes the workspace as plain data (a pure function, tested offline);
`build_workspace` turns it into W&B's workspace objects (`wandb-workspaces`, the `dashboards`
extra: `pip install -e ".[dashboards]"`); `main` saves it, which needs a W&B API key and the
network, and prints its URL.
"""

from __future__ import annotations

import argparse
from typing import Any

from nnlab.core.tasks import REGRESSION
from nnlab.tasks import MulticlassTask, RegressionTask, TaskModule

# The step axis WandbLogger defines for every metric it logs.
STEP = "trainer/global_step"
# Runs are grouped by these config keys (see nnlab.tracking: choices.<group> in every config).
GROUP_BY = ("choices.init", "choices.activation")
# Per kind of sweep: the task module whose monitored metric judges it, the metric in words,
# and the prediction diagnostics shown (nnlab.callbacks.predictions).
QUALITY: dict[str, tuple[type[TaskModule], str, list[str]]] = {
    "classification": (
        MulticlassTask,
        "accuracy",
        ["diagnostics/confusion_matrix", "diagnostics/misclassified"],
    ),
    REGRESSION: (RegressionTask, "MSE", ["diagnostics/pred_vs_actual", "diagnostics/residuals"]),
}


def workspace_spec(
    entity: str,
    project: str = "nnlab",
    group: str | None = None,
    task: str = "classification",
) -> dict[str, Any]:
    """The workspace as plain data: sections of panels, runs grouped by init and activation,
    limited to one sweep's runs when `group` (the sweep's W&B group) is given. One literal,
    longer than a function should be, so that it reads top to bottom like the page it makes."""
    if task not in QUALITY:
        raise ValueError(f"task must be one of {', '.join(QUALITY)}, got {task!r}")
    module, label, media = QUALITY[task]
    metric = module.monitor.removeprefix("val/")
    return {
        "entity": entity,
        "project": project,
        "name": f"nnlab sweep {group}" if group else "nnlab runs by init and activation",
        "group": group,
        "groupby": list(GROUP_BY),
        "sections": [
            {
                "name": f"Loss and {label}",
                "panels": [
                    {"kind": "line", "title": "training loss", "y": ["train/loss"]},
                    {"kind": "line", "title": "validation loss", "y": ["val/loss"]},
                    {"kind": "line", "title": f"validation {label}", "y": [f"val/{metric}"]},
                    {
                        "kind": "bar",
                        "title": f"best validation {label}",
                        "y": [f"val/{metric}_best"],
                    },
                ],
            },
            {
                "name": "Activations per layer",
                "panels": [
                    {
                        "kind": "line",
                        "title": "activation std per layer",
                        "regex": "activation_std/.*",
                    },
                    {
                        "kind": "line",
                        "title": "activation mean per layer",
                        "regex": "activation_mean/.*",
                    },
                ],
            },
            {
                "name": "Dead units",
                "panels": [
                    {
                        "kind": "line",
                        "title": "fraction of dead units per layer (ReLU)",
                        "regex": "dead_fraction/.*",
                    },
                    {
                        "kind": "line",
                        "title": "units in the negative regime (leaky ReLU, PReLU, ELU)",
                        "regex": "negative_fraction/.*",
                    },
                    {
                        "kind": "line",
                        "title": "units with non-finite outputs (diverged)",
                        "regex": "nonfinite_fraction/.*",
                    },
                ],
            },
            {
                "name": "Gradient flow",
                "panels": [
                    {
                        "kind": "line",
                        "title": "gradient norm per layer",
                        "regex": "grad_norm/.*",
                        "log_y": True,
                    },
                    {
                        "kind": "line",
                        "title": "weight norm per layer",
                        "regex": "weight_norm/.*",
                        "log_y": True,
                    },
                ],
            },
            {
                "name": "Predictions",
                "panels": [{"kind": "media", "title": "validation predictions", "keys": media}],
            },
        ],
    }


def build_workspace(spec: dict[str, Any]):
    """W&B workspace objects for a spec (no network: nothing is saved here)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def panel(p: dict[str, Any]):
        if p["kind"] == "line":
            return wr.LinePlot(
                title=p["title"],
                x=STEP,
                y=p.get("y", []),
                metric_regex=p.get("regex"),
                log_y=p.get("log_y"),
            )
        if p["kind"] == "bar":
            return wr.BarPlot(title=p["title"], metrics=p["y"])
        if p["kind"] == "media":
            return wr.MediaBrowser(title=p["title"], media_keys=p["keys"])
        raise ValueError(f"unknown panel kind {p['kind']!r}")

    filters = [ws.Metric("Group") == spec["group"]] if spec["group"] else ""
    return ws.Workspace(
        entity=spec["entity"],
        project=spec["project"],
        name=spec["name"],
        sections=[
            ws.Section(name=s["name"], panels=[panel(p) for p in s["panels"]], is_open=True)
            for s in spec["sections"]
        ],
        runset_settings=ws.RunsetSettings(
            groupby=[ws.Config(key) for key in spec["groupby"]], filters=filters
        ),
        settings=ws.WorkspaceSettings(x_axis=STEP),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create the nnlab sweep workspace in W&B.")
    parser.add_argument("--entity", required=True, help="your W&B user or team")
    parser.add_argument("--project", default="nnlab")
    parser.add_argument("--group", help="one sweep's W&B group (train-<sweep folder>)")
    parser.add_argument("--task", default="classification", choices=sorted(QUALITY))
    args = parser.parse_args(argv)
    import wandb

    if not wandb.login(prompt=False, verify=False):
        raise SystemExit("no W&B API key: run `wandb login` or set WANDB_API_KEY first")
    workspace = build_workspace(workspace_spec(args.entity, args.project, args.group, args.task))
    workspace.save()
    print(f"workspace saved: {workspace.url}")


if __name__ == "__main__":
    main()
