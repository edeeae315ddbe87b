"""Mean ± sd over the repeats of a sweep: the folds of a k-fold cross-validation
(data.fold) and the seeds (seed). Jobs that differ only in those are one setting; report.md
gives each setting's mean ± sample standard deviation of the optimized metric and of every
val and test metric, and aggregate.csv the same numbers in columns."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from nnlab.report.jobs import Job, swept_keys

# Override keys whose values repeat an experiment rather than change it.
REPEATS = ("data.fold", "seed")


def repeat_keys(jobs: list[Job]) -> list[str]:
    """The repeat keys (REPEATS) this sweep varies."""
    return [k for k in swept_keys(jobs) if k in REPEATS]


def settings(jobs: list[Job]) -> dict[tuple[tuple[str, str], ...], list[Job]]:
    """Finished jobs grouped by their swept overrides other than the repeat keys."""
    others = [k for k in swept_keys(jobs) if k not in REPEATS]
    groups: dict[tuple[tuple[str, str], ...], list[Job]] = {}
    for job in jobs:
        if job.value is not None:
            key = tuple((k, job.overrides.get(k, "")) for k in others)
            groups.setdefault(key, []).append(job)
    return groups


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (n − 1; None for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _columns(jobs: list[Job]) -> list[str]:
    """ "value", then every val and test metric some finished job has."""
    val = sorted({k for job in jobs for k in job.metrics("val")})
    test = sorted({k for job in jobs for k in job.metrics("test")})
    return ["value", *val, *test]


def _values(jobs: list[Job], column: str) -> list[float]:
    if column == "value":
        return [job.value for job in jobs if job.value is not None]
    split = column.split("/", 1)[0]
    return [job.metrics(split)[column] for job in jobs if column in job.metrics(split)]


def aggregate_rows(jobs: list[Job]) -> list[dict[str, object]]:
    """One row per setting: its overrides, n, and <column>_mean, <column>_sd per column."""
    columns = _columns(jobs)
    rows = []
    for key, group in settings(jobs).items():
        row: dict[str, object] = {**dict(key), "n": len(group)}
        for column in columns:
            values = _values(group, column)
            if values:
                row[f"{column}_mean"], row[f"{column}_sd"] = mean_sd(values)
        rows.append(row)
    return rows


def _pm(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"


def aggregate_section(jobs: list[Job], sweep_dir: Path) -> list[str]:
    """report.md's "Mean ± sd" section and aggregate.csv, where the sweep repeats settings over
    folds or seeds; nothing otherwise."""
    repeats = repeat_keys(jobs)
    rows = aggregate_rows(jobs) if repeats else []
    if not rows:
        return []
    metric = next((job.metric for job in jobs if job.metric), "value")
    others = [k for k in swept_keys(jobs) if k not in REPEATS]
    # The table shows the optimized metric and, over folds, the val metrics (what k-fold
    # estimates), else the test split's; aggregate.csv has them all.
    split = "val" if "data.fold" in repeats else "test"
    names = {k for job in jobs for k in job.metrics(split) if not k.endswith("_best")}
    shown = ["value", *sorted(names - {metric})]
    header = [*others, "n", metric, *shown[1:]]
    lines = [
        f"## Mean ± sd over {' and '.join(repeats)}",
        "",
        "Sample standard deviation (n − 1) over the finished jobs of each setting; every "
        "metric in aggregate.csv.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [str(row.get(k, "")) for k in others] + [str(row["n"])]
        for column in shown:
            mean = row.get(f"{column}_mean")
            cells.append("" if mean is None else _pm(mean, row.get(f"{column}_sd")))
        lines.append("| " + " | ".join(cells) + " |")
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with (sweep_dir / "aggregate.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(
            [{k: "" if row.get(k) is None else row[k] for k in fields} for row in rows]
        )
    return [*lines, ""]
