"""Optuna search (configs/hparams_search, `hydra/sweeper=optuna`): what the sweeper
(hydra_plugins.nnlab_optuna_sweeper) and its jobs share through the study's storage. Importing
this package imports neither torch nor optuna: the sweeper runs in the launching process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnlab.core.results_file import read_results, write_results_file

# The sweeper tells each job its trial's number in this entry of hydra.job.env_set (a Hydra
# override, so not among the job's own overrides; Hydra sets it in the job's environment too).
TRIAL_NUMBER = "NNLAB_OPTUNA_TRIAL"
# User attribute of a trial: the validation at which the study's pruner stopped it.
PRUNED_AT = "nnlab_pruned_at"


def mark_results_pruned(output_dir: str | Path, pruned_at: int) -> bool:
    """Sets results.json's status to "pruned" in a job's folder (atomically); False when the
    job left no results.json."""
    results = read_results(output_dir)
    if results is None:
        return False
    results.update(status="pruned", pruned_at=pruned_at)
    write_results_file(output_dir, results)
    return True


def open_storage(url: str) -> Any:
    """The study's storage for an Optuna storage URL. SQLite: its folder is made, and a writer
    waits up to a minute for the file's lock instead of SQLite's 5 s, since the sweeper, its
    parallel jobs and other workers of the study write to one file."""
    import optuna  # here, not at the top: this package is imported where optuna may be absent

    if not url.startswith("sqlite:///"):
        return url
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
