"""The results table of a sweep: report.csv (every column, for pandas and spreadsheets) and the
table of report.md (the columns a person compares)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from nnlab.report.jobs import DONE, UNKNOWN, Job, swept_keys


def _union(jobs: list[Job], split: str) -> list[str]:
    return sorted({k for job in jobs for k in job.metrics(split)})


def csv_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    """One row per job: its swept overrides, status and error, the optimized metric, the best
    checkpoint's val and test metrics, epochs, wall time and seed."""
    keys = swept_keys(jobs)
    val, test = _union(jobs, "val"), _union(jobs, "test")
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"job": job.name}
        row.update({k: job.overrides.get(k, "") for k in keys})
        row.update(status=job.status, error=job.error, metric=job.metric, value=job.value)
        row.update({k: job.metrics("val").get(k) for k in val})
        row.update({k: job.metrics("test").get(k) for k in test})
        results = job.results
        row.update(
            epochs=results.get("epochs"),
            wall_time_s=results.get("wall_time_s"),
            seed=results.get("seed"),
        )
        rows.append(row)
    return rows


def write_csv(jobs: list[Job], path: Path) -> Path:
    """report.csv: csv_rows, empty cells where a job has no value."""
    rows = csv_rows(jobs)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["job"])
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    return path


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _status(job: Job) -> str:
    """done, unknown, or failed/diverged with the error line."""
    if job.status in (DONE, UNKNOWN) or not job.error:
        return job.status
    return f"{job.status}: {job.error}"


def markdown_table(jobs: list[Job]) -> list[str]:
    """report.md's table: job, swept overrides, status (with the error), the optimized metric
    (its column named by the metric when all jobs share one), its test counterpart, epochs,
    wall time, seed."""
    keys = swept_keys(jobs)
    metrics = {job.metric for job in jobs if job.metric}
    metric = metrics.pop() if len(metrics) == 1 else ""
    test = f"test/{metric.split('/', 1)[-1]}" if metric else ""
    header = ["job", *keys, "status", metric or "optimized metric"]
    if test:
        header.append(test)
    header += ["epochs", "wall time (s)", "seed"]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        cells = [job.name, *(job.overrides.get(k, "") for k in keys), _status(job)]
        cells.append(job.value if metric else f"{job.metric} {_cell(job.value)}".strip())
        if test:
            cells.append(job.metrics("test").get(test))
        results = job.results
        cells += [results.get("epochs"), results.get("wall_time_s"), results.get("seed")]
        digits = [4] * (len(cells) - 2) + [1, 4]  # wall time in tenths of a second
        lines.append(
            "| " + " | ".join(_cell(c, d) for c, d in zip(cells, digits, strict=True)) + " |"
        )
    return lines
