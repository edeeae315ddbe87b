"""The folders a run writes to and the checkpoint file it reads, checked before anything is
written. A folder asked for under a file (`paths.log_dir=/x/notes.txt/logs`) would otherwise
fail in os.mkdir with a traceback, from Hydra (the run folder) or from whatever first writes
there (a download); a truncated checkpoint, in torch.load with a bare OS error.

FoldersCheck, a Hydra callback (configs/hydra/default.yaml), checks the paths group and the run or
sweep folder before Hydra makes it; nnlab.validation checks the paths group of a composed config
(every run, also those started without Hydra's app) and the checkpoint file."""

from __future__ import annotations

import os
import zipfile
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


def check_paths(cfg: DictConfig) -> None:
    """Refuses a folder of the paths group (data_dir, log_dir, output_dir...) under a file."""
    for key, value in (cfg.get("paths") or {}).items():
        if isinstance(value, str):
            check_folder(f"paths.{key}", value)


def check_checkpoint_file(ckpt_path: str | None) -> None:
    """Refuses a local ckpt_path that is missing, empty, cut short or no checkpoint at all,
    before anything is written: torch.save writes a zip archive, whose directory comes last,
    so a truncated file is told apart from any other by its first bytes. (A zip archive that
    is damaged inside, or holds code, is refused when it is read: nnlab.checkpoints.)"""
    if not ckpt_path:
        return
    if os.path.isdir(ckpt_path):
        raise ConfigError(
            f"ckpt_path={ckpt_path} is a folder, not a checkpoint file: give the .ckpt file "
            "(e.g. <run>/checkpoints/best.ckpt)"
        )
    if not os.path.isfile(ckpt_path):
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file")
    if zipfile.is_zipfile(ckpt_path):
        return
    size = os.path.getsize(ckpt_path)
    with open(ckpt_path, "rb") as f:
        truncated = f.read(4) == b"PK\x03\x04"  # a zip archive's start, without its end
    if size == 0:
        reason = "it is empty (0 bytes)"
    elif truncated:
        reason = f"it is truncated: a checkpoint cut short at {size:,} bytes (copy it again)"
    else:
        reason = "it is not a PyTorch checkpoint (torch.save writes a zip archive)"
    raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {reason}")


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
