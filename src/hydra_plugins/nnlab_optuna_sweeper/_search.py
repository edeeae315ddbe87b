"""The study behind nnlab's Optuna sweeper: the search space from Hydra's override grammar, then
batches of trials asked, launched as jobs and told, until the study holds n_trials finished
trials (a rerun of the same command resumes it).

A killed search loses nothing: each running trial names its sweeper (host and pid) and beats
a heartbeat in the storage; the next run of the study fails the trials whose sweeper is dead
(same host) or whose heartbeat stopped (any host), and runs every failed trial again, once, as
a new trial with the same parameters. Each trial's job folder is named by its trial number, so
no run of the study ever reuses the folder of another trial."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from nnlab.core.paths import process_alive, remove_stale_lock
from nnlab.core.results_file import read_results, worst_value
from nnlab.sweeps import (
    PRUNED_AT,
    TRIAL_NUMBER,
    mark_results_interrupted,
    mark_results_pruned,
    open_storage,
    stored_trial_id,
)

log = logging.getLogger(__name__)

# The trials n_trials counts: evaluated ones (a failed job is COMPLETE with the worst value).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRIAL_OVERRIDE = f"++hydra.job.env_set.{TRIAL_NUMBER}"
# Each trial's job folder: <sweep folder>/<trial number>.
SUBDIR_OVERRIDE = "++hydra.sweep.subdir"
# User attributes of a trial: the sweeper running it ({"host", "pid"}), its job folder, and
# the failed trial it runs again.
WORKER, FOLDER, RETRY_OF = "nnlab_worker", "nnlab_folder", "nnlab_retry_of"
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}


def distribution(override: Override) -> BaseDistribution | None:
    """An override's distribution: choice(...) and range(...) pick one of their values (kept as
    override text, so lists and group options work); interval(a, b) is uniform (over integers
    when both ends are), tag(log, interval(a, b)) log-uniform; None for a plain value."""
    if override.is_choice_sweep() or override.is_range_sweep():
        return CategoricalDistribution(list(override.sweep_string_iterator()))
    if override.is_interval_sweep():
        sweep = override.value()
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(sweep.start, sweep.end, log=log_scale)
    return None


def search_space(
    params: dict[str, str], arguments: Iterable[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The distributions of the swept keys and the fixed overrides, from hydra.sweeper.params
    and then the command line (which wins for a key in both)."""
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        dist = distribution(override)
        if dist is None:
            fixed[key] = f"{key}={override.get_value_element_as_str()}"
        else:
            space[key] = dist
    return space, list(fixed.values())


def run_study(sweeper: Any, arguments: list[str]) -> None:
    """Runs the sweeper's study to n_trials finished trials, n_jobs launched at a time."""
    direction = DIRECTIONS.get(str(sweeper.direction))
    if direction is None:
        raise ValueError(
            f"hydra.sweeper.direction={sweeper.direction}: use maximize or minimize (max/min), "
            "e.g. direction: ${optimized_mode} with optimized_mode set"
        )
    params = OmegaConf.to_container(sweeper.params) if sweeper.params else {}
    space, fixed = search_space(params, arguments)
    interval = getattr(sweeper, "heartbeat_interval", None)
    storage = None
    if sweeper.storage:
        storage = open_storage(sweeper.storage, interval, getattr(sweeper, "grace_period", None))
    study = optuna.create_study(
        study_name=sweeper.study_name,
        storage=storage,
        sampler=sweeper.sampler,
        pruner=sweeper.pruner,
        direction=direction,
        load_if_exists=True,
    )
    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir)).absolute()
    check_sweep_folder(study, sweep_dir)
    recover(study)
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    if study.trials:
        # A fixed seed would draw the first session's random start-up trials again.
        study.sampler.reseed_rng()
    log.info(
        "Study %s (%s): %d of %d trials finished",
        study.study_name,
        direction,
        done,
        sweeper.n_trials,
    )
    job_num = 0
    while (to_go := sweeper.n_trials - done) > 0:
        trials = [ask(study, space, sweep_dir) for _ in range(min(sweeper.n_jobs, to_go))]
        overrides = [
            # The job's folder, and the trial's number for the job to report its validation
            # curve to (pruning).
            (
                *fixed,
                *(f"{k}={v}" for k, v in t.params.items()),
                f"{SUBDIR_OVERRIDE}={t.number}",
                f"{TRIAL_OVERRIDE}={t.number}",
            )
            for t in trials
        ]
        try:
            with heartbeats(storage, trials, interval):
                returns = sweeper.launcher.launch(overrides, initial_job_idx=job_num)
        except BaseException:  # Ctrl-C, or the launcher itself failed
            # Not evaluated, so not a value of the study: FAIL, left out of n_trials and of
            # the sampler's model; a rerun of the command runs them again.
            for trial in trials:
                fail(study, trial, "interrupted")
            raise
        job_num += len(returns)
        # Read back from the storage: the jobs wrote their pruning there.
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        pruned_at = {t.number: t.user_attrs.get(PRUNED_AT) for t in running}
        for trial, ret in zip(trials, returns, strict=True):
            tell(study, trial, ret, pruned_at.get(trial.number))
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
    summarize(study, str(sweep_dir))


def ask(study: optuna.Study, space: dict[str, BaseDistribution], sweep_dir: Path) -> optuna.Trial:
    """The study's next trial (a failed trial's rerun first), recorded with its sweeper and
    its job folder."""
    with warnings.catch_warnings():  # nnlab beats the heartbeats itself (heartbeats())
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with")
        trial = study.ask(space)
    trial.set_user_attr(WORKER, {"host": socket.gethostname(), "pid": os.getpid()})
    trial.set_user_attr(FOLDER, str(sweep_dir / str(trial.number)))
    return trial


def fail(study: optuna.Study, trial: Any, why: str) -> None:
    """Marks a running trial FAIL (`why` in its user attribute "error") and its job folder's
    results.json "interrupted", unless the job wrote its own."""
    optuna.trial.Trial(study, stored_trial_id(trial)).set_user_attr("error", why)
    study.tell(trial.number, state=TrialState.FAIL)
    folder = trial.user_attrs.get(FOLDER)
    if folder:
        note = f"{why}: trial {trial.number} stopped before its job ended; it runs again"
        mark_results_interrupted(folder, note)
        remove_stale_lock(folder)


@contextlib.contextmanager
def heartbeats(storage: Any, trials: list[optuna.Trial], interval: int | None) -> Iterator[None]:
    """While the block runs, records a heartbeat of each trial every `interval` s in the
    storage (from a thread: the jobs may run in this process), so that a run of the study on
    another machine can tell these trials from those of a sweeper that died."""
    if storage is None or not interval:
        yield
        return
    ids = [stored_trial_id(trial) for trial in trials]
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in ids:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception as e:  # a busy database: the next beat may pass
                    log.warning("heartbeat of trial id %d not recorded: %s", trial_id, e)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="nnlab-optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def recover(study: optuna.Study) -> None:
    """Settles the trials an earlier sweeper left RUNNING when it died: those of a dead process
    on this machine, and (with heartbeats) those whose heartbeat stopped, on any machine. A
    trial whose job had written results.json is told its value; the others are FAIL. Then
    every FAIL trial not yet rerun is enqueued again with its parameters (the next asked)."""
    host = socket.gethostname()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        worker = trial.user_attrs.get(WORKER) or {}
        if worker.get("host") == host and not process_alive(worker.get("pid")):
            settle(study, trial, f"its sweeper (pid {worker.get('pid')}) died")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeats (none without heartbeat_interval)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    for trial in running:
        if states[trial.number] == TrialState.FAIL and FOLDER in trial.user_attrs:
            mark_results_interrupted(trial.user_attrs[FOLDER], "its heartbeat stopped")
    trials = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs.get(RETRY_OF) for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.number not in rerun and trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            log.info("Trial %d failed unevaluated: it runs again as a new trial", trial.number)


def settle(study: optuna.Study, trial: optuna.trial.FrozenTrial, why: str) -> None:
    """Tells the study how a trial whose sweeper died ended: by its job's results.json when
    the job finished (its value; pruned where the pruner stopped it), else FAIL."""
    folder = trial.user_attrs.get(FOLDER)
    results = read_results(folder) if folder else None
    if results is None or results.get("status") in (None, "interrupted"):
        fail(study, trial, why)
        return
    pruned_at = trial.user_attrs.get(PRUNED_AT)
    if pruned_at is not None:
        study.tell(trial.number, state=TrialState.PRUNED)
        mark_results_pruned(folder, pruned_at)
        return
    worst = worst_value(study.direction.name.lower())
    try:
        value = float(results.get("value"))
    except (TypeError, ValueError):
        value = worst
    study.tell(trial.number, value if math.isfinite(value) else worst)
    log.info("Trial %d finished before its sweeper died: told %s", trial.number, value)


def check_sweep_folder(study: optuna.Study, sweep_dir: Path) -> None:
    """Refuses a sweep folder holding job folders that are not this study's trials (the study
    was deleted and started anew, or another study's folder was named): its new trials would
    reuse their folders."""
    if not sweep_dir.is_dir():
        return
    jobs = [p for p in sweep_dir.iterdir() if p.name.isdigit() and (p / ".hydra").is_dir()]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    foreign = sorted(
        int(p.name)
        for p in jobs
        if int(p.name) not in trials or trials[int(p.name)].user_attrs.get(FOLDER, str(p)) != str(p)
    )
    if foreign:
        numbers = ", ".join(map(str, foreign))
        raise SystemExit(
            f"error: hydra.sweep.dir={sweep_dir} holds job folders ({numbers}) "
            f"that are not trials of study {study.study_name!r} in its storage: pick another "
            "hydra.sweep.dir or hydra.sweeper.study_name, or move those folders away"
        )


def tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn, pruned_at: int | None) -> None:
    """Tells the study how a job ended: pruned at validation `pruned_at`, or complete with
    the job's value; a job that raised, or returned NaN, None or an infinity, gets the worst
    value for the study's direction (never NaN, which Optuna would record as a failed trial)."""
    worst = worst_value(study.direction.name.lower())
    try:
        value = float(ret.return_value)  # re-raises what the job raised
    except Exception as e:
        log.warning("Trial %d failed (%s): recorded as %s", trial.number, e, worst)
        trial.set_user_attr("error", str(e).splitlines()[0] if str(e) else type(e).__name__)
        study.tell(trial, worst)
        return
    if pruned_at is not None:
        study.tell(trial, state=TrialState.PRUNED)
        if ret.hydra_cfg is not None:
            mark_results_pruned(ret.hydra_cfg.hydra.runtime.output_dir, pruned_at)
        return
    study.tell(trial, value if math.isfinite(value) else worst)


def summarize(study: optuna.Study, sweep_dir: str) -> None:
    """Logs the best trial and writes it to optimization_results.yaml in the sweep folder."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial (all pruned)
        log.warning("Study %s has no complete trial", study.study_name)
        return
    log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
    summary = {
        "name": "optuna",
        "study_name": study.study_name,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "n_trials": len(study.trials),
    }
    # The folder exists only if this run launched a job (a finished study launches none).
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(summary), Path(sweep_dir) / "optimization_results.yaml")
