"""Sweep reports (nnlab.report): the table, heatmap and curves of a sweep folder, built from job
folders written here (fast, no torch), and one real multirun whose failing job is a row."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from nnlab.report import SweepReport, read_jobs, write_report
from nnlab.report.jobs import Job
from nnlab.report.plots import grid, heatmap_axes

from .conftest import ROOT, run_script

PNG = b"\x89PNG"


def make_job(
    sweep: Path,
    name: str,
    overrides: list[str],
    results: dict | None = None,
    curve: list[float] | None = None,
) -> Path:
    """A job folder as a multirun leaves it: .hydra/overrides.yaml, results.json unless the job
    is still running, and the CSV logger's metrics.csv (fitting epochs, then the evaluation row
    of the best checkpoint, which has no train/ metric)."""
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    if curve is not None:
        (folder / "csv").mkdir()
        rows = [f"{epoch},{0.5 / (epoch + 1)},{value}," for epoch, value in enumerate(curve)]
        rows.append(f"{len(curve)},,{max(curve)},0.5")
        text = "\n".join(["epoch,train/loss,val/acc,test/acc", *rows])
        (folder / "csv" / "metrics.csv").write_text(text + "\n")
    return folder


def done(value: float, seed: int = 42, **extra) -> dict:
    return {
        "status": "done",
        "error": None,
        "value": value,
        "optimized_metric": "val/acc",
        "optimized_mode": "max",
        "val": {"val/acc": value, "val/loss": 1 - value},
        "test": {"test/acc": value - 0.01},
        "epochs": 3,
        "wall_time_s": 1.25,
        "seed": seed,
        **extra,
    }


def failed(status: str, error: str) -> dict:
    worst = "-inf"
    return {"status": status, "error": error, "value": worst, "optimized_metric": "val/acc",
            "optimized_mode": "max", "val": {}, "test": {}, "epochs": None, "seed": 42}  # fmt: skip


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A 2×2 sweep (lr × activation, each with the constant trainer.max_epochs=3): two jobs
    done, one failed, one diverged, and a fifth job that is still running."""
    sweep = tmp_path / "sweep"
    common = ["trainer.max_epochs=3"]
    make_job(sweep, "0", [*common, "lr=0.1", "activation=relu"], done(0.9), [0.5, 0.8, 0.9])
    make_job(sweep, "1", [*common, "lr=0.1", "activation=tanh"], done(0.7), [0.4, 0.6, 0.7])
    make_job(sweep, "2", [*common, "lr=1", "activation=relu"], failed("failed", "bad | thing"))
    make_job(sweep, "3", [*common, "lr=1", "activation=tanh"], failed("diverged", "loss is nan"))
    make_job(sweep, "10", [*common, "lr=2", "activation=tanh"], None, [0.3, 0.35])
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_report_csv_has_a_row_per_job_with_status_error_and_metrics(sweep):
    summary = write_report(sweep)
    rows = read_csv(sweep / "report.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "3", "10"]  # numbered, in launch order
    assert list(rows[0])[:3] == ["job", "lr", "activation"]  # swept keys only: no max_epochs
    assert [r["status"] for r in rows] == ["done", "done", "failed", "diverged", "unknown"]
    assert rows[2]["error"] == "bad | thing" and rows[3]["error"] == "loss is nan"
    assert rows[0]["value"] == "0.9" and rows[2]["value"] == ""  # a failed job has no value
    assert rows[0]["val/loss"] == pytest.approx("0.09999999999999998")
    assert rows[1]["test/acc"] == "0.69" and rows[0]["epochs"] == "3"
    assert rows[0]["wall_time_s"] == "1.25" and rows[0]["seed"] == "42"
    assert (summary.jobs, summary.done, summary.failed, summary.diverged) == (5, 2, 1, 1)
    assert summary.unknown == 1
    assert summary.line == (
        f"sweep: 5 jobs, 1 failed, 1 diverged, 1 without results — report: {sweep}/report.md"
    )


def test_report_md_shows_the_table_the_best_job_and_the_figures(sweep):
    write_report(sweep)
    text = (sweep / "report.md").read_text()
    assert "5 jobs: 2 done, 1 failed, 1 diverged, 1 without results.json" in text
    assert "Best: job 0 (lr=0.1 activation=relu): val/acc = 0.9000." in text
    assert "| job | lr | activation | status | val/acc | test/acc | epochs |" in text
    assert "| 0 | 0.1 | relu | done | 0.9000 | 0.8900 | 3 | 1.2 | 42 |" in text
    assert "| 2 | 1 | relu | failed: bad \\| thing |" in text  # a | in an error stays one cell
    assert (
        "| 3 | 1 | tanh | diverged: loss is nan |" in text and "| 10 | 2 | tanh | unknown |" in text
    )
    assert "![heatmap](heatmap.png)" in text and "![curves](curves.png)" in text
    assert f"hydra.sweep.dir={sweep}" in text  # how to resume
    for figure in ("heatmap.png", "curves.png"):
        assert (sweep / figure).read_bytes()[:4] == PNG


def test_curves_are_the_fitting_epochs_without_the_final_evaluation_row(sweep):
    jobs = {job.name: job for job in read_jobs(sweep)}
    assert jobs["0"].curve("val/acc") == ([0.0, 1.0, 2.0], [0.5, 0.8, 0.9])
    assert jobs["2"].curve("val/acc") == ([], [])  # failed before any epoch: no metrics.csv


def test_heatmap_averages_seeds_and_takes_the_best_over_other_keys(tmp_path):
    sweep = tmp_path / "sweep"
    values = {("0.1", "relu", "1"): 0.8, ("0.1", "relu", "2"): 0.6, ("0.1", "tanh", "1"): 0.5}
    values |= {("0.1", "tanh", "2"): 0.7, ("1", "relu", "1"): 0.9, ("1", "relu", "2"): 0.7}
    num = 0
    for opt, bonus in (("adam", 0.0), ("sgd", 0.05)):
        for (lr, act, seed), value in values.items():
            overrides = [f"optimizer={opt}", f"lr={lr}", f"activation={act}", f"seed={seed}"]
            make_job(sweep, str(num), overrides, done(value + bonus))
            num += 1
    for opt in ("adam", "sgd"):  # lr=1 with tanh fails whatever the optimizer
        overrides = [f"optimizer={opt}", "lr=1", "activation=tanh", "seed=1"]
        make_job(sweep, str(num), overrides, failed("failed", "no"))
        num += 1
    jobs = read_jobs(sweep)
    # lr and activation have two values each, as optimizer does: the first two keys swept
    # (seed is never an axis).
    assert heatmap_axes(jobs) == ("optimizer", "lr")
    xs, ys, table, how = grid(jobs, "lr", "activation")
    assert (xs, ys) == (["0.1", "1"], ["relu", "tanh"])
    # (mean over seeds) then the best optimizer: sgd's +0.05.
    assert table[0] == pytest.approx([0.75, 0.85]) and table[1][0] == pytest.approx(0.65)
    assert math.isnan(table[1][1]) and how == "mean over seeds; max over optimizer"


def test_numeric_axis_values_are_sorted_as_numbers(tmp_path):
    sweep = tmp_path / "sweep"
    for num, (lr, width) in enumerate([("0.1", "64"), ("0.01", "8"), ("0.1", "8"), ("1", "64")]):
        make_job(sweep, str(num), [f"lr={lr}", f"width={width}"], done(0.5))
    xs, ys, _, _ = grid(read_jobs(sweep), "lr", "width")
    assert xs == ["0.01", "0.1", "1"] and ys == ["8", "64"]


def test_one_swept_key_gets_a_note_instead_of_a_heatmap(tmp_path):
    sweep = tmp_path / "sweep"
    for num, seed in enumerate((1, 2)):
        make_job(sweep, str(num), ["lr=0.1", f"seed={seed}"], done(0.5, seed=seed), [0.5])
    (sweep / "heatmap.png").write_bytes(PNG)  # an earlier report's, no longer true
    write_report(sweep)
    text = (sweep / "report.md").read_text()
    assert "*no heatmap: fewer than two keys (besides seed) are swept*" in text
    assert not (sweep / "heatmap.png").exists() and (sweep / "curves.png").is_file()


def test_a_search_with_many_values_per_key_gets_a_note_instead_of_a_heatmap(tmp_path):
    sweep = tmp_path / "sweep"
    for num in range(21):  # an Optuna search: each trial its own lr and width
        make_job(sweep, str(num), [f"lr={0.001 * (num + 1)}", f"width={num + 8}"], done(0.5))
    write_report(sweep)
    text = (sweep / "report.md").read_text()
    assert "*no heatmap: lr and width take 21 and 21 values (a search rather than a grid;" in text
    assert not (sweep / "heatmap.png").exists()


def test_other_states_are_counted_but_are_not_failures(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, "0", ["lr=0.1"], done(0.5))
    make_job(sweep, "1", ["lr=1"], {**done(0.2), "status": "pruned"})
    summary = write_report(sweep)
    assert summary.line.startswith("sweep: 2 jobs, 0 failed, 0 diverged — report:")
    assert "2 jobs: 1 done, 0 failed, 0 diverged, 1 pruned." in (sweep / "report.md").read_text()


def test_a_corrupt_results_json_is_reported_as_corrupt_not_running(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_job(sweep, "0", ["lr=0.1"], done(0.5))
    make_job(sweep, "1", ["lr=1"], None)  # still running
    (make_job(sweep, "2", ["lr=2"], None) / "results.json").write_text('{"status": "do')
    summary = write_report(sweep)
    assert summary.line == (
        "sweep: 3 jobs, 0 failed, 0 diverged, 1 without results, 1 with a corrupt results.json"
        f" — report: {sweep}/report.md"
    )
    report = (sweep / "report.md").read_text()
    assert "| 2 | 2 | corrupt: results.json is corrupt (not JSON: " in report
    assert "1 without results.json (running, or stopped before writing it)" in report
    with pytest.raises(SystemExit) as exit_:  # the sweep's end: a corrupt file is a failure
        SweepReport().on_multirun_end(
            config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
        )
    assert exit_.value.code == 1
    assert capsys.readouterr().out.splitlines()[-1] == summary.line


def test_a_results_json_without_status_is_a_finished_run(tmp_path):
    """results.json of a run from before status was recorded: only finished runs wrote one."""
    results = {k: v for k, v in done(0.5).items() if k != "status"}
    job = Job("0", make_job(tmp_path, "0", ["lr=1"], results), {"lr": "1"}, results)
    assert job.status == "done" and job.value == 0.5


def test_callback_ends_a_sweep_with_its_line_and_exit_code(sweep, capsys):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as exit_:
        SweepReport().on_multirun_end(config=config)
    assert exit_.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        out[-1].startswith("sweep: 5 jobs, 1 failed, 1 diverged")
        and (sweep / "report.md").is_file()
    )
    assert out[-2].endswith(f"hydra.sweep.dir={sweep}")


def test_callback_exits_normally_when_every_job_finished(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_job(sweep, "0", ["lr=0.1"], done(0.5))
    SweepReport().on_multirun_end(
        config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    )
    assert capsys.readouterr().out.splitlines() == [
        f"sweep: 1 job, 0 failed, 0 diverged — report: {sweep}/report.md"
    ]


def report_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnlab.report", *args],
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_command_on_a_running_sweep(sweep):
    proc = report_command(str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"1 without results — report: {sweep}/report.md")
    assert read_csv(sweep / "report.csv")[-1]["status"] == "unknown"


def test_report_command_refuses_a_folder_without_jobs(tmp_path):
    proc = report_command(str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: {tmp_path}: no job folders")
    proc = report_command(str(tmp_path / "missing"))
    assert proc.returncode == 1 and "no such sweep folder" in proc.stderr


def test_importing_the_report_does_not_import_torch_or_matplotlib():
    code = "import sys, nnlab.report; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "[]", proc.stderr


def test_a_real_grid_with_a_failing_job_goes_on_and_reports_it(tmp_path):
    """2×2 multirun (data × model) in which the perceptron cannot train digits (multiclass):
    the three other jobs run, the report has four rows, the sweep exits 1 with its line last."""
    sweep = tmp_path / "grid"
    proc = run_script(
        "train.py",
        "-m",
        "data=xor,digits",
        "model=mlp,perceptron",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=1",
        "callbacks.progress_bar=null",
        "diagnostics=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"sweep: 4 jobs, 1 failed, 0 diverged — report: {sweep}/report.md"
    rows = read_csv(sweep / "report.csv")
    assert [(r["data"], r["model"], r["status"]) for r in rows] == [
        ("xor", "mlp", "done"),
        ("xor", "perceptron", "done"),
        ("digits", "mlp", "done"),
        ("digits", "perceptron", "failed"),
    ]
    assert rows[3]["error"].startswith("model=perceptron cannot train data=digits")
    assert all(float(r["value"]) >= 0 for r in rows[:3]) and rows[3]["value"] == ""
    assert all(float(r["wall_time_s"]) > 0 for r in rows)
    for name in ("report.md", "heatmap.png", "curves.png"):
        assert (sweep / name).is_file()
    failed_json = json.loads((sweep / "3" / "results.json").read_text())
    # Refused before its metric was known, so before its mode was: no value (not an infinity).
    assert failed_json["status"] == "failed" and failed_json["value"] is None
