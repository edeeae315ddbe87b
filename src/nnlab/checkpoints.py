"""Reading, writing and moving checkpoints, and checking a resume: which file a run resumes from
(`ckpt_path=last` found among the runs; a URL downloaded into the cache first, so that it gets
every check a local file gets), its contents read safely (weights only: a checkpoint never runs
code), the task module class that wrote it, refusals of a resume whose network, optimizer or
data differ from the run's; files written atomically (never seen half-written, nothing left
behind by a kill), and a checkpoint callback's state moved into a new run folder."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import pooch
import requests
import torch
from omegaconf import DictConfig, OmegaConf

from nnlab.core import ConfigError

log = logging.getLogger(__name__)

# ckpt_path values that Trainer.fit resolves itself.
LIGHTNING_CKPT_NAMES = ("last", "hpc", "registry")
# The checkpoint key under which a task module records its class (TaskModule.on_save_checkpoint).
MODULE_KEY = "nnlab_module"


# Schemes a ckpt_path URL may use; anything else with "://" is refused by name.
URL_SCHEMES = ("http", "https")
# Seconds without a byte before a checkpoint download counts as dead.
TIMEOUT_S = 60


def is_url(ckpt_path: Any) -> bool:
    """Whether a ckpt_path names a remote file rather than a local one."""
    return "://" in str(ckpt_path)


def local_checkpoint(cfg: DictConfig) -> str | None:
    """The local checkpoint file a run resumes from, or None: no ckpt_path, one that Lightning
    resolves itself (its names such as "last"), or a URL not downloaded yet (see
    `download_checkpoint`)."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or ckpt_path in LIGHTNING_CKPT_NAMES or is_url(ckpt_path):
        return None
    return str(ckpt_path)


def resolve_last_checkpoint(cfg: DictConfig) -> None:
    """Replaces ckpt_path=last by the latest run's last.ckpt: this run's own
    `checkpoints/last.ckpt` when its folder is an earlier run's (hydra.run.dir=<that run>), else
    the most recently written `<run>/checkpoints/last.ckpt` among the runs under
    `<paths.log_dir>/<task_name>/runs/`. The file found is then checked like any ckpt_path; none
    found is a ConfigError. (Lightning's own "last" looks in this run's folder only: a new run
    would start afresh, with a mere warning.) Other values stay."""
    if cfg.get("ckpt_path") != "last":
        return
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    runs = Path(cfg.paths.log_dir) / str(cfg.task_name) / "runs"
    if own.is_file():
        found = own
    else:
        written = sorted((p.stat().st_mtime, str(p)) for p in runs.glob("*/checkpoints/last.ckpt"))
        if not written:
            raise ConfigError(
                f"ckpt_path=last: there is no checkpoints/last.ckpt in this run's folder nor in "
                f"any run under {runs}: give the checkpoint file (ckpt_path=<run>/checkpoints/"
                "last.ckpt), or start a new run (ckpt_path=null)"
            )
        found = Path(written[-1][1])
    cfg.ckpt_path = str(found)
    log.info("ckpt_path=last: resuming from %s", found)


def fetch_checkpoint_url(cfg: DictConfig) -> None:
    """Replaces a URL ckpt_path by the downloaded file (`download_checkpoint`, into
    `paths.data_dir`, checked against `ckpt_sha256` when given); other values stay."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and is_url(ckpt_path):
        cfg.ckpt_path = download_checkpoint(
            str(ckpt_path), cfg.paths.data_dir, cfg.get("ckpt_sha256")
        )


def download_checkpoint(url: str, cache_dir: str | Path, sha256: str | None = None) -> str:
    """Downloads a checkpoint URL into `<cache_dir>/checkpoints/` and returns the local file,
    which then gets the checks any local ckpt_path gets (read with weights only, nnlab's own,
    same network and data). With `sha256` the file must have that hash (a cached copy that has
    it is reused); without, the URL is fetched again each time (its content may change). A
    failed or mismatched download leaves nothing behind."""
    scheme = urlparse(url).scheme
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"ckpt_path={url}: {scheme}:// is not supported; use a local file or an "
            f"{' or '.join(URL_SCHEMES)} URL"
        )
    name = Path(urlparse(url).path).name
    if name in ("", ".", ".."):  # /x/.. : a file needs a name of its own in the cache
        name = "checkpoint.ckpt"
    # One folder per URL, so that two URLs ending in the same file name do not collide.
    folder = Path(cache_dir) / "checkpoints" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if sha256 is None:
        (folder / name).unlink(missing_ok=True)
    try:
        path = pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256.lower()}" if sha256 else None,
            fname=name,
            path=folder,
            downloader=pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT_S),
        )
    except ValueError as e:  # pooch: hash mismatch; it has deleted the download already
        raise ConfigError(f"ckpt_path={url}: {str(e).splitlines()[0]}") from None
    except requests.RequestException as e:
        raise ConfigError(f"ckpt_path={url} cannot be downloaded: {e}") from None
    except OSError as e:  # the cache folder cannot be written
        raise ConfigError(f"ckpt_path={url} cannot be saved in {folder}: {e}") from None
    log.info("ckpt_path=%s downloaded to %s", url, path)
    return str(path)


def check_is_file(ckpt_path: str) -> None:
    """Refuses a ckpt_path that is a folder (naming the checkpoint inside it, if it holds
    one) or that does not exist."""
    path = Path(ckpt_path)
    if path.is_dir():
        inside = [path / name for name in ("checkpoints/best.ckpt", "best.ckpt", "last.ckpt")]
        found = next((str(p) for p in inside if p.is_file()), None)
        hint = f"did you mean ckpt_path={found}?" if found else "give a .ckpt file"
        raise ConfigError(f"ckpt_path={ckpt_path} is a folder, not a checkpoint file: {hint}")
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such file")


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint file's contents, memory-mapped (tensors are not read unless used); a folder,
    a missing file or a file that is not a checkpoint is an error naming it. What it holds is
    checked by nnlab.tasks.loading before anything of it is built."""
    check_is_file(ckpt_path)
    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        # torch's weights-only unpickler met a global it does not allow: loading it fully
        # could run any code, so it is not loaded at all.
        reason = "it holds pickled Python objects that could run code, refused unread"
    except (RuntimeError, OSError, EOFError, ValueError) as e:  # truncated, or not a torch file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = f"truncated, damaged or not a PyTorch file ({first})"
    raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {reason}")


def check_resume(
    cfg: DictConfig, ckpt_path: str, read_checked: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """Refuses to resume from a checkpoint that `read_checked` refuses (nnlab.tasks.loading's:
    nothing but nnlab's classes named, finite weights), or whose network or optimizer differ
    from this run's
    configs (Lightning would fail loading the weights or the optimizer state, or go on with
    another network); `init` is not compared, since resumed weights are not initialized. Other
    optimizer options (lr) are warned about: Lightning restores the saved optimizer state.
    Returns the checkpoint's saved hyperparameters (its data spec for check_resume_data)."""
    checkpoint = read_checked(ckpt_path)
    saved = checkpoint["hyper_parameters"]
    current = OmegaConf.to_container(cfg, resolve=True)
    old_model, new_model = dict(saved.get("model") or {}), dict(current.get("model") or {})
    old_opt, new_opt = dict(saved.get("optimizer") or {}), dict(current.get("optimizer") or {})
    old_model.pop("init", None), new_model.pop("init", None)
    refusals = [("model", k) for k in sorted(set(old_model) | set(new_model))]
    for group, key in [*refusals, ("optimizer", "_target_")]:
        old, new = (old_model, new_model) if group == "model" else (old_opt, new_opt)
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"ckpt_path={ckpt_path} was trained with {group}.{key}={old.get(key)!r}, "
                f"this run has {new.get(key)!r}: resume with the checkpoint's {group}, or "
                "start a new run (ckpt_path=null)"
            )
    changed = [k for k in sorted(set(old_opt) | set(new_opt)) if old_opt.get(k) != new_opt.get(k)]
    if changed:
        log.warning(
            "resuming restores the checkpoint's optimizer state: %s as saved in it (%s), not as "
            "configured (%s)",
            ", ".join(f"optimizer.{k}" for k in changed),
            ", ".join(f"{old_opt.get(k)!r}" for k in changed),
            ", ".join(f"{new_opt.get(k)!r}" for k in changed),
        )
    return saved


def check_resume_data(ckpt_path: str, saved: dict[str, Any], spec: dict[str, Any]) -> None:
    """Refuses to resume from a checkpoint (`saved`: its hyperparameters, from check_resume)
    trained on data of another shape or task (`spec`: this run's DataSpec as a dict)."""
    if saved.get("spec") is not None and saved["spec"] != spec:
        raise ConfigError(
            f"ckpt_path={ckpt_path} was trained on data with {saved['spec']}; this run's data "
            f"gives {spec}: resume on the same data, or start a new run (ckpt_path=null)"
        )


# Temporary files of checkpoint writes (save_atomically where the file system has no unnamed
# files): `.<name>.<pid>.tmp` beside the file being written.
TEMP_FILE = re.compile(r"^\..+\.\d+\.tmp$")


def save_atomically(checkpoint: dict[str, Any], path: str) -> None:
    """Writes a checkpoint so that `path` is never seen half-written, and a process killed while
    writing leaves nothing behind: see `write_atomically`."""
    write_atomically(path, lambda file: torch.save(checkpoint, file))


def copy_atomically(source: str, path: str) -> None:
    """Copies the file `source` to `path` as `write_atomically` writes it."""

    def copy(file: IO[bytes]) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, file)

    write_atomically(path, copy)


def write_atomically(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Writes a file by `write(file)` into a temporary file in the folder of `path`, renamed over
    `path` when complete (os.replace: atomic on one file system). On Linux the temporary file
    has no name until it is complete (O_TMPFILE): a process killed while writing leaves nothing.
    Then, or from the start where the file system has no unnamed files, it is
    `.<name>.<pid>.tmp`, which only a kill leaves behind (until `remove_leftovers`). Nothing
    goes through $TMPDIR: fsspec, which Lightning's own checkpoint writes use, writes the whole
    file there first and leaves it there when the process is killed; and where $TMPDIR is
    another file system, its final move is a copy that a kill leaves half-written at `path`."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    named = not _write_unnamed(folder, temp, write)
    try:
        if named:
            with open(temp, "wb") as file:
                write(file)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _write_unnamed(folder: str, temp: str, write: Callable[[IO[bytes]], Any]) -> bool:
    """Writes a file by `write(file)` unnamed in `folder` (O_TMPFILE), then names it `temp`;
    False where that cannot be done (not Linux, no such file system support, no /proc)."""
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666)
    except (AttributeError, OSError):
        return False
    with os.fdopen(fd, "wb") as file:
        write(file)
        file.flush()
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)  # a leftover of a killed process that had this pid
            # linkat(AT_SYMLINK_FOLLOW) of /proc's link to the file: os.link takes that
            # call, rather than link(), when given a folder's descriptor.
            os.link(f"/proc/self/fd/{fd}", os.path.basename(temp), dst_dir_fd=folder_fd)
        except OSError:
            return False
        finally:
            os.close(folder_fd)
    return True


def remove_leftovers(folder: str | Path) -> list[str]:
    """Removes from `folder` the temporary files that checkpoint writes killed midway left
    (named `.<name>.<pid>.tmp`, see write_atomically); returns their names."""
    try:
        names = [name for name in os.listdir(folder) if TEMP_FILE.match(name)]
    except FileNotFoundError:
        return []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, name))
    if names:
        log.info(
            "removed %d partial checkpoint file(s) left by a killed run in %s", len(names), folder
        )
    return names


def moved_state(
    state: dict[str, Any], dirpath: str, mode: str, copy: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """A ModelCheckpoint's state saved in another folder (its "dirpath"), moved to `dirpath`, and
    the files it named that are lost. Each file it names in its old folder (the top-k and best
    checkpoints, last.ckpt) is copied into `dirpath` (atomically; only where `copy`: rank 0)
    and named there, so that a run resumed in a new folder keeps the best checkpoint so far
    and its score, as an uninterrupted run would. A file missing from the old folder but
    present under its name in `dirpath` is taken as that file (a run folder moved or copied
    elsewhere). A file found in neither, or not named `*.ckpt` (a checkpoint is data: its state
    never makes a resume copy another file), is lost: dropped from the state, the best and the k-th
    best (`mode`: "min" or "max") then being those of the files that remain."""
    old = state.get("dirpath")
    lost: list[str] = []
    moved: dict[str, str | None] = {}

    def move(path: str | None) -> str | None:
        if not path or os.path.dirname(path) != old:
            return path  # not a file of the old folder: named as it was
        if path not in moved:
            new = os.path.join(dirpath, os.path.basename(path))
            if not path.endswith(".ckpt"):  # a crafted state naming any file: never copied
                lost.append(path)
                new = None
            elif os.path.isfile(path):
                if copy:
                    copy_atomically(path, new)
            elif not os.path.isfile(new):
                lost.append(path)
                new = None
            moved[path] = new
        return moved[path]

    best_k = {move(path): score for path, score in (state.get("best_k_models") or {}).items()}
    best_k.pop(None, None)
    new_state = {
        **state,
        "dirpath": dirpath,
        "best_k_models": best_k,
        "best_model_path": move(state.get("best_model_path")),
        "kth_best_model_path": move(state.get("kth_best_model_path")),
        "last_model_path": move(state.get("last_model_path")) or "",
    }
    ranked = sorted(best_k, key=lambda path: float(best_k[path]), reverse=mode == "max")
    if new_state["best_model_path"] is None:
        new_state["best_model_path"] = ranked[0] if ranked else ""
        new_state["best_model_score"] = best_k[ranked[0]] if ranked else None
    if new_state["kth_best_model_path"] is None:
        new_state["kth_best_model_path"] = ranked[-1] if ranked else ""
        worst = torch.tensor(float("inf") if mode == "min" else float("-inf"))
        new_state["kth_value"] = best_k[ranked[-1]] if ranked else worst
    return new_state, lost
