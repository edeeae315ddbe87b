"""speed.compile: the network compiled with torch.compile (TorchDynamo + Inductor), in place
(`nn.Module.compile`: the parameters, their names in checkpoints and the results stay the same).
Off by default. It is refused, with one line, where it cannot run: together with a CUDA graph
(speed.cuda_graph on a GPU captures the step itself), on the CPU without the C++ compiler that
Inductor generates its kernels with, and where this torch/Python cannot compile at all."""

from __future__ import annotations

import os
import shutil

import torch
from omegaconf import DictConfig

from nnlab.core import ConfigError


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would build CPU kernels with: $CXX, else g++, clang++ or c++
    on PATH; None without one."""
    candidates = [os.environ.get("CXX"), "g++", "clang++", "c++"]
    return next((path for c in candidates if c and (path := shutil.which(c))), None)


def check_compile(cfg: DictConfig, gpu: bool) -> None:
    """Raises ConfigError where speed.compile=true cannot run (`gpu`: training on a CUDA GPU)."""
    speed = cfg.get("speed") or {}
    if not speed.get("compile"):
        return
    if gpu and speed.get("cuda_graph"):
        raise ConfigError(
            "speed.compile=true and speed.cuda_graph=true cannot both run on a GPU (the CUDA "
            "graph captures the whole step already): set speed.cuda_graph=false to compile "
            "(speed=max sets it), or speed.compile=false"
        )
    if not gpu and cxx_compiler() is None:
        raise ConfigError(
            "speed.compile=true on the CPU needs a C++ compiler for torch.compile's kernels "
            "and none was found (g++, clang++, c++ or $CXX): install one (e.g. apt-get install "
            "g++) or set speed.compile=false"
        )


def compile_network(net: torch.nn.Module) -> None:
    """Compiles `net`'s forward in place, once (torch.compile compiles at the first call);
    raises ConfigError where this torch or Python cannot compile."""
    if getattr(net, "nnlab_compiled", False):
        return
    try:
        net.compile()
    except RuntimeError as e:  # e.g. "Dynamo is not supported on Python 3.x"
        raise ConfigError(f"speed.compile=true cannot run here: {e}") from e
    net.nnlab_compiled = True
