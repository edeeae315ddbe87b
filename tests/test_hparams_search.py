"""Optuna search (hparams_search=..., nnlab's sweeper in src/hydra_plugins): the search space
from Hydra's grammar, what the study is told for each way a job ends, pruning from the
validation curve with a real study, and a study resumed by rerunning its command."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

optuna = pytest.importorskip("optuna", reason='needs the sweeps extra: pip install -e ".[sweeps]"')

from hydra.core.utils import JobReturn, JobStatus  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.nnlab_optuna_sweeper import _search  # noqa: E402
from nnlab.core.results_file import worst_value  # noqa: E402
from nnlab.sweeps import PRUNED_AT, TRIAL_NUMBER, mark_results_pruned  # noqa: E402
from nnlab.sweeps import pruning as pruning_module  # noqa: E402
from nnlab.sweeps.pruning import OptunaPruning, job_trial  # noqa: E402

from .conftest import ROOT, run_script  # noqa: E402


def test_the_search_space_reads_hydras_sweep_grammar():
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
        "model.hidden_sizes": "choice([32], [128])",
        "trainer.max_epochs": "interval(2, 6)",
        "seed": "range(1, 4)",
        "init": "kaiming",
    }
    space, fixed = _search.search_space(params, ["activation=choice(relu,tanh)", "init=xavier"])
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["model.hidden_sizes"] == CategoricalDistribution(["[32]", "[128]"])
    assert space["activation"] == CategoricalDistribution(["relu", "tanh"])
    assert space["seed"] == CategoricalDistribution(["1", "2", "3"])  # range's stop excluded
    assert isinstance(space["trainer.max_epochs"], IntDistribution | FloatDistribution)
    assert fixed == ["init=xavier"]  # the command line wins over hydra.sweeper.params


def test_a_command_line_value_takes_a_key_out_of_the_search_space():
    space, fixed = _search.search_space(
        {"optimizer.lr": "interval(0.001, 0.1)"}, ["optimizer.lr=0.5"]
    )
    assert space == {}
    assert fixed == ["optimizer.lr=0.5"]


def job_return(value=None, error: Exception | None = None, output_dir: str = "") -> JobReturn:
    ret = JobReturn()
    ret.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    ret._return_value = error if error else value
    ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": output_dir}}})
    return ret


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_failed_or_non_finite_trial_is_the_worst_complete_value(direction):
    """Optuna would record NaN as a FAIL trial (left out of the study's ranking); nnlab tells the
    worst value instead, so the sampler learns that the region is bad."""
    study = optuna.create_study(direction=direction)
    worst = worst_value(direction)
    endings = [
        job_return(0.5),
        job_return(error=RuntimeError("CUDA out of memory")),
        job_return(math.nan),
        job_return(None),
        job_return(-worst),  # an infinity that would look like the best value
        job_return(worst),  # what nnlab.cli.run returns for a failed or diverged job
    ]
    for ret in endings:
        _search.tell(study, study.ask(), ret, pruned_at=None)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(endings)
    assert [t.value for t in trials] == [0.5] + [worst] * (len(endings) - 1)
    assert trials[1].user_attrs["error"] == "CUDA out of memory"
    assert study.best_value == 0.5


def test_a_pruned_trial_is_told_pruned_and_its_results_say_so(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"status": "done", "value": 0.6}))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.report(0.6, 0)
    _search.tell(study, trial, job_return(0.6, output_dir=str(tmp_path)), pruned_at=0)
    assert study.trials[0].state == TrialState.PRUNED
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "pruned"
    assert results["pruned_at"] == 0
    assert results["value"] == 0.6
    assert not mark_results_pruned(tmp_path / "nothing", 0)


class RecordingLauncher:
    """A launcher that runs no job: each returns 1 - |x - 0.3| for its x, and the calls are
    kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[str, ...]], int]] = []

    def launch(self, overrides, initial_job_idx):
        self.calls.append((list(overrides), initial_job_idx))
        values = [1 - abs(float(dict(o.split("=") for o in job)["x"]) - 0.3) for job in overrides]
        return [job_return(v) for v in values]


def sweeper(tmp_path: Path, n_trials: int, run: str) -> SimpleNamespace:
    """What run_study reads of OptunaSweeper, for a study in tmp_path/study.db."""
    return SimpleNamespace(
        direction="max",
        storage=f"sqlite:///{tmp_path}/optuna/study.db",
        study_name="toy",
        n_trials=n_trials,
        n_jobs=2,
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
        params=OmegaConf.create({"x": "interval(0.0, 1.0)"}),
        config=OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / run)}}}),
        launcher=RecordingLauncher(),
        heartbeat_interval=10,
        grace_period=None,
    )


def test_the_study_runs_in_batches_of_n_jobs_and_a_rerun_resumes_it(tmp_path):
    first = sweeper(tmp_path, n_trials=3, run="run1")
    _search.run_study(first, ["trainer.max_epochs=2"])
    # Batches of n_jobs=2, numbered on; the command line's fixed overrides go to every job.
    assert [(len(jobs), start) for jobs, start in first.launcher.calls] == [(2, 0), (1, 2)]
    assert all(job[0] == "trainer.max_epochs=2" for jobs, _ in first.launcher.calls for job in jobs)
    study = optuna.load_study(study_name="toy", storage=first.storage)
    before = [(t.params, t.value) for t in study.trials]
    # Each job is told its trial's number (for pruning) in a Hydra override, not a task one.
    told = [job[-1] for jobs, _ in first.launcher.calls for job in jobs]
    assert told == [f"++hydra.job.env_set.{TRIAL_NUMBER}={n}" for n in range(3)]
    # Each job's folder is named by its trial's number: <sweep folder>/<n>.
    folders = [job[-2] for jobs, _ in first.launcher.calls for job in jobs]
    assert folders == [f"++hydra.sweep.subdir={n}" for n in range(3)]

    second = sweeper(tmp_path, n_trials=5, run="run2")
    _search.run_study(second, [])
    assert [(len(jobs), start) for jobs, start in second.launcher.calls] == [(2, 0)]
    trials = optuna.load_study(study_name="toy", storage=first.storage).trials
    assert len(trials) == 5
    assert [(t.params, t.value) for t in trials[:3]] == before
    summary = OmegaConf.load(tmp_path / "run2" / "optimization_results.yaml")
    assert summary.n_trials == 5 and summary.best_value == max(t.value for t in trials)

    # A finished study launches nothing and still reports its best trial.
    third = sweeper(tmp_path, n_trials=5, run="run3")
    _search.run_study(third, [])
    assert third.launcher.calls == []
    assert (tmp_path / "run3" / "optimization_results.yaml").is_file()


def test_trials_cut_short_by_ctrl_c_are_failed_and_run_anew(tmp_path):
    """Ctrl-C in a job reaches the sweeper as KeyboardInterrupt (or Lightning's SystemExit):
    the batch's trials are FAIL (never evaluated: no value for the sampler), the sweep stops,
    and a rerun does not count them toward n_trials."""

    class Interrupted(RecordingLauncher):
        def launch(self, overrides, initial_job_idx):
            raise KeyboardInterrupt

    cut = sweeper(tmp_path, n_trials=3, run="run1")
    cut.launcher = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        _search.run_study(cut, [])
    rerun = sweeper(tmp_path, n_trials=3, run="run2")
    _search.run_study(rerun, [])
    trials = optuna.load_study(study_name="toy", storage=rerun.storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 3
    assert trials[0].user_attrs["error"] == "interrupted"
    # The two failed trials run again first, with their parameters, then a new one.
    assert [t.user_attrs.get(_search.RETRY_OF) for t in trials[2:]] == [0, 1, None]
    assert [t.params for t in trials[2:4]] == [t.params for t in trials[:2]]
    # A third run has nothing left to rerun: a failed trial runs again once.
    _search.run_study(sweeper(tmp_path, n_trials=3, run="run3"), [])
    assert len(optuna.load_study(study_name="toy", storage=rerun.storage).trials) == 5


def test_direction_must_be_known():
    sweeper = OmegaConf.create({"direction": None, "params": {}})
    with pytest.raises(ValueError, match="maximize or minimize"):
        _search.run_study(sweeper, [])


def test_outside_an_optuna_sweep_a_job_has_no_trial(make_cfg):
    make_cfg("data=xor")  # a single run under Hydra
    assert job_trial() is None


def test_a_job_of_the_sweep_finds_its_trial_by_the_number_it_was_told(make_cfg, tmp_path):
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="smoke", storage=storage, direction="maximize")
    study.tell(study.ask(), 0.5)
    study.ask()
    make_cfg(
        "hparams_search=smoke",
        f"hydra.sweeper.storage={storage}",
        f"++hydra.job.env_set.{TRIAL_NUMBER}=1",
    )
    trial = job_trial()
    assert trial is not None and trial.number == 1
    assert isinstance(trial.study.pruner, optuna.pruners.MedianPruner)  # the sweep's pruner


def test_pruning_stops_a_clearly_worse_fit(make_cfg, tmp_path, monkeypatch):
    """A real study with a MedianPruner: a finished trial reached val/acc 1.0 at every
    validation; a fit with a learning rate far too small is pruned at its first validation."""
    from nnlab.train import train

    storage = f"sqlite:///{tmp_path}/study.db"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(storage=storage, direction="maximize", pruner=pruner)
    done = study.ask()
    for step in range(5):
        done.report(1.0, step)
    study.tell(done, 1.0)
    running = study.ask()
    monkeypatch.setattr(
        pruning_module, "job_trial", lambda: optuna.trial.Trial(study, running._trial_id)
    )
    cfg = make_cfg(
        "hparams_search=smoke",
        "trainer.max_epochs=5",
        "optimizer.lr=1e-6",
        "activation=sigmoid",
        "model.hidden_sizes=[4]",
    )
    assert cfg.callbacks.optuna_pruning._target_.endswith(OptunaPruning.__name__)
    train(cfg)
    stored = study.trials[1]
    assert stored.user_attrs[PRUNED_AT] == 0
    assert list(stored.intermediate_values) == [0]
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["epochs"] < 4  # stopped early, not after max_epochs=5


def read_study(log_dir: Path, name: str = "smoke") -> list:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{log_dir}/optuna/{name}.db")
    return study.trials


def smoke_search(tmp_path: Path, *args: str, check: bool = True):
    """hparams_search=smoke in a fresh process, its logs and study under tmp_path/logs."""
    log_dir = f"paths.log_dir={tmp_path / 'logs'}"
    return run_script("train.py", "hparams_search=smoke", log_dir, *args, cwd=tmp_path, check=check)


@pytest.mark.slow
def test_a_study_resumes_where_it_stopped_and_prunes_a_clearly_worse_trial(tmp_path):
    """Rerunning the command continues the study in its SQLite file: 3 trials, then the same
    command with n_trials=5 adds 2 and leaves the first 3 alone. A trial clearly worse than
    the finished one at its first validation is pruned (the smoke pruner: median of 1)."""
    log_dir = tmp_path / "logs"
    (log_dir / "optuna").mkdir(parents=True)
    storage = f"sqlite:///{log_dir}/optuna/smoke.db"
    study = optuna.create_study(study_name="smoke", storage=storage, direction="maximize")
    good = {
        "optimizer.lr": 0.03,
        "init": "lecun_normal",
        "activation": "leaky_relu",
        "model.hidden_sizes": "[512]",
    }
    bad = {
        "optimizer.lr": 1e-4,
        "init": "default",
        "activation": "sigmoid",
        "model.hidden_sizes": "[32]",
    }
    study.enqueue_trial(good)
    study.enqueue_trial(bad)
    smoke_search(tmp_path, "hydra.sweeper.n_trials=3")
    first = read_study(log_dir)
    assert len(first) == 3
    assert first[0].params == good and first[0].state == TrialState.COMPLETE
    assert first[1].params == bad and first[1].state == TrialState.PRUNED

    smoke_search(tmp_path, "hydra.sweeper.n_trials=5")
    trials = read_study(log_dir)
    assert len(trials) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for before, after in zip(first, trials, strict=False):
        assert (before.params, before.state, before.value) == (
            after.params,
            after.state,
            after.value,
        )
    # The study has one folder, each trial a job folder named by its number.
    study_dir = log_dir / "train" / "searches" / "smoke"
    assert sorted(p.parent.name for p in study_dir.glob("*/results.json")) == list("01234")
    statuses = [json.loads((study_dir / str(t.number) / "results.json").read_text()) for t in first]
    states = ["pruned" if t.state == TrialState.PRUNED else "done" for t in first]
    assert [s["status"] for s in statuses] == states
    summary = OmegaConf.load(study_dir / "optimization_results.yaml")
    assert summary.n_trials == 5


@pytest.mark.slow
def test_a_failed_job_is_the_worst_value_of_the_study(tmp_path):
    """A job that fails (here: a batch size the checks refuse) is a COMPLETE trial with -inf
    for a maximized metric, and its results.json says failed."""
    proc = smoke_search(tmp_path, "hydra.sweeper.n_trials=1", "data.batch_size=0", check=False)
    trials = read_study(tmp_path / "logs")
    assert [(t.state, t.value) for t in trials] == [(TrialState.COMPLETE, -math.inf)], proc.stdout
    results = tmp_path / "logs" / "train" / "searches" / "smoke" / "0" / "results.json"
    assert json.loads(results.read_text())["status"] == "failed"


def test_the_sweeper_module_imports_no_optuna():
    """Hydra imports every plugin module at each start: `--cfg job` must not pay for optuna."""
    code = (
        "import sys, hydra_plugins.nnlab_optuna_sweeper.optuna_sweeper, nnlab.sweeps;"
        "print('optuna' in sys.modules, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.slow
def test_parallel_trials_report_to_the_shared_storage(tmp_path):
    """hydra/launcher=local_parallel with hydra.sweeper.n_jobs=2: two trials at once, each job
    in its own process reporting its validation curve to the one SQLite file."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    smoke_search(
        tmp_path, "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.n_startup_trials=5",  # no pruning: both run to the end
    )  # fmt: skip
    trials = read_study(tmp_path / "logs")
    logs = "\n".join(p.read_text() for p in (tmp_path / "logs").rglob("*/train.log"))
    assert [(t.state, math.isfinite(t.value)) for t in trials] == [(TrialState.COMPLETE, True)] * 2
    assert [list(t.intermediate_values) for t in trials] == [[0, 1, 2]] * 2, logs  # 3 epochs


def wait_for(condition, timeout: float, proc: subprocess.Popen) -> None:
    """Polls `condition` every 0.2 s until it holds; fails after `timeout` s or if `proc` ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the search ended before it could be killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_search_killed_during_a_trial_loses_nothing(tmp_path):
    """SIGKILL of the sweeper while a trial runs, after at least one finished; the same command
    again: the killed trial is FAIL and runs again (same parameters, new number, its own
    folder), the finished trials keep their results.json and best.ckpt to the byte, no trial
    is left RUNNING, and report.md's best is the study's best."""
    log_dir = tmp_path / "logs"
    study_dir = log_dir / "train" / "searches" / "smoke"
    command = [
        sys.executable, str(ROOT / "train.py"), "hparams_search=smoke", f"paths.log_dir={log_dir}",
        "hydra.sweeper.n_trials=4", "trainer.max_epochs=8", "callbacks.progress_bar=null",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    storage = f"sqlite:///{log_dir}/optuna/smoke.db"

    def trials(*states):
        if not (log_dir / "optuna" / "smoke.db").exists():
            return []
        try:
            return optuna.load_study(study_name="smoke", storage=storage).get_trials(states=states)
        except KeyError:  # the study is not created yet
            return []

    def killable() -> bool:
        """A trial finished, and a later one's job has started (its folder has its config)."""
        finished = trials(TrialState.COMPLETE, TrialState.PRUNED)
        running = trials(TrialState.RUNNING)
        started = running and (study_dir / str(running[0].number) / ".hydra").is_dir()
        return bool(finished and started)

    with open(tmp_path / "first.log", "w") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            wait_for(killable, timeout=300, proc=proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    (killed,) = trials(TrialState.RUNNING)
    finished = trials(TrialState.COMPLETE, TrialState.PRUNED)
    kept = {
        t.number: {
            name: (study_dir / str(t.number) / name).read_bytes()
            for name in ("results.json", "checkpoints/best.ckpt")
        }
        for t in finished
    }

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    study = optuna.load_study(study_name="smoke", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed.number].state == TrialState.FAIL
    (again,) = [t for t in study.trials if t.user_attrs.get(_search.RETRY_OF) == killed.number]
    assert again.params == killed.params and again.number > killed.number
    assert again.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 4
    for number, files in kept.items():
        for name, content in files.items():
            assert (study_dir / str(number) / name).read_bytes() == content, (number, name)
    killed_results = json.loads((study_dir / str(killed.number) / "results.json").read_text())
    assert killed_results["status"] == "interrupted"
    for t in study.trials:  # every job folder is its trial's: its results name its parameters
        results = json.loads((study_dir / str(t.number) / "results.json").read_text())
        if t.state != TrialState.FAIL:
            assert f"optimizer.lr={t.params['optimizer.lr']}" in results["overrides"]
    best = study.best_trial
    report = (study_dir / "report.md").read_text()
    assert f"Best: job {best.number} (" in report, report
    assert f"val/acc = {best.value:.4f}." in report
