"""Reading checkpoints and checking a resume: which file a run resumes from (a URL is downloaded
into the cache first, so that it gets every check a local file gets), its contents read safely
(weights only: a checkpoint never runs code), the task module class that wrote it, and refusals
of a resume whose network, optimizer or data differ from the run's."""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import Any
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
    name = Path(urlparse(url).path).name or "checkpoint.ckpt"
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
    log.info("ckpt_path=%s downloaded to %s", url, path)
    return str(path)


def module_class_path(checkpoint: dict[str, Any]) -> str:
    """The dotted class path stored in a checkpoint written by a TaskModule."""
    try:
        return checkpoint[MODULE_KEY]
    except KeyError:
        raise ConfigError("this checkpoint was not written by an nnlab task module") from None


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint file's contents, memory-mapped (tensors are not read unless used); a file
    that is not a checkpoint is a ConfigError naming it."""
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


def check_resume(cfg: DictConfig, ckpt_path: str) -> dict[str, Any]:
    """Refuses to resume from a checkpoint whose network or optimizer differ from this run's
    configs (Lightning would fail loading the weights or the optimizer state, or go on with
    another network); `init` is not compared, since resumed weights are not initialized. Other
    optimizer options (lr) are warned about: Lightning restores the saved optimizer state.
    Returns the checkpoint's saved hyperparameters (its data spec for check_resume_data)."""
    checkpoint = read_checkpoint(ckpt_path)
    module_class_path(checkpoint)  # refuses a checkpoint not written by nnlab
    saved = checkpoint.get("hyper_parameters", {})
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
