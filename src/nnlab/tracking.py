"""Experiment tracking: builds the configured loggers, names and tags W&B runs from the chosen
config groups, falls back to offline W&B when there are no credentials (never prompting), and
finishes runs cleanly whether training succeeds or raises.

W&B runs carry:
- name: the chosen groups (`digits-mlp-relu-kaiming-adam`), plus `-<job number>` in a multirun;
- tags: `data=… model=… activation=… init=… loss=… optimizer=…`;
- group: the sweep (`<task_name>-<sweep folder>`) in a multirun, so a dashboard groups its jobs;
- job_type: the task name (train, eval);
- config: the resolved config flattened to dotted keys (`model.hidden_sizes`, the same spelling as
  a command-line override) plus `choices.<group>` for grouping and filtering by option.

MLflow runs (logger=mlflow, `MLflowLogger`) carry the same name, the groups as tags
(`data: digits`, ...), the flattened config as params, the per-epoch metrics, and at the end the
config, results.json and the diagnostics figures as artifacts (the best checkpoint on request);
in a local store under logs/mlflow by default, or on a tracking server.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from nnlab.compat import CSVLoggerWriter, wandb_init_args, wandb_run
from nnlab.core import ConfigError
from nnlab.core.hydra import hydra_choices
from nnlab.core.results_file import RESULTS, read_results

log = logging.getLogger(__name__)

# Groups whose choice names a run and tags it, in this order. Others (trainer, logger...) describe
# how a run was executed, not what was trained.
IDENTITY_GROUPS = ("data", "model", "activation", "init", "loss", "optimizer")
# W&B modes a user can ask for; null (auto) picks online with credentials, else offline.
WANDB_MODES = ("online", "offline", "disabled")


# -- run identity ------------------------------------------------------------------------------
def run_identity(
    choices: Mapping[str, str],
    task_name: str,
    sweep_dir: str | None = None,
    job_num: int | None = None,
) -> dict[str, Any]:
    """W&B name, tags, group and job_type for a run with these group `choices`.

    `sweep_dir` and `job_num` are given in a multirun: jobs of one sweep share the group and get
    distinct names even when they differ only in a plain key (seed=1,2).
    """
    picked = [g for g in IDENTITY_GROUPS if choices.get(g)]
    # loss=auto names nothing a reader can compare; it stays in the tags.
    name = "-".join(choices[g] for g in picked if not (g == "loss" and choices[g] == "auto"))
    name = name or task_name
    group = None
    if sweep_dir is not None:
        group = f"{task_name}-{Path(sweep_dir).name}"
        if job_num is not None:
            name = f"{name}-{job_num}"
    return {
        "name": name,
        "tags": [f"{g}={choices[g]}" for g in picked],
        "group": group,
        "job_type": task_name,
    }


def hydra_identity(cfg: DictConfig) -> dict[str, Any]:
    """`run_identity` for the running Hydra job (group and job number only under --multirun)."""
    sweep_dir = job_num = None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            sweep_dir, job_num = hc.sweep.dir, hc.job.num
    return run_identity(hydra_choices(), str(cfg.get("task_name") or "train"), sweep_dir, job_num)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"model": {"dropout": 0}} → {"model.dropout": 0}.
    Lists stay values, so `model.hidden_sizes` reads [128, 64]."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def tracked_config(cfg: DictConfig, choices: Mapping[str, str]) -> dict[str, Any]:
    """The resolved config as W&B shows it: flattened, with `choices.<group>` added."""
    config = OmegaConf.to_container(cfg, resolve=True)
    # The hydra node is Hydra's own bookkeeping, not part of the experiment.
    config.pop("hydra", None)
    return {**flatten(config), **{f"choices.{k}": v for k, v in choices.items()}}


# -- W&B mode ----------------------------------------------------------------------------------
def resolve_wandb_mode(requested: str | None) -> str:
    """The W&B mode to run in: `requested` if set, else WANDB_MODE if set, else online when
    wandb finds credentials (WANDB_API_KEY, ~/.netrc, settings files) and offline otherwise.

    The credential check is wandb's own `wandb.login(prompt=False, verify=False)`, made silent:
    it reads the same sources wandb.init would, never prompts and does not touch the network.
    """
    if requested is not None:
        if requested not in WANDB_MODES:
            raise ConfigError(
                f"logger.wandb.mode must be null (auto) or one of {', '.join(WANDB_MODES)}, "
                f"got {requested!r}"
            )
        return requested
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env == "dryrun" else env
    import wandb

    # Silent: a non-silent login greets the user by name, which it asks the server for (a
    # network round trip, and a long wait where there is no network).
    previous = os.environ.get("WANDB_SILENT")
    os.environ["WANDB_SILENT"] = "true"
    try:
        return "online" if wandb.login(prompt=False, verify=False) else "offline"
    finally:
        if previous is None:
            del os.environ["WANDB_SILENT"]
        else:
            os.environ["WANDB_SILENT"] = previous


def _is_wandb(logger_cfg: Mapping[str, Any]) -> bool:
    return issubclass(get_class(logger_cfg["_target_"]), WandbLogger)


def build_wandb_logger(logger_cfg: DictConfig, cfg: DictConfig) -> WandbLogger:
    """A WandbLogger named, tagged and grouped from the run's choices, in the resolved mode, with
    its run started now on rank 0 (so a failed online start falls back to offline here, before
    any training time is spent)."""
    import wandb

    options = OmegaConf.to_container(logger_cfg, resolve=True)
    mode = resolve_wandb_mode(options.pop("mode", None))
    identity = hydra_identity(cfg)
    extra_tags = options.pop("tags", None) or []
    for key in ("name", "group", "job_type"):
        if options.get(key) is None:  # an explicit value in the config wins
            options[key] = identity[key]
    options["tags"] = [*identity["tags"], *extra_tags]
    options["settings"] = wandb.Settings(
        silent=True,  # our own lines say what matters (mode, sync command)
        init_timeout=float(options.pop("init_timeout", 60)),
    )
    cls = get_class(options.pop("_target_"))
    logger = _without_anonymous(cls(**options, mode=mode))
    if rank_zero_only.rank != 0:
        return logger
    try:
        run = logger.experiment
    except Exception as e:  # no network, server down, bad key: keep the run, locally
        if mode != "online":
            raise
        log.warning("W&B could not start online (%s); logging offline instead", e)
        mode = "offline"
        logger = _without_anonymous(cls(**options, mode=mode))
        run = logger.experiment
    if mode == "disabled":
        log.info("W&B is disabled (logger.wandb.mode=disabled): nothing is logged to it")
    else:
        where = run.url if mode == "online" else "offline"
        log.info("W&B run %r (%s) in %s", run.name, where, run.dir)
    return logger


def _without_anonymous(logger: WandbLogger) -> WandbLogger:
    """Lightning always passes wandb.init an `anonymous` argument, which wandb ≥ 0.2x has
    retired and warns about on every run; dropping it changes nothing else."""
    wandb_init_args(logger).pop("anonymous", None)
    return logger


def instantiate_loggers(cfg: DictConfig) -> list[Logger]:
    """The loggers of the `logger` group; W&B and MLflow ones named and tagged from the run's
    choices (`build_wandb_logger`, `build_mlflow_logger`)."""
    group = cfg.get("logger")
    if not group:
        return []
    loggers = []
    for c in group.values():
        if not (c and "_target_" in c):
            continue
        if _is_wandb(c):
            loggers.append(build_wandb_logger(c, cfg))
        elif issubclass(get_class(c["_target_"]), MLflowLogger):
            loggers.append(build_mlflow_logger(c, cfg))
        else:
            loggers.append(instantiate(c, _convert_="all"))
    return loggers


def log_config(loggers: list[Logger], cfg: DictConfig) -> None:
    """Sends the resolved config to every logger: flattened (with the group choices) for W&B
    and MLflow, where dotted keys are searchable; nested elsewhere."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        if isinstance(logger, WandbLogger | MLFlowLogger):
            logger.log_hyperparams(tracked_config(cfg, hydra_choices()))
        else:
            logger.log_hyperparams(config)


# -- MLflow ------------------------------------------------------------------------------------
MLFLOW_INSTALL = "pip install 'nnlab[mlflow]'"
# Tries and seconds per request to a tracking server while a run starts (MLflow's own defaults,
# 7 tries with backoff and 120 s, wait minutes on a wrong URI before saying anything).
MLFLOW_START_RETRIES, MLFLOW_START_TIMEOUT_S = "2", "20"


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger whose run ends when nnlab's run ends (Lightning's would end it
    after fitting, before the best checkpoint is evaluated), then holding the run folder's
    config, results.json and diagnostics (figures and CSVs) as artifacts, and the best
    checkpoint when `log_checkpoint`.

    tracking_uri: a tracking server (http://host:5000) or any MLflow store URI; null:
    MLFLOW_TRACKING_URI if set, else a local SQLite store in `local_dir` (mlflow.db, artifacts
    beside it): `mlflow ui --backend-store-uri sqlite:///<local_dir>/mlflow.db` shows it."""

    def __init__(
        self,
        experiment_name: str = "nnlab",
        tracking_uri: str | None = None,
        local_dir: str = "logs/mlflow",
        run_name: str | None = None,
        tags: dict[str, Any] | None = None,
        run_dir: str | None = None,
        log_checkpoint: bool = False,
    ) -> None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None  # the server's (or the store's) own artifact location
        if not uri:
            store = Path(local_dir).resolve()
            store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store / 'mlflow.db'}"
            artifacts = (store / "artifacts").as_uri()
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=uri,
            tags=tags,
            artifact_location=artifacts,
        )
        self.run_dir = run_dir
        self.log_checkpoint = log_checkpoint

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    def finalize(self, status: str) -> None:
        """Lightning calls this after fitting (and after each test): the run goes on until
        `close`."""

    def close(self, exit_code: int) -> None:
        """Uploads the run folder's artifacts and ends the run: FINISHED, or FAILED for a
        non-zero `exit_code`. A failed upload is warned about; the run still ends."""
        if not self._initialized:
            return
        try:
            if self.run_dir:
                self._upload(Path(self.run_dir))
        except Exception as e:  # the server went away, a full disk: the training still counts
            log.warning("MLflow: uploading the run's artifacts failed: %s", e)
        self.experiment.set_terminated(self.run_id, "FINISHED" if exit_code == 0 else "FAILED")
        log.info("MLflow run %s (%s) at %s", self._run_name, self.run_id, self._tracking_uri)

    def _upload(self, run_dir: Path) -> None:
        client, run_id = self.experiment, self.run_id
        for name in (RESULTS, "config_tree.txt", ".hydra/config.yaml", ".hydra/overrides.yaml"):
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name), "run")
        if (run_dir / "diagnostics").is_dir():
            client.log_artifacts(run_id, str(run_dir / "diagnostics"), "diagnostics")
        ckpt = (read_results(run_dir) or {}).get("ckpt_path")
        if self.log_checkpoint and ckpt and Path(ckpt).is_file():
            client.log_artifact(run_id, ckpt, "checkpoints")


def build_mlflow_logger(logger_cfg: DictConfig, cfg: DictConfig) -> MLflowLogger:
    """An MLflowLogger named and tagged from the run's choices (tags `data`, `model`, ...,
    `sweep` in a multirun), with its run started now on rank 0: a server that cannot be
    reached is one error before training, not a failure after it."""
    options = OmegaConf.to_container(logger_cfg, resolve=True)
    identity = hydra_identity(cfg)
    if options.get("run_name") is None:
        options["run_name"] = identity["name"]
    tags = dict(tag.split("=", 1) for tag in identity["tags"])
    tags["job_type"] = identity["job_type"]
    if identity["group"]:
        tags["sweep"] = identity["group"]
    options["tags"] = {**tags, **(options.get("tags") or {})}
    cls = get_class(options.pop("_target_"))
    try:
        logger = cls(**options)
    except ModuleNotFoundError as e:
        raise ConfigError(f"logger=mlflow needs the mlflow package: {MLFLOW_INSTALL}") from e
    if rank_zero_only.rank != 0:
        return logger
    limits = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": MLFLOW_START_RETRIES,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": MLFLOW_START_TIMEOUT_S,
    }
    saved = {k: os.environ.get(k) for k in limits}
    os.environ.update({k: v for k, v in limits.items() if saved[k] is None})
    try:
        run_id = logger.run_id  # creates the experiment (if new) and the run
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"logger.mlflow: cannot start a run at tracking_uri {logger.tracking_uri} "
            f"({reason}); check the server, or unset MLFLOW_TRACKING_URI and "
            "logger.mlflow.tracking_uri for the local store"
        ) from e
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    log.info("MLflow run %r (%s) at %s", options["run_name"], run_id, logger.tracking_uri)
    return logger


# -- finishing ---------------------------------------------------------------------------------
@rank_zero_only
def finish(loggers: list[Logger], exit_code: int) -> None:
    """Finishes W&B and MLflow runs with `exit_code` (non-zero marks them failed) and flushes
    the others. For offline W&B runs, prints the command that uploads them."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = wandb_run(logger)
            if run is None:  # it never started: nothing to finish
                continue
            offline, sync_dir = run.offline, run.settings.sync_dir
            run.finish(exit_code=exit_code)
            if offline:
                msg = f"W&B run saved offline; upload it with:  wandb sync {sync_dir}"
                log.info(msg)
                print(msg, flush=True)
        elif isinstance(logger, MLflowLogger):
            logger.close(exit_code)
        else:
            logger.save()


@contextlib.contextmanager
def tracking(loggers: list[Logger]) -> Iterator[None]:
    """Finishes the loggers' runs when the block ends: exit code 0 on success, 1 (failed) when it
    raises; the exception still propagates."""
    try:
        yield
    except BaseException:
        finish(loggers, exit_code=1)
        raise
    finish(loggers, exit_code=0)


# -- CSV: one row per epoch --------------------------------------------------------------------
class _EpochRowWriter(ExperimentWriter):
    """Merges metrics logged at the same (epoch, step) into one row.

    Lightning logs a training epoch's metrics and the validation metrics of that epoch in two
    calls with the same step; the stock writer makes two half-empty rows of them. Here they
    share a row, so metrics.csv has one row per epoch. The file is rewritten from the first
    changed row on: appending normally, rewriting the tail when the last row grew.
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self.rows: list[dict[str, Any]] = []
        self._clean = 0  # rows before this index are on disk as they are now
        self._offsets: list[int] = []  # byte offset in the file where each written row starts

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        if step is None:
            step = len(self.rows)
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics_dict.items()}
        row["step"] = step
        last = self.rows[-1] if self.rows else None
        same_row = (
            last is not None
            and last["step"] == step
            and last.get("epoch") == row.get("epoch")
            and not (set(last) & set(row)) - {"step", "epoch"}
        )
        if same_row:
            last.update(row)
            self._clean = min(self._clean, len(self.rows) - 1)
        else:
            self.rows.append(row)

    def save(self) -> None:
        if self._clean == len(self.rows):
            return
        keys = sorted(set().union(*self.rows))
        path = Path(self.metrics_file_path)
        rewrite = keys != self.metrics_keys or not path.exists()
        if rewrite:  # a new column: the header changes, so every row is written again
            self.metrics_keys, self._clean, self._offsets = keys, 0, []
        with open(path, "wb" if rewrite else "r+b") as f:
            if rewrite:
                f.write(_csv_line(keys, dict(zip(keys, keys, strict=True))))
            elif self._clean < len(self._offsets):  # a written row changed: rewrite from it
                f.seek(self._offsets[self._clean])
                f.truncate()
            else:
                f.seek(0, os.SEEK_END)
            del self._offsets[self._clean :]
            for row in self.rows[self._clean :]:
                self._offsets.append(f.tell())
                f.write(_csv_line(keys, row))
        self._clean = len(self.rows)


def _csv_line(keys: list[str], row: Mapping[str, Any]) -> bytes:
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=keys).writerow(row)
    return buf.getvalue().encode()


class EpochCSVLogger(CSVLoggerWriter):
    """Lightning's CSVLogger with one row per epoch in metrics.csv (train and val metrics of an
    epoch side by side; the evaluation of the best checkpoint after fitting is the last row)."""

    def make_writer(self, log_dir: str) -> _EpochRowWriter:
        return _EpochRowWriter(log_dir=log_dir)
