"""Pruning from the validation curve, in the jobs of an Optuna search: the Hydra sweeper only
launches jobs with overrides, so the job itself reports to its trial through the study's
storage (configs/hparams_search adds this callback)."""

from __future__ import annotations

import logging

import lightning as L
import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from optuna.trial import TrialState

from nnlab.sweeps import PRUNED_AT, TRIAL_NUMBER, open_storage, stored_trial_id

log = logging.getLogger(__name__)


def job_trial() -> optuna.trial.Trial | None:
    """This job's trial, when it is a job of nnlab's Optuna sweeper with a storage (the sweeper
    names the trial in hydra.job.env_set); else None."""
    try:
        hydra = HydraConfig.get()
    except ValueError:  # not under Hydra (a test, a notebook)
        return None
    sweeper = hydra.sweeper
    number = hydra.job.env_set.get(TRIAL_NUMBER)
    if hydra.mode != RunMode.MULTIRUN or number is None:
        return None
    if not sweeper.get("storage"):
        log.warning("hydra.sweeper.storage=null: the jobs cannot reach the study, no pruning")
        return None
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else None
    study = optuna.load_study(
        study_name=sweeper.get("study_name"), storage=open_storage(sweeper.storage), pruner=pruner
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number == int(number):
            return optuna.trial.Trial(study, stored_trial_id(trial))
    log.warning("trial %s of study %s is not running: no pruning", number, study.study_name)
    return None


class OptunaPruning(L.Callback):
    """In a job of an Optuna search, reports `monitor` after each validation of the fit as an
    intermediate value of the job's trial (step n: the n-th validation) and ends the fit early
    when the study's pruner prunes the trial; the sweeper then records the trial as pruned.
    Outside such a job it does nothing."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self._trial: optuna.trial.Trial | None = None
        self._step = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self._trial = job_trial()
            self._step = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if self._trial is not None and value is not None:
            self._trial.report(float(value), self._step)
            prune = self._trial.should_prune()
            if prune:
                self._trial.set_user_attr(PRUNED_AT, self._step)
                log.info("pruned by the study at validation %d (%s)", self._step, self.monitor)
            self._step += 1
        # Every rank stops together: only rank 0 talks to the study.
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True
