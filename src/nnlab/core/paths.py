"""The folders a run writes to, checked before anything is written: a folder asked for under a
file (`paths.log_dir=/x/notes.txt/logs`) would otherwise fail in os.mkdir with a traceback,
from Hydra (the run folder) or from whatever first writes there (a download).

FoldersCheck, a Hydra callback (configs/hydra/default.yaml), checks the paths group and the run or
sweep folder before Hydra makes it; nnlab.validation checks the paths group of a composed config
(every run, also those started without Hydra's app)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nnlab.core.errors import ConfigError

# Checked before the run folder, which they usually contain: the message then names the key
# the user set (paths.log_dir) rather than the folder made from it.
FOLDER_KEYS = ("paths.root_dir", "paths.log_dir", "paths.data_dir")


def blocking_file(path: str | Path) -> Path | None:
    """The file that stands where `path`, or one of the folders above it, should be a folder;
    None when the folder exists or can be made."""
    path = Path(path).absolute()
    for part in (path, *path.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def check_folder(key: str, path: str | Path) -> None:
    """Raises ConfigError when the folder `path` (the value of config key `key`) cannot be made
    because a file is in the way."""
    file = blocking_file(path)
    if file is not None:
        raise ConfigError(f"{key}={path}: {file} is a file, not a folder")


class FoldersCheck(Callback):
    """Refuses, with one `error:` line and exit code 1, a run whose folders (the paths group,
    then hydra.run.dir or hydra.sweep.dir) lie under a file, before Hydra makes any of them.

    Hydra calls it before its own try-report (which would print a traceback): raising
    SystemExit here ends the process with the message alone."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_folders(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_folders(config, "hydra.sweep.dir")


def check_folders(config: DictConfig, run_key: str) -> None:
    """FoldersCheck's check. A key that cannot be resolved yet (a `${hydra:runtime...}`) is left
    to Hydra."""
    for key in (*FOLDER_KEYS, run_key):
        value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        try:
            if isinstance(value, str):
                check_folder(key, value)
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None
