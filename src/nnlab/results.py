"""What a run leaves for people and sweep reports: metrics as plain floats, results.json
written atomically, and the metrics table printed at the end."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Logged metrics as plain floats, sorted by name."""
    out = {}
    for k, v in sorted(metrics.items()):
        value = v.item() if isinstance(v, torch.Tensor) else v
        if isinstance(value, int | float):
            out[k] = float(value)
    return out


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@rank_zero_only
def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """Writes results.json atomically: a reader never sees a half-written file."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "results.json"
    fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=".results.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_finite(results), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


@rank_zero_only
def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """Metrics as a two-column table under `title` (kept on one line)."""
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


def worst_value(mode: str) -> float:
    """The worst value of a metric optimized in `mode` (max or min): what a failed or diverged
    run reports to sweepers (written as "-inf" / "inf")."""
    return -math.inf if mode == "max" else math.inf
