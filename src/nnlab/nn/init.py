"""Weight initializers by name (the file names in configs/init/), with gains that follow the
activation so that activation variance stays flat over depth.

Gain: for the activations PyTorch knows (identity, sigmoid, tanh, ReLU, leaky ReLU/PReLU) we use
`torch.nn.init.calculate_gain`, so the numbers match the literature and PyTorch. For the others
(ELU, softplus, |x|, maxout) we use the definition behind He et al.: gain² = 1 / E[f(z)²] with
z ~ N(0, 1), which gives exactly 2 for ReLU; the expectation is computed by quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnlab.core import ConfigError
from nnlab.nn.activations import create_activation, split_config


def _second_moment(
    f: Callable[[torch.Tensor], torch.Tensor],
    density_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """E[f(z)²] for z ~ N(0, 1), by the trapezoid rule on [−12, 12]."""
    # On the CPU whatever the default device (networks are also built on "meta" to check them).
    z = torch.linspace(-12.0, 12.0, 200_001, dtype=torch.float64, device="cpu")
    density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    if density_weight is not None:
        density = density * density_weight(z)
    return torch.trapezoid(f(z) ** 2 * density, z).item()


def _maxout_density_weight(k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    # The max of k iid N(0,1) has density k·φ(z)·Φ(z)^(k−1).
    return lambda z: k * (0.5 * (1 + torch.erf(z / math.sqrt(2)))) ** (k - 1)


def gain(activation: dict[str, Any] | None) -> float:
    """The weight-scale gain for layers followed by `activation` (an activation config)."""
    name, options = split_config(activation)
    if name == "identity":
        return 1.0
    if name in ("sigmoid", "tanh", "relu"):
        return nn.init.calculate_gain(name)
    if name == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", options.get("negative_slope", 0.01))
    if name == "prelu":
        return nn.init.calculate_gain("leaky_relu", options.get("init", 0.25))
    if name == "maxout":
        k = options.get("k", 2)
        return 1.0 / math.sqrt(_second_moment(lambda z: z, _maxout_density_weight(k)))
    layer = create_activation(activation, width=1).double()
    with torch.no_grad():
        return 1.0 / math.sqrt(_second_moment(layer))


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


# name -> fn(weight, gain, **options)
INITIALIZERS: dict[str, Callable[..., None] | None] = {
    "default": None,  # the layer's own reset_parameters(), weights and bias
    "zeros": _zeros,
    "constant": _constant,
    "normal": _normal,
    "lecun_normal": _lecun_normal,
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
    "kaiming_normal": _kaiming_normal,
    "kaiming_uniform": _kaiming_uniform,
}


def check_config(init: dict[str, Any] | None) -> tuple[str, dict[str, Any], float | None]:
    """An init config as (name, weight options, bias value or None for PyTorch's), checked."""
    options = dict(init or {"name": "default"})
    name = options.pop("name", None)
    if name not in INITIALIZERS:
        raise ConfigError(f"unknown init {name!r}; valid: {', '.join(INITIALIZERS)}")
    bias = options.pop("bias", None if name == "default" else 0.0)
    return name, options, bias


def init_linear(layer: nn.Linear, init: dict[str, Any] | None, gain: float = 1.0) -> None:
    """Initialise `layer` in place from an init config ({name, bias, **options})."""
    name, options, bias = check_config(init)
    with torch.no_grad():
        if name == "default":
            layer.reset_parameters()
        else:
            INITIALIZERS[name](layer.weight, gain, **options)
        if bias is not None and layer.bias is not None:
            layer.bias.fill_(bias)
