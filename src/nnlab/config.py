"""Config-time helpers: resolvers the Hydra configs use, and validation of a composed config
before any data is loaded or model built. Importing this module does not import torch."""

from __future__ import annotations

import os
import secrets
from typing import Any

from omegaconf import DictConfig, OmegaConf


def register_resolvers() -> None:
    """Resolvers the configs use: `${nnlab.run_id:}`, a random id fixed per process (so runs
    started in the same second get their own folders), and `${nnlab.cwd:}`, the launch folder
    (Hydra's own `${hydra:runtime.cwd}` is not set yet when a multirun names its sweep folder)."""
    run_id = secrets.token_hex(3)
    OmegaConf.register_new_resolver("nnlab.run_id", lambda: run_id, replace=True)
    OmegaConf.register_new_resolver("nnlab.cwd", os.getcwd, replace=True)


class ConfigError(ValueError):
    """A composed config asks for something that cannot work."""


# The valid values of the speed group's keys that take one of a few (configs/speed).
SPEED_CHOICES: dict[str, tuple[Any, ...]] = {
    "resident": ("auto", True, False),
    "optimizer_impl": (None, "fused", "foreach"),
    "matmul_precision": ("highest", "high", "medium"),
}


def check_speed(speed: DictConfig | dict[str, Any]) -> None:
    """Raises ConfigError naming a speed key whose value cannot work, and what is valid."""

    def fail(key: str, valid: str) -> None:
        raise ConfigError(f"speed.{key} must be {valid}, got {speed.get(key)!r}")

    for key, choices in SPEED_CHOICES.items():
        if key in speed and speed[key] not in choices:
            fail(key, "one of " + ", ".join("null" if c is None else str(c) for c in choices))
    steps = speed.get("steps_per_batch", "auto")
    if steps != "auto" and not (is_int(steps) and steps >= 1):
        fail("steps_per_batch", "auto or an int >= 1")
    if not isinstance(speed.get("cuda_graph", False), bool):
        fail("cuda_graph", "true or false")
    seconds = speed.get("write_checkpoints_every_s", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        fail("write_checkpoints_every_s", "a number of seconds >= 0")
    sanity = speed.get("sanity_val_steps")
    if sanity is not None and not (is_int(sanity) and sanity >= -1):
        fail("sanity_val_steps", "null, -1 (all) or an int >= 0")


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def picked_option(cfg: DictConfig, group: str, fallback: str) -> str:
    """The option name a user picked for `group` (for messages), when Hydra knows it."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get(group) or fallback)
    except ValueError:  # HydraConfig not set: composed outside a Hydra app
        return fallback


def data_task(data_cfg: DictConfig | dict[str, Any]) -> str:
    """The task a data config's datamodule declares, read from its class."""
    from hydra.utils import get_class

    target = data_cfg.get("_target_")
    if not target:
        raise ConfigError("the data config has no _target_ (the datamodule class)")
    task = getattr(get_class(target), "task", None)
    if task is None:
        raise ConfigError(f"{target} declares no task (regression, binary or multiclass)")
    return task


# ckpt_path values that Trainer.fit resolves itself.
LIGHTNING_CKPT_NAMES = ("last", "hpc", "registry")
# Seeds Lightning (and numpy) accept: unsigned 32-bit.
MAX_SEED = 2**32 - 1


def resolve_seed(seed: Any) -> tuple[int, bool]:
    """The run's seed and whether it was drawn: `seed` itself, or for null a fresh random one.

    DDP processes that Lightning starts inherit the first process's seed through
    PL_GLOBAL_SEED (set by seeding, as Lightning does), so all ranks split the data alike.
    """
    if seed is not None:
        if not is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed must be an int in [0, {MAX_SEED}] or null, got {seed!r}")
        return seed, False
    if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP process other than the first
        inherited = os.environ.get("PL_GLOBAL_SEED")
        if inherited is None:
            raise ConfigError(
                "seed=null draws a seed per run, but this process was started by a launcher "
                "(torchrun, SLURM) without the first process's seed: set seed=<int>"
            )
        return int(inherited), True
    return secrets.randbelow(MAX_SEED + 1), True


def validate(cfg: DictConfig) -> str:
    """Checks that data, model, loss, optimizer and trainer can work together; returns the
    data's task.

    Runs before anything is loaded, so a bad combination or option costs no time: besides the
    combinations, every key of every component's config is checked against the constructor it
    goes to (nnlab.checks), and each component is built once without data (the model on
    placeholders) so that its own checks run now.
    """
    from hydra.utils import get_class

    from nnlab import checks
    from nnlab.nn.losses import resolve_name

    task = data_task(cfg.data)
    data_name = picked_option(cfg, "data", cfg.data._target_.rsplit(".", 1)[-1])
    model_target = cfg.model.get("_target_")
    model_tasks = getattr(get_class(model_target), "tasks", None) if model_target else None
    if model_tasks is not None and task not in model_tasks:
        model_name = picked_option(cfg, "model", model_target)
        raise ConfigError(
            f"model={model_name} cannot train data={data_name} (a {task} task); it trains "
            f"{', '.join(model_tasks)} tasks. Pick another model (linear, mlp) or another data set."
        )
    try:
        resolve_name(OmegaConf.to_container(cfg.get("loss"), resolve=True), task)
    except ConfigError as e:
        raise ConfigError(f"{e} (data={data_name} is a {task} task)") from None
    if cfg.get("speed"):
        check_speed(cfg.speed)
    checks.check_components(cfg, task)  # the datamodule's own checks (batch_size...) run here
    ckpt_path = local_checkpoint(cfg)
    if ckpt_path and not os.path.isfile(ckpt_path):
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file")
    return task


def local_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint file a run resumes from, or None: no ckpt_path, or one that Lightning
    resolves itself (its names such as "last", remote URLs)."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or ckpt_path in LIGHTNING_CKPT_NAMES or "://" in str(ckpt_path):
        return None
    return str(ckpt_path)


def validate_eval(cfg: DictConfig) -> None:
    """eval.py's share of validate(): the seed, the trainer (keys, types, a GPU where asked for,
    built once) and a data config given with data=<option> (keys, types, built once)."""
    from nnlab import checks

    if cfg.get("seed") is not None:
        resolve_seed(cfg.seed)
    if cfg.get("data"):
        checks.check_data(cfg)
    checks.check_trainer(cfg)
