"""The initializer registry: an initializer's name (the file name in configs/init/) maps to a
function that fills a layer's weights. Every initializer also takes `bias`, the biases'
starting value.

Gains follow the course. Xavier/Glorot is the plain formula, Var = 2 / (fan_in + fan_out)
(Glorot & Bengio 2010; not PyTorch's default, which `default` keeps: nn.Linear draws weights and
biases from U(±1/√fan_in), as the course says): derived for activations that are linear around 0
(tanh), it lets ReLU activations shrink over depth. Kaiming/He is Var = gain² / fan with the
gain of the activation that follows the layer (nnlab.nn.activations.gain, re-exported here):
gain² = 2 for ReLU, which keeps activation variance flat over depth. Both take `gain`: a
number, or `auto` for the activation's gain (Xavier's default is 1, Kaiming's `auto`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from nnlab.core import ConfigError
from nnlab.core.arguments import fits
from nnlab.core.registry import Entry, Registry
from nnlab.nn.activations import gain

__all__ = ["INITIALIZERS", "Initializer", "gain", "init_linear", "kaiming_std", "xavier_std"]


def _fans(w: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: (out, in) for a linear layer; for a convolution's
    (out, in, kh, kw) each kernel tap counts, fan_in = in·kh·kw and fan_out = out·kh·kw (as
    torch.nn.init counts them)."""
    fan_in = w[0].numel()  # the inputs one unit sums over
    fan_out = w.numel() // w.shape[1]  # the units one input feeds
    return fan_in, fan_out


def _zeros(w: torch.Tensor) -> None:
    nn.init.zeros_(w)


def _constant(w: torch.Tensor, value: float = 0.01) -> None:
    nn.init.constant_(w, value)


def _normal(w: torch.Tensor, std: float = 0.01) -> None:
    if std < 0:
        raise ConfigError(f"init.std must be >= 0, got {std}")
    nn.init.normal_(w, 0.0, std)


def _lecun_normal(w: torch.Tensor) -> None:
    fan_in, _ = _fans(w)
    std = 1.0 / math.sqrt(fan_in)  # Var(w) = 1/d: the "constant variance 1/d" of the course
    nn.init.normal_(w, 0.0, std)


# An init config's `gain`: a number, or "auto" for the gain of the layer's activation.
Gain = float | Literal["auto"]


def _scale(gain: Gain, activation_gain: float) -> float:
    if gain == "auto":
        return activation_gain
    if not gain > 0:
        raise ConfigError(f"init.gain must be > 0 or auto, got {gain}")
    return float(gain)


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Xavier/Glorot's weight std: gain · √(2 / (fan_in + fan_out))."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_std(fan: int, gain: float) -> float:
    """Kaiming/He's weight std: gain / √fan (gain √2 for ReLU: Var(w) = 2 / fan_in)."""
    return gain / math.sqrt(fan)


def _xavier_normal(w: torch.Tensor, activation_gain: float, gain: Gain = 1.0) -> None:
    fan_in, fan_out = _fans(w)
    std = xavier_std(fan_in, fan_out, gain=_scale(gain, activation_gain))
    nn.init.normal_(w, 0.0, std)  # w ~ N(0, gain² · 2 / (fan_in + fan_out))


def _xavier_uniform(w: torch.Tensor, activation_gain: float, gain: Gain = 1.0) -> None:
    fan_in, fan_out = _fans(w)
    std = xavier_std(fan_in, fan_out, gain=_scale(gain, activation_gain))
    bound = math.sqrt(3.0) * std  # U(−a, a) has variance a²/3: the same variance as above
    nn.init.uniform_(w, -bound, bound)


def _fan(w: torch.Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ConfigError(f"init.mode must be fan_in or fan_out, got {mode!r}")
    fan_in, fan_out = _fans(w)
    return fan_in if mode == "fan_in" else fan_out


def _kaiming_normal(
    w: torch.Tensor, activation_gain: float, mode: str = "fan_in", gain: Gain = "auto"
) -> None:
    std = kaiming_std(_fan(w, mode), _scale(gain, activation_gain))
    nn.init.normal_(w, 0.0, std)  # w ~ N(0, gain² / fan): 2 / fan_in for ReLU


def _kaiming_uniform(
    w: torch.Tensor, activation_gain: float, mode: str = "fan_in", gain: Gain = "auto"
) -> None:
    std = kaiming_std(_fan(w, mode), _scale(gain, activation_gain))
    bound = math.sqrt(3.0) * std  # U(−a, a) has variance a²/3
    nn.init.uniform_(w, -bound, bound)


def _default(layer: nn.Linear) -> None:
    layer.reset_parameters()


@dataclass(frozen=True, kw_only=True)
class Initializer(Entry):
    """An initializer: its factory fills a layer's weight matrix `w` (told the gain of the
    activation after the layer, for those that scale by it), or with passed_in=("layer",) the
    whole `layer`."""

    passed_in: tuple[str, ...] = ("w",)
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
        *(
            Initializer(name=name, factory=factory, passed_in=("w", "activation_gain"))
            for name, factory in [
                ("xavier_normal", _xavier_normal),
                ("xavier_uniform", _xavier_uniform),
                ("kaiming_normal", _kaiming_normal),
                ("kaiming_uniform", _kaiming_uniform),
            ]
        ),
    ],
    default="default",
    shared=("bias",),
)


def init_linear(layer: nn.Linear, init: str | dict[str, Any] | None, gain: float = 1.0) -> None:
    """Initialise `layer` in place from an init config (a name, or {name, bias, **options});
    `gain` is the gain of the activation after the layer (1 for a linear output)."""
    entry, options = INITIALIZERS.parse(init)
    bias = options.pop("bias", entry.bias)
    if bias is not None and not fits(bias, float):
        raise ConfigError(f"init.bias must be a number, got {bias!r}")
    with torch.no_grad():
        entry.build(options, layer=layer, w=layer.weight, activation_gain=gain)
        if bias is not None and layer.bias is not None:
            layer.bias.fill_(bias)
