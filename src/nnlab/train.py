"""Training: validate the config, build data, model and Trainer, fit, test the best
checkpoint, and write results.json. train.py at the repository root calls `train`."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from nnlab.checkpoints import (
    check_resume,
    check_resume_data,
    fetch_checkpoint_url,
    local_checkpoint,
)
from nnlab.console import print_config_tree, setup_console
from nnlab.core.hydra import hydra_choices, instantiate_group
from nnlab.ddp import job_processes
from nnlab.results import print_metrics, scalar_metrics, write_results
from nnlab.speed import apply_speed, data_options, frozen_heap
from nnlab.tasks import build_module, module_class
from nnlab.tasks.base import metric_mode
from nnlab.tracking import instantiate_loggers, log_config, tracking
from nnlab.validation import check_callbacks_and_loggers, resolve_seed, validate

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fits and tests one run; returns the value of `optimized_metric` for sweepers."""
    seed, drawn = resolve_seed(cfg.get("seed"))
    with open_dict(cfg):
        cfg.seed = seed  # the data's and everything else's `${seed}` now name the same one
    task = validate(cfg)
    module_cls = module_class(cfg.model, task)

    with open_dict(cfg):
        cfg.optimized_metric = cfg.get("optimized_metric") or module_cls.monitor
        cfg.optimized_mode = cfg.get("optimized_mode") or metric_mode(cfg.optimized_metric)
    check_callbacks_and_loggers(cfg)
    fetch_checkpoint_url(cfg)  # a URL is downloaded now, then checked like a local file
    resumed = local_checkpoint(cfg)
    saved = check_resume(cfg, resumed) if resumed else None

    setup_console()
    if cfg.get("print_config"):
        print_config_tree(cfg, cfg.paths.output_dir)
    if drawn:
        log.info("seed=null: this run drew seed=%d (pass seed=%d to repeat it)", seed, seed)
    L.seed_everything(seed, workers=True, verbose=False)
    apply_speed(cfg)
    # Where the splits live and batches per training step (speed.resident, .steps_per_batch).
    groups = module_cls.takes_batch_groups
    datamodule = instantiate(cfg.data, _convert_="all", **data_options(cfg, groups))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.spec)
    module.check_monitor(cfg.optimized_metric)
    if saved is not None:
        check_resume_data(resumed, saved, module.hparams.spec)
    log.info("task=%s spec=%s", task, datamodule.spec)

    # The diagnostics group adds callbacks too (activation/gradient statistics, plots).
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.get("diagnostics"))
    loggers = instantiate_loggers(cfg)
    with tracking(loggers):  # W&B runs end as finished, or failed if anything below raises
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        log_config(loggers, cfg)
        with job_processes(trainer):  # DDP in a multirun: its processes run this job alone
            return fit_and_test(cfg, trainer, module, datamodule, task)


def fit_and_test(
    cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, task: str
) -> float | None:
    """Fits, validates and tests the best checkpoint, writes results.json; returns the value of
    `optimized_metric`."""
    with frozen_heap():
        # weights_only: a checkpoint is read as tensors and plain data, never run as code.
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
        )
    fit_metrics = scalar_metrics(trainer.callback_metrics)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # Read before validate/test: loading a checkpoint restores the callbacks' state saved in it.
    last = last_checkpoint(trainer)
    ckpt = best or None  # no checkpoint (callbacks=none, fast_dev_run): the last weights
    # verbose=False: print_metrics below shows val and test in one table.
    val_metrics = scalar_metrics(
        trainer.validate(
            module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True
        )[0]
    )
    test_metrics = {}
    if cfg.get("test"):
        test_metrics = scalar_metrics(
            trainer.test(
                module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True
            )[0]
        )

    value = val_metrics.get(cfg.optimized_metric)
    results = {
        "optimized_metric": cfg.optimized_metric,
        "optimized_mode": cfg.optimized_mode,
        "value": value,
        "val": val_metrics,
        "test": test_metrics,
        "best_val_during_fit": fit_metrics.get(f"{module.monitor}_best"),
        "epochs": trainer.current_epoch,
        "ckpt_path": best or None,
        "last_ckpt_path": last,
        "output_dir": cfg.paths.output_dir,
        "choices": hydra_choices(),
        "seed": cfg.get("seed"),
        "spec": datamodule.spec.to_dict(),
    }
    if trainer.is_global_zero:
        path = write_results(cfg.paths.output_dir, results)
        print_metrics(f"{task}: best checkpoint", {**val_metrics, **test_metrics})
        log.info("results: %s", path)
    return value


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The latest epoch's checkpoint: the file of a checkpoint callback that monitors nothing
    (configs/callbacks/default.yaml's last_checkpoint), else a `save_last` file."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is None and callback.best_model_path:
            return callback.best_model_path
    paths = [callback.last_model_path for callback in trainer.checkpoint_callbacks]
    return next((path for path in paths if path), None)
