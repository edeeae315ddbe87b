"""The activation registry: an activation's name (the file name in configs/activation/) maps to
a layer factory and to the gain that initializers scale weights by.

Adding an activation is one factory (a class or function whose parameters are its options, plus
`width` if it needs the layer's number of units) and one `Activation` entry below, with its
YAML in configs/activation/.

Gain: for the activations PyTorch knows (identity, sigmoid, tanh, ReLU, leaky ReLU/PReLU) we use
`torch.nn.init.calculate_gain`, so the numbers match the literature and PyTorch. For the others
(ELU, softplus, |x|, maxout) we use the definition behind He et al.: gain² = 1 / E[f(z)²] with
z ~ N(0, 1), which gives exactly 2 for ReLU; the expectation is computed by quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnlab.core import ConfigError
from nnlab.core.registry import Entry, Registry


class Abs(nn.Module):
    """The absolute-value rectifier f(x) = |x|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


class Maxout(nn.Module):
    """`out_features` units, each the max over `k` affine maps of the input (Goodfellow 2013):

        h_i(x) = max_j z_ij,   z_ij = x · W_ij + b_ij,   j = 1..k.

    It holds its layer's affine map as `linear` (what initializers initialise), so a network
    uses it instead of a Linear layer, not after one."""

    def __init__(self, in_features: int, out_features: int, k: int = 2) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"activation.k: maxout needs k >= 1 pieces, got {k}")
        self.out_features, self.k = out_features, k
        # Piece j of unit i is row i*k + j, so a reshape to (..., out, k) groups each unit's pieces.
        self.linear = nn.Linear(in_features, out_features * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # (..., out_features * k): every piece's affine map z_ij
        z = z.view(*z.shape[:-1], self.out_features, self.k)  # (..., out_features, k)
        return z.amax(dim=-1)  # (..., out_features): h_i = max_j z_ij


def _leaky_relu(negative_slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(negative_slope)


def _prelu(width: int, init: float = 0.25, per_unit: bool = False) -> nn.Module:
    return nn.PReLU(num_parameters=width if per_unit else 1, init=init)


def _elu(alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha)


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


def _maxout_gain(options: dict[str, Any]) -> float:
    return 1.0 / math.sqrt(_second_moment(lambda z: z, _maxout_density_weight(options["k"])))


def _torch_gain(name: str) -> Callable[[dict[str, Any]], float]:
    return lambda options: nn.init.calculate_gain(name)


@dataclass(frozen=True, kw_only=True)
class Activation(Entry):
    """An activation: its factory builds the layer that follows a Linear layer of `width` units,
    or, with `replaces_linear`, the layer that takes the Linear layer's place (built with
    in_features/out_features, its affine map held as `.linear`: maxout)."""

    replaces_linear: bool = False
    # The weight-scale gain from the options (defaults filled in); None: 1 / √E[f(z)²].
    gain: Callable[[dict[str, Any]], float] | None = None


ACTIVATIONS: Registry[Activation] = Registry(
    "activation",
    [
        Activation(name="identity", factory=lambda: nn.Identity(), gain=lambda options: 1.0),
        Activation(name="sigmoid", factory=lambda: nn.Sigmoid(), gain=_torch_gain("sigmoid")),
        Activation(name="tanh", factory=lambda: nn.Tanh(), gain=_torch_gain("tanh")),
        Activation(name="relu", factory=lambda: nn.ReLU(), gain=_torch_gain("relu")),
        Activation(
            name="leaky_relu",
            factory=_leaky_relu,
            gain=lambda o: nn.init.calculate_gain("leaky_relu", o["negative_slope"]),
        ),
        Activation(
            name="prelu",
            factory=_prelu,
            passed_in=("width",),
            gain=lambda o: nn.init.calculate_gain("leaky_relu", o["init"]),
        ),
        Activation(name="elu", factory=_elu),
        Activation(name="softplus", factory=lambda: nn.Softplus()),
        Activation(name="abs", factory=Abs),
        Activation(
            name="maxout",
            factory=Maxout,
            passed_in=("in_features", "out_features"),
            replaces_linear=True,
            gain=_maxout_gain,
        ),
    ],
    default="identity",
)


def create_activation(cfg: str | dict[str, Any] | None, width: int) -> nn.Module:
    """A fresh activation layer for a hidden layer of `width` units."""
    entry, options = ACTIVATIONS.parse(cfg)
    if entry.replaces_linear:
        raise ValueError(
            f"{entry.name} replaces the linear layer rather than following it: build it with "
            "in_features and out_features (as nnlab.nn.networks.MLP does)"
        )
    return entry.build(options, width=width)


def sample(entry: Activation) -> nn.Module:
    """A throwaway layer of `entry` with its default options, one unit wide (its type tells
    a network's activation layers apart)."""
    return entry.build({}, width=1, in_features=1, out_features=1)


def gain(activation: str | dict[str, Any] | None) -> float:
    """The weight-scale gain for layers followed by `activation` (an activation config)."""
    entry, options = ACTIVATIONS.parse(activation)
    if entry.gain is not None:
        return entry.gain(entry.with_defaults(options))
    layer = create_activation(activation, width=1).double()
    with torch.no_grad():
        return 1.0 / math.sqrt(_second_moment(layer))
