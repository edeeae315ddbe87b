"""Writes a sweep folder's report: report.csv, report.md, heatmap.png and curves.png, and the
one line that sums the sweep up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from nnlab.report.aggregate import aggregate_section
from nnlab.report.jobs import (
    CORRUPT,
    DIVERGED,
    DONE,
    FAILED,
    UNKNOWN,
    Job,
    best_job,
    counts,
    read_jobs,
    swept_keys,
)
from nnlab.report.plots import draw_curves, draw_heatmap
from nnlab.report.table import markdown_table, write_csv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """What a sweep's report found: how many jobs, in which state, and where report.md is."""

    jobs: int
    done: int
    failed: int
    diverged: int
    unknown: int
    report: Path
    corrupt: int = 0

    @property
    def line(self) -> str:
        """The sweep's last line: `sweep: N jobs, K failed, D diverged — report: <report.md>`
        (and how many have no results yet, when some have none)."""
        jobs = f"{self.jobs} job{'s' * (self.jobs != 1)}"
        unknown = f", {self.unknown} without results" if self.unknown else ""
        if self.corrupt:
            unknown += f", {self.corrupt} with a corrupt results.json"
        return (
            f"sweep: {jobs}, {self.failed} failed, {self.diverged} diverged{unknown}"
            f" — report: {self.report}"
        )


def _figure(draw, jobs: list[Job], path: Path) -> str:
    """A figure's Markdown: the image, or why there is none. A figure that fails to draw is
    noted rather than raised: the table matters more, and a sweep must still end with its line."""
    try:
        note = draw(jobs, path)
    except Exception as e:
        log.warning("%s could not be drawn", path.name, exc_info=True)
        note = f"{path.name} could not be drawn: {type(e).__name__}: {e}"
    if note is None:
        return f"![{path.stem}]({path.name})"
    path.unlink(missing_ok=True)  # a figure of an earlier report would no longer be true
    return f"*{note}*"


def write_report(sweep_dir: str | Path) -> Summary:
    """Reads every job folder of `sweep_dir` and writes report.csv, report.md, heatmap.png and
    curves.png there. Works on a running or partly failed sweep (a job without results.json is
    a row with status unknown)."""
    sweep_dir = Path(sweep_dir)
    jobs = read_jobs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(
            f"{sweep_dir}: no job folders (subfolders with .hydra/overrides.yaml); "
            "pass the folder of a multirun, e.g. logs/train/multiruns/<sweep>"
        )
    n = counts(jobs)
    write_csv(jobs, sweep_dir / "report.csv")
    states = [f"{n[s]} {s}" for s in n if s != UNKNOWN and (n[s] or s in (DONE, FAILED, DIVERGED))]
    if n[UNKNOWN]:
        states.append(f"{n[UNKNOWN]} without results.json (running, or stopped before writing it)")
    lines = [f"# Sweep report: {sweep_dir.name}", "", f"{len(jobs)} jobs: {', '.join(states)}."]
    best = best_job(jobs)
    if best is not None:
        how = " ".join(f"{k}={best.overrides[k]}" for k in swept_keys(jobs) if k in best.overrides)
        lines.append(f"Best: job {best.name} ({how}): {best.metric} = {best.value:.4f}.")
    lines += ["", *markdown_table(jobs), ""]
    lines += aggregate_section(jobs, sweep_dir)  # mean ± sd over folds and seeds, if swept
    lines += [_figure(draw_heatmap, jobs, sweep_dir / "heatmap.png"), ""]
    lines += [_figure(draw_curves, jobs, sweep_dir / "curves.png"), ""]
    lines.append(
        "All columns (every val and test metric) are in report.csv. To rerun the jobs that did "
        "not finish and skip those that did, run the same command with "
        f"hydra.sweep.dir={sweep_dir}."
    )
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corrupt = n.get(CORRUPT, 0)
    return Summary(len(jobs), n[DONE], n[FAILED], n[DIVERGED], n[UNKNOWN], report, corrupt)
