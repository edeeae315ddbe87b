"""Measures what the diagnostics group costs, through the real train.py (default callbacks and
CSV logger), with diagnostics=none, basic and full at their default intervals, on the default
digits MLP and on synthetic MNIST-shaped images (data=synthetic_mnist, 12k) with a
784-256-256-10 MLP.

    PYTHONPATH=src:. python benchmarks/diagnostics_overhead.py [--repeats 5]

Two figures per level, both in CPU seconds of the run's own process with one torch thread (on a
shared machine other processes steal wall-clock time, and oversubscribed torch threads multiply
that, but they hardly change the CPU time a run itself needs):
- instrumented: the CPU time spent inside the diagnostics code (callback hooks and the forward
  hooks they register), as a share of the training loop of the same run — precise, and what
  the ≤ 5 % budget is about;
- end to end: training-loop CPU time per step against diagnostics=none (fastest of the
  interleaved repeats) — the same question asked from outside, but noisy; a second set of
  diagnostics=none runs ("none again") shows how noisy.
Plots rendered when fitting ends are a fixed cost per run, reported on their own.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from nnlab.callbacks import LayerDiagnostics, PredictionDiagnostics

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "digits MLP 64-128-64-10 (default)": [],
    "synthetic MNIST (12k), MLP 784-256-256-10": [
        "data=synthetic_mnist",
        "data.n_train=12000",
        "data.n_test=2000",
        "data.batch_size=64",
        "model.hidden_sizes=[256,256]",
        "trainer.max_epochs=5",
    ],
}
# "none again" is a second, independent set of diagnostics=none runs: its end-to-end figure is
# the noise floor of that comparison (an A/A test).
LEVELS = ("none", "none again", "basic", "full")
TIMED = (
    "diagnostics.layers._target_=benchmarks.diagnostics_overhead.TimedLayerDiagnostics",
    "diagnostics.predictions._target_=benchmarks.diagnostics_overhead.TimedPredictionDiagnostics",
)


def timed(method: Callable) -> Callable:
    """Adds the CPU time spent in `method` to the instance's `spent[phase]`."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.spent["fit_end" if method.__name__ == "on_fit_end" else "loop"] += (
                time.process_time() - start
            )

    return wrapper


class TimedLayerDiagnostics(LayerDiagnostics):
    """LayerDiagnostics that counts the CPU time of its hooks, forward hooks included."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spent = {"loop": 0.0, "fit_end": 0.0}

    on_train_batch_start = timed(LayerDiagnostics.on_train_batch_start)
    on_before_optimizer_step = timed(LayerDiagnostics.on_before_optimizer_step)
    on_train_batch_end = timed(LayerDiagnostics.on_train_batch_end)
    on_fit_end = timed(LayerDiagnostics.on_fit_end)

    def _activation_hook(self, layer: Any, keep_values: bool) -> Callable:
        hook = super()._activation_hook(layer, keep_values)

        def timed_hook(*args: Any) -> None:
            start = time.process_time()
            hook(*args)
            self.spent["loop"] += time.process_time() - start

        return timed_hook


class TimedPredictionDiagnostics(PredictionDiagnostics):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spent = {"loop": 0.0, "fit_end": 0.0}

    on_validation_epoch_end = timed(PredictionDiagnostics.on_validation_epoch_end)
    on_fit_end = timed(PredictionDiagnostics.on_fit_end)


class LoopTimer(Callback):
    """Writes timing.json into the run folder: training-loop seconds, steps, fit-end seconds."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start, self.start_cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.end, self.end_cpu = time.perf_counter(), time.process_time()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        timing = {
            "loop_s": self.end - self.start,
            "loop_cpu_s": self.end_cpu - self.start_cpu,
            "steps": trainer.global_step,
            "fit_end_cpu_s": time.process_time() - self.end_cpu,
            "diagnostics_loop_cpu_s": sum(
                c.spent["loop"] for c in trainer.callbacks if hasattr(c, "spent")
            ),
        }
        Path(trainer.default_root_dir, "timing.json").write_text(json.dumps(timing))


def run(case: list[str], level: str, logs: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=logs))
    cmd = [
        sys.executable, "train.py", f"diagnostics={level.split()[0]}", "test=false",
        "+callbacks.timer._target_=benchmarks.diagnostics_overhead.LoopTimer",
        f"hydra.run.dir={out}", *case, *(TIMED if level.split()[0] != "none" else ()),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return json.loads((out / "timing.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, one torch thread per run, {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            times: dict[str, list[dict[str, Any]]] = {level: [] for level in LEVELS}
            for _ in range(args.repeats):  # interleaved, so drift hits every level alike
                for level in LEVELS:
                    times[level].append(run(case, level, Path(tmp)))
            steps = times["none"][0]["steps"]
            print(f"\n{name}: {steps} optimizer steps")
            print(
                f"{'diagnostics':<12} {'CPU ms/step':>12} {'instrumented':>13} "
                f"{'end to end':>11} {'plots at fit end':>17}"
            )
            base = min(t["loop_cpu_s"] for t in times["none"])
            for level in LEVELS:
                cpu = min(t["loop_cpu_s"] for t in times[level])
                inside = statistics.median(
                    t["diagnostics_loop_cpu_s"] / t["loop_cpu_s"] for t in times[level]
                )
                fit_end = statistics.median(t["fit_end_cpu_s"] for t in times[level])
                print(
                    f"{level:<12} {1000 * cpu / steps:>12.3f} {100 * inside:>12.2f}% "
                    f"{100 * (cpu / base - 1):>10.1f}% {fit_end:>16.2f}s"
                )


if __name__ == "__main__":
    main()
