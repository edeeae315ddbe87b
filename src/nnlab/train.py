"""Training: validate the config, build data, model and Trainer, fit, test the best
checkpoint, and write results.json. train.py at the repository root calls `train`."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from nnlab.callbacks import stopped_after_epoch
from nnlab.checkpoints import (
    check_resume,
    check_resume_data,
    fetch_checkpoint_url,
    local_checkpoint,
    resolve_last_checkpoint,
)
from nnlab.console import print_config_tree, setup_console
from nnlab.core import ConfigError, Diverged
from nnlab.core.hydra import hydra_choices, instantiate_group
from nnlab.core.results_file import worst_value
from nnlab.ddp import job_processes
from nnlab.results import print_metrics, scalar_metrics, write_results
from nnlab.speed import FastPath, apply_speed, data_options, frozen_heap
from nnlab.tasks import build_module, module_class
from nnlab.tasks.divergence import anomaly_diverged
from nnlab.tasks.loading import read_checked
from nnlab.tasks.metrics import metric_mode
from nnlab.tracking import instantiate_loggers, log_config, tracking
from nnlab.validation import check_callbacks_and_loggers, resolve_seed, validate

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fits and tests one run; returns the value of `optimized_metric` for sweepers. Raises
    nnlab.core.Diverged (after writing results.json) when training diverged."""
    started = time.perf_counter()
    seed, drawn = resolve_seed(cfg.get("seed"))
    with open_dict(cfg):
        cfg.seed = seed  # the data's and everything else's `${seed}` now name the same one
    task = validate(cfg)
    module_cls = module_class(cfg.model, task)

    with open_dict(cfg):
        cfg.optimized_metric = cfg.get("optimized_metric") or module_cls.monitor
        if not cfg.get("optimized_mode"):  # the task's monitor goes its own way
            monitored = cfg.optimized_metric == module_cls.monitor
            mode = module_cls.monitor_mode if monitored else metric_mode(cfg.optimized_metric)
            cfg.optimized_mode = mode
    check_callbacks_and_loggers(cfg)
    fetch_checkpoint_url(cfg)  # a URL is downloaded now, then checked like a local file
    resolve_last_checkpoint(cfg)  # ckpt_path=last: the latest run's last.ckpt
    resumed = local_checkpoint(cfg)
    # Nothing of the checkpoint is built: read_checked refuses any class it names but nnlab's.
    saved = check_resume(cfg, resumed, read_checked) if resumed else None
    if resumed:
        check_epochs_left(cfg, resumed)

    setup_console()
    if cfg.get("print_config"):
        print_config_tree(cfg, cfg.paths.output_dir)
    if drawn:
        log.info("seed=null: this run drew seed=%d (pass seed=%d to repeat it)", seed, seed)
    L.seed_everything(seed, workers=True, verbose=False)
    apply_speed(cfg)
    # Where the splits live (speed.resident).
    datamodule = instantiate(cfg.data, _convert_="all", **data_options(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.spec)
    module.check_monitor(cfg.optimized_metric)
    if saved is not None:
        check_resume_data(resumed, saved, module.hparams.spec)
    log.info("task=%s spec=%s", task, datamodule.spec)

    # The diagnostics group adds callbacks too (activation/gradient statistics, plots); the
    # speed group's fast path is applied to the fit by one more (nnlab.speed.FastPath).
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.get("diagnostics"))
    if cfg.get("speed"):
        callbacks.append(FastPath(cfg.speed))
    loggers = instantiate_loggers(cfg)
    with tracking(loggers):  # W&B runs end as finished, or failed if anything below raises
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        log_config(loggers, cfg)
        with job_processes(trainer):  # DDP in a multirun: its processes run this job alone
            return fit_and_test(cfg, trainer, module, datamodule, task, started)


def check_epochs_left(cfg: DictConfig, ckpt_path: str) -> None:
    """Refuses to resume from a checkpoint that has trained trainer.max_epochs epochs (or
    trainer.max_steps steps) already: Lightning would fit nothing and end as if it had."""
    # weights_only: tensors and plain data; mmap: the weights are not read.
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    # Epochs begun and trained through (a checkpoint written mid-epoch: that epoch is not).
    epochs = progress.get("current", {}).get("processed", checkpoint.get("epoch", -1) + 1)
    steps = checkpoint.get("global_step", 0)
    max_epochs = cfg.trainer.get("max_epochs")
    max_steps = cfg.trainer.get("max_steps")
    if max_epochs not in (None, -1) and max_epochs <= epochs:
        done, limit = f"{epochs} epoch{'s' * (epochs != 1)}", f"trainer.max_epochs={max_epochs}"
    elif max_steps not in (None, -1) and max_steps <= steps:
        done, limit = f"{steps} step{'s' * (steps != 1)}", f"trainer.max_steps={max_steps}"
    else:
        return
    raise ConfigError(
        f"ckpt_path={ckpt_path} has trained {done} already, and {limit} asks for no more: "
        "nothing is left to fit. Raise it to train on, or evaluate the checkpoint with eval.py"
    )


def fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: Any,
    task: str,
    started: float | None = None,
) -> float | None:
    """Fits, validates and tests the best checkpoint, writes results.json; returns the value of
    `optimized_metric`. A divergence stops fitting (nnlab.tasks.divergence): results.json then
    says so, with the worst value for the mode and the metrics of the best checkpoint taken
    before it (if any; a model with non-finite weights is never evaluated), and the Diverged
    is raised again. `started`: the run's start (time.perf_counter), for wall_time_s."""
    started = time.perf_counter() if started is None else started
    diverged: Diverged | None = None
    try:
        with frozen_heap():
            # weights_only: a checkpoint is read as tensors and plain data, never run as code.
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
            )
    except Diverged as e:
        diverged = e
    except RuntimeError as e:  # debug=anomaly: a nan in a backward pass
        diverged = anomaly_diverged(module, e)
        if diverged is None:
            raise
    fit_metrics = scalar_metrics(trainer.callback_metrics)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # Read before validate/test: loading a checkpoint restores the callbacks' state saved in it.
    last = last_checkpoint(trainer)
    stopped = stopped_after_epoch(trainer)  # callbacks=[...,early_stopping]
    val_metrics: dict[str, float] = {}
    test_metrics: dict[str, float] = {}
    if best or not diverged:  # no checkpoint (callbacks=none, fast_dev_run): the last weights
        val_metrics, test_metrics = evaluate_checkpoint(
            cfg, trainer, module, datamodule, best or None
        )

    value = val_metrics.get(cfg.optimized_metric)
    results = {
        "status": "diverged" if diverged else "done",
        "error": str(diverged) if diverged else None,
        "optimized_metric": cfg.optimized_metric,
        "optimized_mode": cfg.optimized_mode,
        # A sweeper must never take a diverged run's metrics for a score.
        "value": worst_value(cfg.optimized_mode) if diverged else value,
        "val": val_metrics,
        "test": test_metrics,
        "best_val_during_fit": fit_metrics.get(f"{module.monitor}_best"),
        "epochs": trainer.current_epoch,
        "stopped_after_epoch": stopped,
        "ckpt_path": best or None,
        "last_ckpt_path": last,
        "output_dir": cfg.paths.output_dir,
        "choices": hydra_choices(),
        "seed": cfg.get("seed"),
        "spec": datamodule.spec.to_dict(),
        "features": getattr(datamodule, "feature_map", None),  # a table's columns → features
        "overrides": job_overrides(),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    if diverged:  # val and test (if any) are this checkpoint's, taken before the divergence
        results["best_ckpt_before_divergence"] = best or None
    if trainer.is_global_zero:
        path = write_results(cfg.paths.output_dir, results)
        if val_metrics or test_metrics:
            title = "best checkpoint before diverging" if diverged else "best checkpoint"
            print_metrics(f"{task}: {title}", {**val_metrics, **test_metrics})
        log.info("results: %s", path)
    if diverged:
        raise diverged
    return results["value"]


def evaluate_checkpoint(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: Any,
    ckpt: str | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(val, test) metrics of checkpoint `ckpt` (None: the module's weights as they are); test
    only when cfg.test."""
    # verbose=False: fit_and_test prints val and test in one table.
    options = {"datamodule": datamodule, "ckpt_path": ckpt, "verbose": False, "weights_only": True}
    # No metrics (an empty list) where trainer.limit_val_batches (or _test_) is 0.
    val_metrics = scalar_metrics((trainer.validate(module, **options) or [{}])[0])
    test_metrics = {}
    if cfg.get("test"):
        test_metrics = scalar_metrics((trainer.test(module, **options) or [{}])[0])
    return val_metrics, test_metrics


def job_overrides() -> list[str]:
    """The run's command-line overrides ("k=v"), as Hydra lists them in .hydra/overrides.yaml
    (none outside a Hydra app)."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The latest epoch's checkpoint: the file of a checkpoint callback that monitors nothing
    (configs/callbacks/default.yaml's last_checkpoint), else a `save_last` file."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is None and callback.best_model_path:
            return callback.best_model_path
    paths = [callback.last_model_path for callback in trainer.checkpoint_callbacks]
    return next((path for path in paths if path), None)
