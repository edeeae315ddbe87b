"""Evaluation of a checkpoint: rebuilds the module from the checkpoint alone, rebuilds its data
(from the checkpoint's data config unless `data=` is given), tests, writes results.json."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nnlab.checkpoints import fetch_checkpoint_url, is_url
from nnlab.console import print_config_tree, setup_console
from nnlab.core import ConfigError
from nnlab.core.hydra import hydra_choices
from nnlab.ddp import job_processes
from nnlab.results import print_metrics, scalar_metrics, write_results
from nnlab.tasks.base import TaskModule
from nnlab.tasks.loading import datamodule_from, module_from, read_checked
from nnlab.tracking import instantiate_loggers, log_config, tracking
from nnlab.validation import validate_eval

log = logging.getLogger(__name__)


def load_module(ckpt_path: str | Path) -> TaskModule:
    """The task module stored in a checkpoint written by train.py, on the CPU: read as data,
    checked and rebuilt only from nnlab's registries (nnlab.tasks.loading)."""
    return module_from(read_checked(str(ckpt_path)), str(ckpt_path))


def with_local_data_dir(data_cfg: dict[str, Any], data_dir: str) -> dict[str, Any]:
    """The checkpoint's data config with this run's `paths.data_dir` as its data folder: a
    checkpoint never says where files are downloaded to (it may come from elsewhere: its
    recorded folder is another machine's, or any folder at all)."""
    recorded = data_cfg.get("data_dir")
    if recorded is None or recorded == data_dir:
        return data_cfg
    log.info("data_dir: using paths.data_dir=%s, not the checkpoint's %s", data_dir, recorded)
    return {**data_cfg, "data_dir": data_dir}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Tests the checkpoint `cfg.ckpt_path` on its data (or `cfg.data`), writes results.json;
    returns the test metrics."""
    validate_eval(cfg)
    url = cfg.ckpt_path if is_url(cfg.ckpt_path) else None
    fetch_checkpoint_url(cfg)  # a URL is downloaded now, then checked like a local file
    setup_console()
    if cfg.get("print_config"):
        print_config_tree(cfg, cfg.paths.output_dir)
    module = load_module(cfg.ckpt_path)
    # The data config typed (data=<option>: the user's own), else the checkpoint's (checked).
    source = None if cfg.get("data") else f"ckpt_path={cfg.ckpt_path}"
    if cfg.get("data"):
        # Resolved in the whole config: the data's ${seed} is eval.yaml's top-level seed.
        data_cfg: Any = OmegaConf.to_container(cfg.data, resolve=True)
    elif module.hparams.get("data"):
        data_cfg = with_local_data_dir(module.hparams.data, cfg.paths.data_dir)
    else:
        raise ConfigError("the checkpoint records no data config; pass one with data=<option>")
    if cfg.get("seed") is not None:  # 0 is a seed; null leaves the run unseeded
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = datamodule_from(data_cfg, source)
    datamodule.prepare_data()
    datamodule.setup("test")
    if datamodule.spec != module.spec:
        raise ConfigError(
            f"the data does not fit the checkpoint: it gives {datamodule.spec}, "
            f"the model was trained on {module.spec}"
        )
    loggers = instantiate_loggers(cfg)
    with tracking(loggers):  # W&B runs end as finished, or failed if testing raises
        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
        log_config(loggers, cfg)
        with job_processes(trainer):  # DDP in a multirun: its processes run this job alone
            metrics = scalar_metrics(trainer.test(module, datamodule=datamodule, verbose=False)[0])
        if trainer.is_global_zero:
            write_results(
                cfg.paths.output_dir,
                {
                    "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
                    "ckpt_url": url,
                    "test": metrics,
                    "choices": hydra_choices(),
                    "output_dir": cfg.paths.output_dir,
                },
            )
            print_metrics(f"test of {cfg.ckpt_path}", metrics)
    return metrics
