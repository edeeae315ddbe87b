"""The initializer registry: an initializer's name (the file name in configs/init/) maps to a
function that fills a layer's weights, scaled by the gain of the activation that follows the
layer (nnlab.nn.activations.gain, re-exported here) so that activation variance stays flat over
depth. Every initializer also takes `bias`, the biases' starting value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnlab.core import ConfigError
from nnlab.core.arguments import fits
from nnlab.core.registry import Entry, Registry
from nnlab.nn.activations import gain

__all__ = ["INITIALIZERS", "Initializer", "gain", "init_linear"]


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    return fan_in, fan_out


def _zeros(w: torch.Tensor, gain: float) -> None:
    nn.init.zeros_(w)


def _constant(w: torch.Tensor, gain: float, value: float = 0.01) -> None:
    nn.init.constant_(w, value)


def _normal(w: torch.Tensor, gain: float, std: float = 0.01) -> None:
    if std < 0:
        raise ConfigError(f"init.std must be >= 0, got {std}")
    nn.init.normal_(w, 0.0, std)


def _lecun_normal(w: torch.Tensor, gain: float) -> None:
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(_fans(w)[0]))


def _xavier_normal(w: torch.Tensor, gain: float) -> None:
    nn.init.xavier_normal_(w, gain=gain)


def _xavier_uniform(w: torch.Tensor, gain: float) -> None:
    nn.init.xavier_uniform_(w, gain=gain)


def _fan(w: torch.Tensor, mode: str) -> int:
    fan_in, fan_out = _fans(w)
    if mode not in ("fan_in", "fan_out"):
        raise ConfigError(f"init.mode must be fan_in or fan_out, got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def _kaiming_normal(w: torch.Tensor, gain: float, mode: str = "fan_in") -> None:
    nn.init.normal_(w, 0.0, gain / math.sqrt(_fan(w, mode)))


def _kaiming_uniform(w: torch.Tensor, gain: float, mode: str = "fan_in") -> None:
    bound = gain * math.sqrt(3.0 / _fan(w, mode))
    nn.init.uniform_(w, -bound, bound)


def _default(layer: nn.Linear) -> None:
    layer.reset_parameters()


@dataclass(frozen=True, kw_only=True)
class Initializer(Entry):
    """An initializer: its factory fills a layer's weight matrix `w`, scaled by `gain`, or
    with passed_in=("layer",) the whole `layer`."""

    passed_in: tuple[str, ...] = ("w", "gain")
    # The biases' value when the config sets none; None keeps what the factory gave them.
    bias: float | None = 0.0


INITIALIZERS: Registry[Initializer] = Registry(
    "init",
    [
        # The layer's own reset_parameters(), weights and biases.
        Initializer(name="default", factory=_default, passed_in=("layer",), bias=None),
        Initializer(name="zeros", factory=_zeros),
        Initializer(name="constant", factory=_constant),
        Initializer(name="normal", factory=_normal),
        Initializer(name="lecun_normal", factory=_lecun_normal),
        Initializer(name="xavier_normal", factory=_xavier_normal),
        Initializer(name="xavier_uniform", factory=_xavier_uniform),
        Initializer(name="kaiming_normal", factory=_kaiming_normal),
        Initializer(name="kaiming_uniform", factory=_kaiming_uniform),
    ],
    default="default",
    shared=("bias",),
)


def init_linear(layer: nn.Linear, init: str | dict[str, Any] | None, gain: float = 1.0) -> None:
    """Initialise `layer` in place from an init config (a name, or {name, bias, **options})."""
    entry, options = INITIALIZERS.parse(init)
    bias = options.pop("bias", entry.bias)
    if bias is not None and not fits(bias, float):
        raise ConfigError(f"init.bias must be a number, got {bias!r}")
    with torch.no_grad():
        entry.build(options, layer=layer, w=layer.weight, gain=gain)
        if bias is not None and layer.bias is not None:
            layer.bias.fill_(bias)
