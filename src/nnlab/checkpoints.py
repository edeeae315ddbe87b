"""Reading checkpoints and checking a resume: which file a run resumes from, its contents read
safely (weights only), the task module class that wrote it, and refusals of a resume whose
network, optimizer or data differ from the run's."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab.core import ConfigError

log = logging.getLogger(__name__)

# ckpt_path values that Trainer.fit resolves itself.
LIGHTNING_CKPT_NAMES = ("last", "hpc", "registry")
# The checkpoint key under which a task module records its class (TaskModule.on_save_checkpoint).
MODULE_KEY = "nnlab_module"


def local_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint file a run resumes from, or None: no ckpt_path, or one that Lightning
    resolves itself (its names such as "last", remote URLs)."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or ckpt_path in LIGHTNING_CKPT_NAMES or "://" in str(ckpt_path):
        return None
    return str(ckpt_path)


def module_class_path(checkpoint: dict[str, Any]) -> str:
    """The dotted class path stored in a checkpoint written by a TaskModule."""
    try:
        return checkpoint[MODULE_KEY]
    except KeyError:
        raise ConfigError("this checkpoint was not written by an nnlab task module") from None


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint file's contents, memory-mapped (tensors are not read unless used); a file
    that is not a checkpoint is a ConfigError naming it."""
    import torch

    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects
        raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {e}") from None


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
