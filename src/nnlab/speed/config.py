"""The speed config group (configs/speed): its one check (`check_speed`, run by
nnlab.validation.validate; everything else trusts the values) and what it refuses with other
groups (`check_anomaly`), the process-wide settings and Trainer options it implies
(`apply_speed`), the datamodule's share (`data_options`), and the garbage collector frozen while
fitting (`frozen_heap`). The fit's share (optimizer implementation, grouped and captured steps,
compilation) is applied by the FastPath callback (nnlab.speed.fastpath)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from nnlab.core import ConfigError, is_int
from nnlab.data.base import ArrayDataModule
from nnlab.speed.compiled import check_compile

log = logging.getLogger(__name__)


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
    for key in ("cuda_graph", "compile"):
        if not isinstance(speed.get(key, False), bool):
            fail(key, "true or false")
    seconds = speed.get("write_checkpoints_every_s", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        fail("write_checkpoints_every_s", "a number of seconds >= 0")
    sanity = speed.get("sanity_val_steps")
    if sanity is not None and not (is_int(sanity) and sanity >= -1):
        fail("sanity_val_steps", "null, -1 (all) or an int >= 0")


def uses_gpu(trainer_cfg: DictConfig) -> bool:
    """Whether a Trainer built from this config will train on a CUDA GPU."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def check_anomaly(cfg: DictConfig) -> None:
    """Refuses autograd anomaly detection (debug=anomaly) with a CUDA graph (speed=max on a
    GPU): its checks read the device, which a graph capture cannot do (measured: the capture
    fails), and a replay runs no autograd to check."""
    speed = cfg.get("speed") or {}
    if cfg.trainer.get("detect_anomaly") and speed.get("cuda_graph") and uses_gpu(cfg.trainer):
        raise ConfigError(
            "trainer.detect_anomaly (debug=anomaly) cannot check a step captured as a CUDA graph "
            "(speed.cuda_graph on a GPU): use speed=default, or speed.cuda_graph=false"
        )


def apply_speed(cfg: DictConfig) -> None:
    """Refuses speed.compile where it cannot run, sets torch's matmul precision and edits
    cfg.trainer for cfg.speed (before the Trainer is instantiated; after check_speed)."""
    speed = cfg.get("speed")
    if not speed:
        return
    check_compile(cfg, uses_gpu(cfg.trainer))
    torch.set_float32_matmul_precision(speed.get("matmul_precision", "highest"))
    with open_dict(cfg):
        if speed.get("sanity_val_steps") is not None:
            cfg.trainer.num_sanity_val_steps = int(speed.sanity_val_steps)
        gpu_precision = speed.get("gpu_precision")
        if gpu_precision and uses_gpu(cfg.trainer):
            if "bf16" in str(gpu_precision) and not torch.cuda.is_bf16_supported():
                log.warning(
                    "speed.gpu_precision=%s: this GPU lacks bf16; keeping fp32", gpu_precision
                )
            else:
                cfg.trainer.precision = gpu_precision


def data_options(cfg: DictConfig) -> dict[str, Any]:
    """The datamodule's constructor arguments from the speed group: where its splits live
    (`resident`). {} without a speed group, or for a datamodule that is not one of nnlab's
    (ArrayDataModule). Its batches are grouped from outside (nnlab.speed.FastPath)."""
    speed = cfg.get("speed")
    if not speed or not issubclass(get_class(cfg.data._target_), ArrayDataModule):
        return {}
    return {"resident": speed.get("resident", "auto")}


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Hides every object alive on entry from Python's cyclic garbage collector until exit.

    A training process holds ~400k long-lived objects (torch, Lightning, Hydra, the configs);
    each full collection scans them all: ~250 ms on the CPU machine, a stall in the middle of an
    epoch that comes back every few thousand steps. Frozen (gc.freeze), they are skipped. On
    exit they become collectable again, so that the next job of a multirun can free this one.
    """
    gc.collect()  # what is garbage now must not be frozen for good
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
