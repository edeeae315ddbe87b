"""model=cnn (issue 24, item 2): a network that asks for `input_shape` gets it from the data, so
a convolutional net needs no lazy layers; the activation and init groups apply to it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from nnlab.core import ConfigError
from nnlab.evaluate import load_module
from nnlab.nn.activations import gain
from nnlab.nn.networks import CNN
from nnlab.train import train


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 8, 8), (3, 17, 9), (28, 28), (3, 64, 64)])
def test_any_image_size_gives_the_outputs(shape) -> None:
    net = CNN(math.prod(shape), 5, shape, channels=[4, 8, 8], hidden_sizes=[16])
    assert net(torch.randn(3, *shape)).shape == (3, 5)


def test_blocks_head_activation_and_init() -> None:
    init = {"name": "xavier_normal", "gain": "auto"}  # the gain of the activation after it
    net = CNN(3 * 16 * 16, 2, (3, 16, 16), channels=[8, 4], activation="tanh", init=init)
    types = [type(m) for m in net]
    assert types == [
        nn.Conv2d, nn.Tanh, nn.MaxPool2d, nn.Conv2d, nn.Tanh, nn.MaxPool2d, nn.Flatten, nn.Linear
    ]  # fmt: skip
    assert net[-1].in_features == 4 * 4 * 4  # 16 → 8 → 4 pixels a side, 4 channels
    conv = net[0]
    fan_in, fan_out = 3 * 3 * 3, 8 * 3 * 3
    expected = gain("tanh") * math.sqrt(2 / (fan_in + fan_out))  # Xavier, tanh's gain 5/3
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.15)
    assert torch.all(conv.bias == 0)


def test_kaiming_follows_relu_in_the_convolutions() -> None:
    net = CNN(64 * 64, 1, (1, 64, 64), channels=[64], activation="relu", init="kaiming_normal")
    conv = net[0]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 9), rel=0.1)


def test_it_builds_on_the_meta_device_with_placeholder_sizes() -> None:
    with torch.device("meta"):
        net = CNN(1, 1, (1, 1, 1))
    assert net[-1].weight.device.type == "meta"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (30,), "in_features": 30}, "model=cnn takes images"),
        ({"channels": []}, "model.channels must be one or more ints"),
        ({"channels": [8, 0]}, "model.channels must be one or more ints"),
        ({"kernel_size": 0}, "model.kernel_size must be an int >= 1"),
        ({"pool": 1.5}, "model.pool must be an int >= 1"),
        ({"norm": "groupnorm"}, "model.norm must be null or one of batchnorm, layernorm"),
        ({"activation": "maxout"}, "activation=maxout replaces a Linear layer"),
    ],
)
def test_bad_options_are_refused(kwargs, message) -> None:
    options = {"in_features": 64, "out_features": 3, "input_shape": (1, 8, 8), **kwargs}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        CNN(**options)


def test_cnn_trains_on_digits_and_its_checkpoint_reloads(make_cfg) -> None:
    cfg = make_cfg(
        "model=cnn", "activation=relu", "init=kaiming", "trainer.max_epochs=6", "logger=none"
    )
    train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["status"] == "done"
    assert results["test"]["test/acc"] >= 0.9, results["test"]
    module = load_module(results["ckpt_path"]).eval()
    assert isinstance(module.net, CNN)
    data = instantiate(cfg.data)
    data.setup()
    with torch.no_grad():
        hits = [(module.predict(x) == y).float() for x, y in data.test_dataloader()]
    assert torch.cat(hits).mean().item() == pytest.approx(results["test"]["test/acc"], abs=1e-6)


def test_cnn_refuses_a_table_with_one_error(make_cfg) -> None:
    cfg = make_cfg("model=cnn", "data=linear_regression", "trainer.max_epochs=1", "logger=none")
    with pytest.raises(ConfigError, match=r"model=cnn takes images.*shape \(5,\): use model=mlp"):
        train(cfg)
