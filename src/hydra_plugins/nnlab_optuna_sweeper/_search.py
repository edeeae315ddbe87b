"""The study behind nnlab's Optuna sweeper: the search space from Hydra's override grammar, then
batches of trials asked, launched as jobs and told, until the study holds n_trials finished
trials (a rerun of the same command resumes it)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
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

from nnlab.core.results_file import worst_value
from nnlab.sweeps import PRUNED_AT, TRIAL_NUMBER, mark_results_pruned, open_storage

log = logging.getLogger(__name__)

# The trials n_trials counts: evaluated ones (a failed job is COMPLETE with the worst value).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRIAL_OVERRIDE = f"++hydra.job.env_set.{TRIAL_NUMBER}"
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
    study = optuna.create_study(
        study_name=sweeper.study_name,
        storage=open_storage(sweeper.storage) if sweeper.storage else None,
        sampler=sweeper.sampler,
        pruner=sweeper.pruner,
        direction=direction,
        load_if_exists=True,
    )
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
    sweep_dir = str(sweeper.config.hydra.sweep.dir)
    job_num = 0
    while (to_go := sweeper.n_trials - done) > 0:
        trials = [study.ask(space) for _ in range(min(sweeper.n_jobs, to_go))]
        overrides = [
            # The trial's number, for the job to report its validation curve to (pruning).
            (*fixed, *(f"{k}={v}" for k, v in t.params.items()), f"{TRIAL_OVERRIDE}={t.number}")
            for t in trials
        ]
        try:
            returns = sweeper.launcher.launch(overrides, initial_job_idx=job_num)
        except BaseException:  # Ctrl-C, or the launcher itself failed
            # Not evaluated, so not a value of the study: FAIL, left out of n_trials and of
            # the sampler's model; a rerun of the command resumes with new trials.
            for trial in trials:
                trial.set_user_attr("error", "interrupted")
                study.tell(trial, state=TrialState.FAIL)
            raise
        job_num += len(returns)
        # Read back from the storage: the jobs wrote their pruning there.
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        pruned_at = {t.number: t.user_attrs.get(PRUNED_AT) for t in running}
        for trial, ret in zip(trials, returns, strict=True):
            tell(study, trial, ret, pruned_at.get(trial.number))
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
    summarize(study, sweep_dir)


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
