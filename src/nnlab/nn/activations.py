"""One registry maps an activation's name (the file name in configs/activation/) to a layer.

Maxout is not an elementwise function: it changes the layer before it, so the network builder
asks for it through `Maxout` rather than `create_activation`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnlab.core import ConfigError


class Abs(nn.Module):
    """The absolute-value rectifier f(x) = |x|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


class Maxout(nn.Module):
    """`out_features` units, each the max over `k` affine maps of the input (Goodfellow 2013)."""

    def __init__(self, in_features: int, out_features: int, k: int = 2) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"activation.k: maxout needs k >= 1 pieces, got {k}")
        self.out_features, self.k = out_features, k
        # Piece j of unit i is row i*k + j, so a reshape to (..., out, k) groups each unit's pieces.
        self.linear = nn.Linear(in_features, out_features * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return z.view(*z.shape[:-1], self.out_features, self.k).amax(dim=-1)


def _prelu(init: float = 0.25, per_unit: bool = False, width: int = 1) -> nn.Module:
    return nn.PReLU(num_parameters=width if per_unit else 1, init=init)


# name -> factory(**options, width=...) ; `width` is the layer's number of units.
ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "identity": lambda width=None: nn.Identity(),
    "sigmoid": lambda width=None: nn.Sigmoid(),
    "tanh": lambda width=None: nn.Tanh(),
    "relu": lambda width=None: nn.ReLU(),
    "leaky_relu": lambda negative_slope=0.01, width=None: nn.LeakyReLU(negative_slope),
    "prelu": _prelu,
    "elu": lambda alpha=1.0, width=None: nn.ELU(alpha),
    "softplus": lambda width=None: nn.Softplus(),
    "abs": lambda width=None: Abs(),
    "maxout": None,  # built by the network as a Maxout layer; see nnlab.nn.networks
}


def split_config(cfg: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """An activation config ({name: ..., **options}) as (name, options), checked."""
    cfg = dict(cfg or {"name": "identity"})
    name = cfg.pop("name", None)
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return name, cfg


def create_activation(cfg: dict[str, Any] | None, width: int) -> nn.Module:
    """A fresh activation layer for a hidden layer of `width` units."""
    name, options = split_config(cfg)
    if name == "maxout":
        raise ValueError("maxout is a layer, not an elementwise activation: build it with Maxout")
    return ACTIVATIONS[name](**options, width=width)
