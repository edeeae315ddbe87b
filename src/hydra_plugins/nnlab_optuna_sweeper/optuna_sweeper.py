"""nnlab's Optuna sweeper: `hydra/sweeper=optuna` (configs/hydra/sweeper/optuna.yaml).

Why not Hydra's hydra-optuna-sweeper: its latest release (1.3.0) requires optuna<3, whose SQLite
storage fails on SQLAlchemy 2 (AssertionError reading the schema version), and it cannot record
a pruned trial. This sweeper keeps its interface (`params` in Hydra's override grammar, sampler,
direction, storage, study_name, n_trials, n_jobs) on current Optuna and adds: a pruner, fed by
the jobs' validation curves (nnlab.sweeps.pruning); n_trials counted over the whole study, so
rerunning a command resumes its study (trials cut short by Ctrl-C, or left running by a
sweeper that was killed, are marked FAIL and run again with the same parameters); a job folder
per trial number; a failed job told as the study's worst value.

Hydra accepts plugins only under the hydra_plugins package and imports every plugin module at
each start, so this module imports no optuna (`--cfg job` stays fast); _search.py does."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Asks an Optuna study for trials, launches them as Hydra jobs and tells it their values.
    Hydra builds `sampler` and `pruner` (Optuna objects) from their `_target_` configs."""

    def __init__(
        self,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        params: DictConfig | None,
        heartbeat_interval: int | None = 10,
        grace_period: int | None = None,
    ) -> None:
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.pruner = pruner
        self.params = params
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from ._search import run_study  # optuna is imported only when a study runs

        run_study(self, arguments)
