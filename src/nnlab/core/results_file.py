"""results.json, the file every run and sweep job leaves for people and sweepers: written
atomically, read back, and the worst value a failed run reports. Imports no torch: the sweep
report, nnlab.cli and the Optuna sweeper use it in processes that train nothing."""

from __future__ import annotations

import json
import math
import os
import secrets
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
    """Writes `folder`/results.json atomically (a reader never sees a half-written file), with
    the permissions of every other file the run writes (0666 less the umask)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".results.{secrets.token_hex(6)}.json"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_finite(results), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, folder / RESULTS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return folder / RESULTS


def read_results(folder: str | Path, strict: bool = False) -> dict[str, Any] | None:
    """`folder`'s results.json, or None when it has none (or, unless `strict`, an unreadable
    one). strict: a results.json that is there but no JSON object raises ValueError saying so
    (a sweep's report tells a corrupt file from a job still running)."""
    path = Path(folder) / RESULTS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        if strict:
            raise ValueError(f"{RESULTS} cannot be read: {e}") from None
        return None
    try:
        results = json.loads(text)
    except ValueError as e:
        if strict:
            raise ValueError(f"{RESULTS} is corrupt (not JSON: {e})") from None
        return None
    if not isinstance(results, dict):
        if strict:
            kind = type(results).__name__
            raise ValueError(f"{RESULTS} is corrupt (a JSON {kind}, not an object)")
        return None
    return results
