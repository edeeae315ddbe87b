"""A sweep folder read back: one Job per job folder (its overrides, results.json, metrics.csv),
whatever state the sweep is in (running, partly failed, resumed). Imports no torch."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnlab.core.results_file import read_results

# The states a job row can be in: results.json's status, or UNKNOWN without one (still running,
# or stopped before it could write one), or CORRUPT for one that cannot be read.
DONE, FAILED, DIVERGED, UNKNOWN, CORRUPT = "done", "failed", "diverged", "unknown", "corrupt"


@dataclass
class Job:
    """One job of a sweep, as its folder tells it."""

    name: str
    folder: Path
    overrides: dict[str, str]
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """results.json's status; done for one without (nnlab wrote results.json only for a
        finished run before it recorded failures); unknown without results.json."""
        return self.results.get("status", DONE) if self.results else UNKNOWN

    @property
    def error(self) -> str:
        return self.results.get("error") or ""

    @property
    def metric(self) -> str:
        return self.results.get("optimized_metric") or ""

    @property
    def mode(self) -> str:
        return self.results.get("optimized_mode") or "min"

    @property
    def value(self) -> float | None:
        """The optimized metric of a finished job; None for one that failed, diverged or runs."""
        if self.status != DONE:
            return None
        value = number(self.results.get("value"))
        return value if value is not None and math.isfinite(value) else None

    def metrics(self, split: str) -> dict[str, float]:
        """The best checkpoint's metrics of a split ("val", "test"), as plain floats."""
        values = {k: number(v) for k, v in (self.results.get(split) or {}).items()}
        return {k: v for k, v in values.items() if v is not None}

    def curve(self, metric: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of a validation metric during fitting, from the CSV logger's
        metrics.csv (rows with a train/ metric: the last row, the best checkpoint's evaluation
        after fitting, has none)."""
        epochs, values = [], []
        for row in read_csv(self.folder / "csv" / "metrics.csv"):
            fitting = any(v for k, v in row.items() if k and k.startswith("train/"))
            epoch, value = number(row.get("epoch")), number(row.get(metric))
            if fitting and epoch is not None and value is not None:
                epochs.append(epoch)
                values.append(value)
        return epochs, values


def number(value: Any) -> float | None:
    """A float from JSON or CSV ("inf" and "nan" are strings there); None when there is none."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts; none when it does not exist (yet)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """ "key=value" overrides as {key: value} ("+key" and "++key" name key; "~key" has no value)."""
    parsed = {}
    for override in overrides:
        key, _, value = str(override).partition("=")
        parsed[key.lstrip("+~")] = value
    return parsed


def _order(folder: Path) -> tuple[int, int | str]:
    """Job folders in launch order: numbered ones (Hydra's default subdir) by number."""
    return (0, int(folder.name)) if folder.name.isdigit() else (1, folder.name)


def read_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job folder of a sweep folder (a subfolder with .hydra/overrides.yaml), in order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder")
    jobs = []
    for folder in sorted(sweep_dir.iterdir(), key=_order):
        overrides_file = folder / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) or []
        try:
            results = read_results(folder, strict=True) or {}
        except ValueError as e:  # there, but unreadable: not a job still running
            results = {"status": CORRUPT, "error": str(e)}
        jobs.append(Job(folder.name, folder, parse_overrides(overrides), results))
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between jobs, in command-line order; every key
    when none differs (a sweep of one job)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    swept = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    return swept or keys


def counts(jobs: list[Job]) -> dict[str, int]:
    """How many jobs are in each state: done, failed, diverged and unknown always, then any
    other a results.json names (an Optuna search's pruned)."""
    states = dict.fromkeys((DONE, FAILED, DIVERGED, UNKNOWN), 0)
    for job in jobs:
        states[job.status] = states.get(job.status, 0) + 1
    return states


def best_job(jobs: list[Job]) -> Job | None:
    """The finished job with the best optimized metric (per its mode), if any finished."""
    done = [job for job in jobs if job.value is not None]
    if not done:
        return None
    mode = done[0].mode
    return (max if mode == "max" else min)(done, key=lambda job: job.value)
