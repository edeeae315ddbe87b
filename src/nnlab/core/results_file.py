"""results.json, the file every run and sweep job leaves for people and sweepers: written
atomically, read back, and the worst value a failed run reports. Imports no torch: the sweep
report, nnlab.cli and the Optuna sweeper use it in processes that train nothing."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS = "results.json"


def worst_value(mode: str) -> float:
    """The worst value of a metric optimized in `mode` (max/maximize or min/minimize): what a
    failed or diverged run reports, worse than any finite score (written as "-inf" / "inf")."""
    return -math.inf if mode.startswith("max") else math.inf


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def write_results_file(folder: str | Path, results: dict[str, Any]) -> Path:
    """Writes `folder`/results.json atomically: a reader never sees a half-written file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".results.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_finite(results), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, folder / RESULTS)
    return folder / RESULTS


def read_results(folder: str | Path) -> dict[str, Any] | None:
    """`folder`'s results.json, or None when it has none (or an unreadable one: not written
    yet, or being replaced)."""
    try:
        return json.loads((Path(folder) / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
