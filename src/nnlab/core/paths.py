"""The folders a run writes to and the checkpoint file it reads, checked before anything is
written. A folder asked for under a file (`paths.log_dir=/x/notes.txt/logs`) would otherwise
fail in os.mkdir with a traceback, from Hydra (the run folder) or from whatever first writes
there (a download); a truncated checkpoint, in torch.load with a bare OS error.

FoldersCheck, a Hydra callback (configs/hydra/default.yaml), checks the paths group and the run or
sweep folder before Hydra makes it; nnlab.validation checks the paths group of a composed config
(every run, also those started without Hydra's app) and the checkpoint file."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nnlab.core.errors import ConfigError

log = logging.getLogger(__name__)

# Checked before the run folder, which they usually contain: the message then names the key
# the user set (paths.log_dir) rather than the folder made from it.
FOLDER_KEYS = ("paths.root_dir", "paths.log_dir", "paths.data_dir")
# Keys whose value becomes one part of a folder's or file's name (logs/<task_name>/runs/...,
# logs/optuna/<study_name>.db): a name, never a path.
NAME_KEYS = ("task_name", "hydra.job.name", "hydra.sweeper.study_name")
# The lock file of a run folder: the pid of the process that runs there (check_run_folder).
LOCK = ".nnlab.lock"
# What the launchers of DDP processes (Lightning's, torchrun, SLURM) set to a process's rank.
RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


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
    """Refuses a folder of the paths group (data_dir, log_dir, output_dir...) under a file, and
    a task_name (or other NAME_KEYS key) that is not a plain name."""
    check_names(cfg)
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
        folder = check_folders(config, "hydra.run.dir")
        # The run's lock, before Hydra writes .hydra/ and opens the log: a second process on
        # the folder of a running one stops here, having touched none of its files.
        try:
            lock_folder(folder, "hydra.run.dir")
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        unlock_folder(OmegaConf.select(config, "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_folders(config, "hydra.sweep.dir")


def check_folders(config: DictConfig, run_key: str) -> str:
    """FoldersCheck's check; makes and returns the run (or sweep) folder. A key that cannot be
    resolved yet (a `${hydra:runtime...}`) is left to Hydra."""
    try:
        check_names(config)
        for key in (*FOLDER_KEYS, run_key):
            value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
            if isinstance(value, str):
                try:
                    check_folder(key, value)
                except OSError as e:  # a name too long to even look up
                    message = f"{key}={value}: cannot make this folder ({e.strerror})"
                    raise ConfigError(message) from None
        folder = str(OmegaConf.select(config, run_key))
        # A run's folder is made now, for its lock; a sweep's only when its first job starts.
        make_folder(run_key, folder, config, keep=run_key == "hydra.run.dir")
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    return folder


def check_name(key: str, value: Any) -> None:
    """Refuses a value of a NAME_KEYS key that is not one plain name: empty, absolute, or
    holding a path separator or `..` (`task_name=../../x` would write outside paths.log_dir)."""
    text = str(value)
    bad = not text.strip() or os.path.isabs(text) or "/" in text or "\\" in text or ".." in text
    if bad or text in (".", "~") or "\0" in text:
        raise ConfigError(
            f"{key}={value!r} is not a name: it names a folder, so it must be a non-empty name "
            f"without /, \\ or .. (e.g. {key}=digits_mlp)"
        )


def check_names(cfg: DictConfig) -> None:
    """check_name for every NAME_KEYS key the config sets."""
    unset = object()
    for key in NAME_KEYS:
        value = OmegaConf.select(cfg, key, default=unset, throw_on_resolution_failure=False)
        if value is not unset:
            check_name(key, "" if value is None else value)


def process_alive(pid: Any) -> bool:
    """Whether process `pid` runs on this machine (a zombie, dead but not yet reaped, does not)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): alive per os.kill
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def make_folder(
    key: str, folder: str | Path, config: DictConfig | None = None, keep: bool = True
) -> None:
    """Makes `folder` (the value of `key`) with its parents (keep=False: and removes what it
    made, only to know that it can be made); when it cannot be made (a name too long, a place
    like /proc where no folder can be made, no permission) raises ConfigError naming the key
    the user set (the deepest paths.* folder above it that did not exist yet, else `key`),
    after removing the parents it made."""
    folder = Path(folder).absolute()
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_made(missing)
        for setting in FOLDER_KEYS if config is not None else ():
            value = OmegaConf.select(config, setting, throw_on_resolution_failure=False)
            if isinstance(value, str) and Path(value).absolute() in missing:
                key, folder = setting, Path(value)
                break
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"{key}={folder}: cannot make this folder ({reason})") from None
    if not keep:
        _remove_made(missing)


def _remove_made(made: list[Path]) -> None:
    """Removes the folders make_folder made (deepest first), where they are still empty."""
    for path in made:
        with contextlib.suppress(OSError):
            path.rmdir()


# The run folders this process holds the lock of: folder → (lock file descriptor, holders).
_held: dict[Path, list[int]] = {}


def _lock_holder(path: Path) -> int | None:
    """The pid a lock file names (None: unreadable, or written by nothing nnlab knows)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def lock_folder(folder: str | Path, key: str = "hydra.run.dir") -> None:
    """Takes the exclusive lock of a run folder: the file `.nnlab.lock`, created with O_EXCL and
    holding this process's pid (and an flock, which the system drops when the process ends, so
    that a dead holder is told apart from a live one without a race). Raises ConfigError naming
    the folder and the pid when another live process holds it; takes over, with a warning, the
    lock a dead process left. Reentrant within a process; released by unlock_folder or at exit.
    A run's other DDP processes (rank >= 1, started by Lightning, torchrun or SLURM) share the
    folder of its first, which holds the lock for them all: they take none."""
    if any(os.environ.get(name, "0") not in ("", "0") for name in RANK_ENV):
        return
    folder = Path(folder).absolute()
    if folder in _held:
        _held[folder][1] += 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    existed = False
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    except FileExistsError:
        existed = True
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # released in between: start again
            return lock_folder(folder, key)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"{key}={folder}: another run (pid {_lock_holder(path)}) is using this folder; "
            "wait for it to end, or pick another folder"
        ) from None
    try:
        ours = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        ours = False
    if not ours:  # its holder removed it while we waited for it: start again
        os.close(fd)
        return lock_folder(folder, key)
    if existed:
        log.warning(
            "%s: taking over the lock left by pid %s, which is no longer running",
            folder,
            _lock_holder(path),
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    if not _held:
        atexit.register(_release_all)
    _held[folder] = [fd, 1]


def unlock_folder(folder: str | Path) -> None:
    """Releases this process's lock of `folder` (the last of its reentrant holds removes the
    lock file)."""
    folder = Path(folder).absolute()
    held = _held.get(folder)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _held[folder]
    path = folder / LOCK
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(held[0]), os.stat(path)):
            path.unlink()
    os.close(held[0])


def _release_all() -> None:
    for folder in list(_held):
        _held[folder][1] = 1
        unlock_folder(folder)


def remove_stale_lock(folder: str | Path) -> None:
    """Removes the lock file a dead process left in `folder` (one a live process holds stays)."""
    path = Path(folder) / LOCK
    if path.is_file() and not process_alive(_lock_holder(path)):
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink()
            finally:
                os.close(fd)
