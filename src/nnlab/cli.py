"""What the root entry points share: how a run ends when it fails. A single run ends with one
`error: …` line (not a traceback) for a mistake a user can fix; a multirun job that fails, for any
reason, becomes a `status: failed` results.json and the sweep goes on; a multirun job already done
in an earlier launch into the same sweep folder is skipped. Importing this module does not
import torch."""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nnlab.core import ConfigError, DataUnavailableError, Diverged
from nnlab.core.components import import_plugins
from nnlab.core.hydra import hydra_choices
from nnlab.core.paths import LOCK, lock_folder, unlock_folder
from nnlab.core.results_file import read_results, worst_value

T = TypeVar("T")
log = logging.getLogger(__name__)

# What a job folder keeps from an earlier attempt: Hydra writes .hydra/ and opens the log before
# the job starts (the log appends, so it keeps every attempt's lines); the run writes its config
# tree before reading any data; the run's lock (nnlab.core.paths). A refused run's folder holding
# only these is removed.
KEPT = (".hydra", "config_tree.txt", LOCK)
KEPT_SUFFIX = ".log"


def run(main: Callable[[DictConfig], T], cfg: DictConfig) -> T | float | None:
    """Calls main(cfg): in a single run, a user's mistake exits with one `error: …` line; in a
    multirun job, any failure is recorded and returns the worst value, so the sweep goes on.
    The config's `plugins` (the user's modules that register classes) are imported first.
    Either holds the lock of its folder while it runs: one run per folder."""
    main = with_plugins(main)
    if not in_multirun():
        return _single_run(main, cfg)
    return _multirun_job(main, cfg)


def with_plugins(main: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """main, after importing the modules of the config's `plugins` key
    (nnlab.core.components.import_plugins)."""

    def job(cfg: DictConfig) -> T:
        import_plugins(_select(cfg, "plugins"))
        return main(cfg)

    return job


def in_multirun() -> bool:
    """Whether this process runs a job of `-m` (a multirun), per Hydra."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def error_line(e: BaseException) -> str | None:
    """The message a user's mistake (or a divergence) is reported by; None for anything else,
    which is a bug and deserves its traceback."""
    if isinstance(e, MissingMandatoryValue):  # a `???` the command line did not set
        return f"{e.full_key} must be set, e.g. {e.full_key}=..."
    if isinstance(e, InstantiationException) and isinstance(e.__cause__, ConfigError):
        return str(e.__cause__)  # Hydra wraps what a constructor raises
    if isinstance(e, ConfigError | DataUnavailableError | FileNotFoundError | Diverged):
        return str(e)
    full = write_limit(e)
    if full is not None:
        where = f"cannot write {full.filename}" if full.filename else "a file could not be written"
        return f"{where}: {full.strerror}{WRITE_LIMITS[full.errno]}"
    return None


# Writes that fail for want of room, not for a bug: what a user is told to look at.
WRITE_LIMITS = {
    errno.EFBIG: " (the file-size limit of this shell: `ulimit -f`)",
    errno.ENOSPC: " (free some space on that disk, or write elsewhere: paths.log_dir)",
    errno.EDQUOT: " (your disk quota is used up)",
}


def write_limit(e: BaseException) -> OSError | None:
    """The OSError behind `e` (itself, or what it was raised from) that says a file could not
    grow: a file-size limit, a full disk, a quota; None otherwise."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_LIMITS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _single_run(main: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    folder = output_dir(cfg)
    if folder is not None:
        try:
            lock_folder(folder)  # taken already by the run's Hydra callback (FoldersCheck)
        except ConfigError as e:  # another run's folder: left as it is
            raise SystemExit(f"error: {e}") from None
    try:
        return main(cfg)
    except Exception as e:
        line = error_line(e)
        if line is None:
            raise
        if not isinstance(e, Diverged):  # a diverged run keeps its folder: results.json says so
            remove_if_untouched(folder)
        raise SystemExit(f"error: {line}") from None
    finally:
        if folder is not None:
            unlock_folder(folder)


def _multirun_job(main: Callable[[DictConfig], T], cfg: DictConfig) -> T | float | None:
    folder = output_dir(cfg)
    if folder is None:
        return _locked_job(main, cfg, folder)
    try:
        lock_folder(folder, "job folder")
    except ConfigError as e:  # another process runs in this job's folder: left as it is
        log.error("error: %s", e)
        mode = optimized_mode(cfg)
        return None if mode is None else worst_value(mode)
    try:
        return _locked_job(main, cfg, folder)
    finally:
        unlock_folder(folder)


def _locked_job(main: Callable[[DictConfig], T], cfg: DictConfig, folder: Path | None) -> Any:
    overrides = job_overrides()
    done = earlier_attempt(folder, overrides) if folder else None
    if done is not None:
        log.info("skipped: done in an earlier run (%s)", folder)
        return _number(done.get("value"))
    start = time.perf_counter()
    try:
        return main(cfg)
    except Exception as e:
        line = error_line(e)
        if line is None:  # not a mistake a user made: a bug, whose traceback goes to the log
            log.exception("this job failed with an unexpected error")
            line = f"{type(e).__name__}: {e}"
        line = " ".join(line.split())  # one line in the table, whatever the message
        log.error("error: %s", line)
        mode = optimized_mode(cfg)
        # Unknown (refused before the task, so the metric, was known; no sweeper direction):
        # null, not an infinity that might be the best value for the metric nobody named.
        worst = None if mode is None else worst_value(mode)
        if not isinstance(e, Diverged) and folder:  # train recorded a divergence itself
            _write_failed(cfg, folder, line, worst, mode, overrides, time.perf_counter() - start)
        return worst


def output_dir(cfg: DictConfig) -> Path | None:
    """This run's folder: Hydra's output_dir, else the config's paths.output_dir."""
    folder = None
    if HydraConfig.initialized():
        folder = OmegaConf.select(
            HydraConfig.get(), "runtime.output_dir", throw_on_missing=False, default=None
        )
    folder = folder or _select(cfg, "paths.output_dir")
    return Path(folder) if folder else None


def job_overrides() -> list[str]:
    """This job's command-line overrides ("k=v"), as .hydra/overrides.yaml lists them."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def _select(cfg: DictConfig, key: str) -> Any:
    """cfg's value at `key`, or None when it is missing or cannot be resolved (a failed job's
    config may be the very thing that is broken)."""
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    except Exception:
        return None


def optimized_mode(cfg: DictConfig) -> str | None:
    """max or min for the optimized metric: the config's optimized_mode, else known from the
    metric's name, else the Optuna sweeper's direction, else None (not known)."""
    mode = _select(cfg, "optimized_mode")
    if mode in ("min", "max"):
        return mode
    metric = _select(cfg, "optimized_metric")
    if metric:
        from nnlab.tasks.metrics import metric_mode  # imports torch: only when a job failed

        try:
            return metric_mode(str(metric))
        except ConfigError:
            pass
    direction = OmegaConf.select(HydraConfig.get(), "sweeper.direction", default=None)
    if direction is not None and not isinstance(direction, str):
        direction = direction[0]  # multi-objective: its first objective
    if direction is None:
        return None
    return "max" if str(direction).lower().startswith("max") else "min"


def _write_failed(
    cfg: DictConfig,
    folder: Path,
    line: str,
    worst: float | None,
    mode: str | None,
    overrides: list[str],
    wall_time_s: float,
) -> None:
    from nnlab.results import write_results  # imports torch: only when a job failed

    write_results(
        folder,
        {
            "status": "failed",
            "error": line,
            "value": worst,
            "optimized_metric": _select(cfg, "optimized_metric"),
            "optimized_mode": mode,
            "val": {},
            "test": {},
            "epochs": None,
            "seed": _select(cfg, "seed"),
            "choices": hydra_choices(),
            "wall_time_s": round(wall_time_s, 3),
            "overrides": overrides,
            "output_dir": str(folder),
        },
    )


def earlier_attempt(folder: Path, overrides: list[str]) -> dict[str, Any] | None:
    """What an earlier launch into this job's folder left: its results when it finished this
    same job (same overrides), which is then skipped; otherwise None, after removing its files
    so that this attempt starts clean (with a warning when they were another job's: a
    different command run into the same sweep folder)."""
    results = read_results(folder)
    same = results is not None and results.get("overrides") == overrides
    if same and results.get("status") == "done":
        return results
    if results is not None and not same:
        earlier = " ".join(str(o) for o in results.get("overrides") or [])
        log.warning("%s held another job's results (%s): replacing them", folder, earlier)
    elif results is not None:
        log.info("rerunning this job: %s in an earlier run", results.get("status"))
    clear_attempt(folder)
    return None


def _leftovers(folder: Path) -> list[Path]:
    """What a run folder holds besides Hydra's .hydra/ and the logs."""
    if not folder.is_dir():
        return []
    kept = (p for p in folder.iterdir() if p.name not in KEPT and p.suffix != KEPT_SUFFIX)
    return [p for p in kept if not _empty_folder(p)]


def _empty_folder(path: Path) -> bool:
    """Whether `path` is a folder holding nothing but (empty) folders: a run that failed before
    writing into checkpoints/ left nothing there."""
    if path.is_symlink() or not path.is_dir():
        return False
    return all(_empty_folder(p) for p in path.iterdir())


def clear_attempt(folder: Path) -> None:
    """Removes an earlier attempt's files from a job folder (checkpoints, metrics, results), so
    that the new attempt writes best.ckpt again rather than best-v1.ckpt beside the old one."""
    sweep_dir = OmegaConf.select(HydraConfig.get(), "sweep.dir", default=None)
    # Never a folder that is not strictly inside the sweep folder (a hydra.sweep.subdir of ".").
    if not sweep_dir or Path(sweep_dir).resolve() not in folder.resolve().parents:
        return
    leftovers = _leftovers(folder)
    if leftovers:
        names = ", ".join(sorted(p.name for p in leftovers))
        log.info("removing an earlier attempt's files from %s: %s", folder, names)
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_if_untouched(folder: Path | None) -> None:
    """Removes a run folder that holds nothing but Hydra's .hydra/ and the logs: a refused input
    leaves nothing behind."""
    if folder and folder.is_dir() and not _leftovers(folder):
        shutil.rmtree(folder, ignore_errors=True)


def _number(value: Any) -> float | None:
    """A value read back from results.json ("inf", "-inf" and "nan" are written as strings)."""
    return float(value) if isinstance(value, int | float | str) else None
