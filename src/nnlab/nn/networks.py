"""Network builders. Sizes come from the data: `in_features`, `out_features` and, to a network
whose constructor names it, `input_shape` (one sample's shape, (C, H, W) for images) are passed
in by the task module from the datamodule's spec, never typed in a config."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from nnlab.core import ConfigError, is_int
from nnlab.core.components import register_network
from nnlab.core.tasks import BINARY, TASKS
from nnlab.nn.activations import ACTIVATIONS, gain
from nnlab.nn.init import init_linear

NORMS = {"batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}
# The sizes the code passes a network (each only to a constructor that names it), never config
# keys; and the placeholders of the check that builds a network on the "meta" device before
# any data loads (nnlab.validation): a network must build on them.
PASSED_IN = ("in_features", "out_features", "input_shape")
PLACEHOLDER_SIZES = {"in_features": 1, "out_features": 1, "input_shape": (1, 1, 1)}


@register_network
class MLP(nn.Sequential):
    """Flatten → [Linear → norm → activation → dropout] per hidden size → Linear.

    With no hidden sizes this is Y = X Wᵀ + b: linear, logistic or softmax regression. Hidden
    layers are initialised with the activation's gain, the output layer with gain 1 (it is
    linear: the task's loss applies the sigmoid/softmax).
    """

    tasks: ClassVar[tuple[str, ...]] = TASKS

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (),
        activation: str | dict[str, Any] | None = None,
        init: str | dict[str, Any] | None = None,
        norm: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        act, act_options = ACTIVATIONS.parse(activation)
        if not all(is_int(h) and h >= 1 for h in hidden_sizes):
            raise ConfigError(f"model.hidden_sizes must be ints >= 1, got {list(hidden_sizes)}")
        if norm is not None and norm not in NORMS:
            raise ConfigError(f"model.norm must be null or one of {', '.join(NORMS)}, got {norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        hidden_gain = gain(activation)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden_sizes:
            if act.replaces_linear:  # maxout: the activation holds the layer's affine map
                unit = act.build(act_options, in_features=width, out_features=size)
                init_linear(unit.linear, init, hidden_gain)
                layers.append(unit)
            else:
                linear = nn.Linear(width, size)
                init_linear(linear, init, hidden_gain)
                layers.append(linear)
            if norm:
                layers.append(NORMS[norm](size))
            if not act.replaces_linear:
                layers.append(act.build(act_options, width=size))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        output = nn.Linear(width, out_features)
        init_linear(output, init, gain=1.0)
        layers.append(output)
        super().__init__(*layers)

    @classmethod
    def ignored_groups(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The config groups a model config of this class does not use: with no hidden layer
        (model=linear) there is nothing for an activation to follow."""
        return () if config.get("hidden_sizes") else ("activation",)


@register_network
class Perceptron(nn.Module):
    """Rosenblatt's perceptron as the course gives it: ŷ = 1[w·x + b ≥ 0], weights and bias
    starting at 0, learnt by w := w + lr·(y − ŷ)·x (lr = 1: the plain rule), one sample after
    another.

    `forward` returns the score w·x + b (AUROC ranks by it); `predict` is the step output;
    `rule_update` runs the rule over a batch.
    """

    tasks: ClassVar[tuple[str, ...]] = (BINARY,)
    # Its config sets its own start (configs/model/perceptron.yaml: zeros), not the init group.
    own_options: ClassVar[tuple[str, ...]] = ("init",)

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        lr: float = 1.0,
        init: str | dict[str, Any] | None = "zeros",
    ) -> None:
        super().__init__()
        if out_features != 1:
            raise ValueError(f"the perceptron has one output unit, got out_features={out_features}")
        self.lr = lr
        self.linear = nn.Linear(in_features, 1)
        init_linear(self.linear, init, gain=1.0)

    @classmethod
    def ignored_groups(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The config groups it does not use: its output is a step, its start is its own
        (`model.init`), and the learning rule takes the place of a loss, an optimizer and a
        scheduler."""
        return ("activation", "init", "loss", "optimizer", "scheduler")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    @staticmethod
    def step(score: torch.Tensor) -> torch.Tensor:
        """The step output for scores w·x + b: True (class 1) where the score is ≥ 0."""
        return score >= 0

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The class, 0 or 1, of each input (long)."""
        return self.step(self(x).squeeze(-1)).long()

    @torch.no_grad()
    def rule_update(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs the learning rule over the batch, one sample after another, on a copy of (w, b).

        Returns the total change (Δw, Δb) and the number of mistakes; the caller applies it.
        """
        w0, b0 = self.linear.weight[0], self.linear.bias[0]  # w: (d,), b: ()
        w, b = w0.clone(), b0.clone()
        mistakes = torch.zeros((), dtype=torch.long, device=x.device)
        for xi, yi in zip(x.flatten(1), y.to(x.dtype), strict=True):  # xi: (d,), yi: ()
            y_hat = self.step(xi @ w + b).to(x.dtype)  # ŷ = 1[w·x + b ≥ 0]
            error = yi - y_hat  # y − ŷ ∈ {−1, 0, 1}: 0 when right, no update
            w += self.lr * error * xi  # w := w + lr·(y − ŷ)·x
            b += self.lr * error  # b := b + lr·(y − ŷ)
            mistakes += error.ne(0).long()
        return (w - w0).unsqueeze(0), (b - b0).unsqueeze(0), mistakes


# The CNN's norm layers after a convolution (layernorm: over each sample's channels and pixels).
CONV_NORMS = {"batchnorm": nn.BatchNorm2d, "layernorm": lambda channels: nn.GroupNorm(1, channels)}


@register_network
class CNN(nn.Sequential):
    """A small convolutional network for images: per entry of `channels`, Conv2d (kernel_size
    × kernel_size, "same" padding) → norm → activation → MaxPool2d(pool); then the MLP head:
    Flatten → [Linear → norm → activation → dropout] per hidden size → Linear.

    Convolutions keep an image's size and each pool divides it by `pool`, rounding up, so any
    image size works (a 1×1 image stays 1×1). Convolutions and hidden layers are initialised
    with the activation's gain (the init group), the output layer with gain 1. An input of
    shape (H, W) is taken as one channel.
    """

    tasks: ClassVar[tuple[str, ...]] = TASKS

    def __init__(
        self,
        in_features: int,
        out_features: int,
        input_shape: Sequence[int],
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        pool: int = 2,
        hidden_sizes: Sequence[int] = (),
        activation: str | dict[str, Any] | None = None,
        init: str | dict[str, Any] | None = None,
        norm: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        shape = tuple(input_shape)
        if len(shape) not in (2, 3):
            raise ConfigError(
                f"model=cnn takes images, (C, H, W) or (H, W) per sample; the data gives "
                f"inputs of shape {shape}: use model=mlp"
            )
        if math.prod(shape) != in_features:
            raise ValueError(f"in_features={in_features} is not the size of input_shape {shape}")
        if not channels or not all(is_int(c) and c >= 1 for c in channels):
            raise ConfigError(f"model.channels must be one or more ints >= 1, got {list(channels)}")
        for key, value in (("kernel_size", kernel_size), ("pool", pool)):
            if not (is_int(value) and value >= 1):
                raise ConfigError(f"model.{key} must be an int >= 1, got {value!r}")
        if norm is not None and norm not in CONV_NORMS:
            raise ConfigError(
                f"model.norm must be null or one of {', '.join(CONV_NORMS)}, got {norm!r}"
            )
        act, act_options = ACTIVATIONS.parse(activation)
        if act.replaces_linear:
            raise ConfigError(
                f"activation={act.name} replaces a Linear layer; model=cnn's convolutions take "
                "an element-wise activation (relu, tanh, ...)"
            )
        layers: list[nn.Module] = []
        if len(shape) == 2:
            layers.append(nn.Unflatten(1, (1, shape[0])))  # (N, H, W) → (N, 1, H, W)
            shape = (1, *shape)
        width, height, breadth = shape
        hidden_gain = gain(activation)
        for size in channels:
            conv = nn.Conv2d(width, size, kernel_size, padding="same")
            init_linear(conv, init, hidden_gain)
            layers.append(conv)
            if norm:
                layers.append(CONV_NORMS[norm](size))
            layers.append(act.build(act_options, width=size))
            if pool > 1:
                layers.append(nn.MaxPool2d(pool, ceil_mode=True))
                height, breadth = -(-height // pool), -(-breadth // pool)
            width = size
        flat = width * height * breadth
        head = MLP(flat, out_features, hidden_sizes, activation, init, norm, dropout)
        super().__init__(*layers, *head)

    @classmethod
    def ignored_groups(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """None: the activation and init groups apply to its convolutions."""
        return ()
