"""Sweep reports: the results table, heatmap and validation curves of a multirun's folder,
written at the end of every multirun (SweepReport, a Hydra callback) and on demand
(`python -m nnlab.report <sweep folder>`). Imports no torch."""

from nnlab.report.callback import SweepReport
from nnlab.report.jobs import Job, read_jobs
from nnlab.report.writer import Summary, write_report

__all__ = ["Job", "Summary", "SweepReport", "read_jobs", "write_report"]
