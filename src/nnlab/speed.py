"""Applies the speed config group (configs/speed) to a composed run config: process-wide torch
settings and the Trainer options it implies. The module-side parts (optimizer implementation,
whole-step CUDA graph) are read by the task module from its `speed` hyperparameters."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)
MATMUL_PRECISIONS = ("highest", "high", "medium")


def uses_gpu(trainer_cfg: DictConfig) -> bool:
    """Whether a Trainer built from this config will train on a CUDA GPU."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def apply_speed(cfg: DictConfig) -> None:
    """Sets torch's matmul precision and edits cfg.trainer for cfg.speed (before the Trainer is
    instantiated)."""
    speed = cfg.get("speed")
    if not speed:
        return
    precision = speed.get("matmul_precision", "highest")
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(
            f"speed.matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)}, "
            f"got {precision!r}"
        )
    torch.set_float32_matmul_precision(precision)
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
