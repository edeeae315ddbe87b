"""What a run leaves for people and sweep reports: metrics as plain floats, results.json
written atomically, and the metrics table printed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table

from nnlab.core.results_file import write_results_file


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Logged metrics as plain floats, sorted by name."""
    out = {}
    for k, v in sorted(metrics.items()):
        value = v.item() if isinstance(v, torch.Tensor) else v
        if isinstance(value, int | float):
            out[k] = float(value)
    return out


@rank_zero_only
def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """Writes results.json atomically (nnlab.core.results_file), from rank 0 only."""
    return write_results_file(output_dir, results)


@rank_zero_only
def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """Metrics as a two-column table under `title` (kept on one line)."""
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)
