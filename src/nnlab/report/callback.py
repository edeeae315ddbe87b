"""The Hydra callback that ends every multirun with its report and its last line, registered
in configs/hydra/default.yaml. Hydra instantiates it in the launching process: it imports no
torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nnlab.report.writer import write_report


class SweepReport(Callback):
    """At the end of a multirun: writes the sweep folder's report, prints
    `sweep: N jobs, K failed, D diverged — report: …` last, and exits 1 when a job failed or
    diverged, or left a corrupt results.json (the jobs themselves return normally, so that the
    sweep goes on)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = write_report(sweep_dir)
        if summary.failed or summary.diverged or summary.corrupt:
            print(
                "To rerun the failed jobs and skip the finished ones: the same command with "
                f"hydra.sweep.dir={sweep_dir}"
            )
        print(summary.line)
        sys.stderr.flush()
        sys.stdout.flush()
        if summary.failed or summary.diverged or summary.corrupt:
            # Hydra ignores what a callback returns and turns its exceptions into warnings;
            # SystemExit passes through hydra's run_and_report (it catches Exception only).
            raise SystemExit(1)
