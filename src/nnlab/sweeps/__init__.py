"""Optuna search (configs/hparams_search, `hydra/sweeper=optuna`): what the sweeper
(hydra_plugins.nnlab_optuna_sweeper) and its jobs share through the study's storage. Importing
this package imports neither torch nor optuna: the sweeper runs in the launching process."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from nnlab.core.results_file import RESULTS, read_results, write_results_file

# The sweeper tells each job its trial's number in this entry of hydra.job.env_set (a Hydra
# override, so not among the job's own overrides; Hydra sets it in the job's environment too).
TRIAL_NUMBER = "NNLAB_OPTUNA_TRIAL"
# User attribute of a trial: the validation at which the study's pruner stopped it.
PRUNED_AT = "nnlab_pruned_at"
# The status of results.json in the folder of a trial whose sweeper died or was stopped before
# the job ended: the trial is FAIL in the study and runs again as a new trial.
INTERRUPTED = "interrupted"


def mark_results_pruned(output_dir: str | Path, pruned_at: int) -> bool:
    """Sets results.json's status to "pruned" in a job's folder (atomically); False when the
    job left no results.json."""
    results = read_results(output_dir)
    if results is None:
        return False
    results.update(status="pruned", pruned_at=pruned_at)
    write_results_file(output_dir, results)
    return True


def mark_results_interrupted(output_dir: str | Path, note: str) -> bool:
    """Writes results.json with status "interrupted" and `note` as its error into the folder of
    a trial that never ended; False (and nothing written) where the job left results.json."""
    if (Path(output_dir) / RESULTS).exists() or not Path(output_dir).is_dir():
        return False
    write_results_file(output_dir, {"status": INTERRUPTED, "error": note, "value": None})
    return True


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """The study's storage for an Optuna storage URL (a SQLAlchemy one). SQLite: its folder is
    made, and a writer waits up to a minute for the file's lock instead of SQLite's 5 s, since
    the sweeper, its parallel jobs and other workers of the study write to one file.
    heartbeat_interval (s): the storage records the heartbeats of running trials, and a trial
    without one for grace_period s (default: twice the interval) is stale."""
    import optuna  # here, not at the top: this package is imported where optuna may be absent

    options: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, **options
        )


def stored_trial_id(trial: Any) -> int:
    """The storage's id of a trial (an optuna Trial or FrozenTrial): Optuna has no public one,
    and its Trial(study, id) and storage calls take it. The one place nnlab reads it."""
    return trial._trial_id
