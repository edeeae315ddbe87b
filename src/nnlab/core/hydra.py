"""Hydra glue: the resolvers the configs use, what the user picked in each group, and
instantiation with plain containers. Imports no torch (`--cfg job` stays fast)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def config_dir() -> str:
    """The folder of configs every entry point composes: the repository's configs/ in a source
    checkout (so edits there take effect at once), else the copy a wheel installs inside the
    package (setup.py puts it there)."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parents[1] / "configs"
    if package.parent.name == "src" and (checkout / "train.yaml").is_file():
        return str(checkout)
    return str(package / "configs")


def register_resolvers() -> None:
    """Resolvers the configs use: `${nnlab.run_id:}`, a random id fixed per process (so runs
    started in the same second get their own folders), and `${nnlab.cwd:}`, the launch folder
    (Hydra's own `${hydra:runtime.cwd}` is not set yet when a multirun names its sweep folder)."""
    run_id = secrets.token_hex(3)
    OmegaConf.register_new_resolver("nnlab.run_id", lambda: run_id, replace=True)
    OmegaConf.register_new_resolver("nnlab.cwd", os.getcwd, replace=True)


def hydra_choices() -> dict[str, str]:
    """The option picked in each config group (data=digits, model=mlp, ...), if under Hydra."""
    try:
        choices = HydraConfig.get().runtime.choices
    except ValueError:  # HydraConfig not set: composed outside a Hydra app
        return {}
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def picked_option(group: str, fallback: str) -> str:
    """The option name a user picked for `group` (for messages), when Hydra knows it."""
    return hydra_choices().get(group) or fallback


def instantiate_config(node: DictConfig | dict[str, Any], **kwargs: Any) -> Any:
    """hydra's instantiate with plain containers (what every component receives)."""
    return instantiate(node, **kwargs, _convert_="all")


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiates every entry of a group such as callbacks or logger (a dict of configs)."""
    if not cfg:
        return []
    return [instantiate_config(c) for c in cfg.values() if c and "_target_" in c]
