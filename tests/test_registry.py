"""The registry mechanism (nnlab.core.registry) on a toy registry, and the three registries built
on it (activations, initializers, losses): every entry's options check and build."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnlab.core import ConfigError
from nnlab.core.registry import Entry, Registry
from nnlab.nn.activations import ACTIVATIONS, Activation, Maxout, sample
from nnlab.nn.init import INITIALIZERS, init_linear
from nnlab.nn.losses import LOSSES, create_loss, valid_losses
from nnlab.tasks import BY_TASK


def scaled(size: int, scale: float = 1.0, label: str = "x") -> tuple[int, float, str]:
    return size, scale, label


def plain() -> str:
    return "plain"


TOY = Registry(
    "toy",
    [Entry(name="scaled", factory=scaled, passed_in=("size",)), Entry(name="plain", factory=plain)],
    default="plain",
    shared=("tag",),
)


@pytest.mark.parametrize(
    ("cfg", "name", "options"),
    [
        ("scaled", "scaled", {}),
        ({"name": "scaled", "scale": 2.0}, "scaled", {"scale": 2.0}),
        (None, "plain", {}),
        ({}, "plain", {}),
        # An option file holding a plain string, as Hydra loads it.
        ({"scaled": None}, "scaled", {}),
    ],
)
def test_a_config_is_a_name_or_a_mapping(cfg, name, options):
    entry, parsed = TOY.parse(cfg)
    assert entry.name == name and parsed == options


@pytest.mark.parametrize("cfg", ["swish", {"name": "swish", "scale": 1}, {"name": 3}])
def test_an_unknown_name_is_refused_with_the_valid_ones(cfg):
    own = r"\(a toy of your own: register it in a module that plugins=\[<module>\] imports"
    with pytest.raises(ConfigError, match=rf"unknown toy .*; valid: scaled, plain {own}"):
        TOY.parse(cfg)


def test_a_registered_entry_is_built_and_a_taken_name_refused():
    toys = Registry("toy", [Entry(name="plain", factory=plain)], default="plain")
    toys.register(Entry(name="mine", factory=scaled, passed_in=("size",)))
    assert toys.build({"name": "mine", "scale": 2.0}, size=3) == (3, 2.0, "x")
    toys.register(Entry(name="mine", factory=scaled, passed_in=("size",)))  # imported anew
    with pytest.raises(ValueError, match="toy 'plain' is registered already"):
        toys.register(Entry(name="plain", factory=scaled))
    assert toys.names() == ["plain", "mine"]


def test_a_config_that_is_neither_name_nor_mapping_is_refused():
    with pytest.raises(ConfigError, match="toy must be a name or a mapping with a name, got 3"):
        TOY.parse(3)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "scaled", "scal": 2.0}, "toy.scal is not an option of scaled; did you mean"),
        ({"name": "scaled", "scale": "big"}, "toy.scale must be float, got 'big'"),
        # What the code passes in is not an option.
        ({"name": "scaled", "size": 3}, "toy.size is not an option of scaled; valid: scale, label"),
        ({"name": "plain", "scale": 2.0}, "toy=plain takes no options, got scale"),
    ],
)
def test_options_are_checked_against_the_factory(cfg, message):
    with pytest.raises(ConfigError, match=message):
        TOY.check(cfg)


def test_shared_options_are_left_to_the_owner():
    entry, options = TOY.check({"name": "plain", "tag": 1})
    assert entry.name == "plain" and options == {"tag": 1}
    assert TOY.build({"name": "plain", "tag": 1}) == "plain"


def test_build_passes_in_only_what_an_entry_declares():
    assert TOY.build({"name": "scaled", "scale": 2.0}, size=4, other=5) == (4, 2.0, "x")
    assert TOY.build("plain", size=4) == "plain"
    with pytest.raises(TypeError, match="scaled needs size passed in"):
        TOY.build("scaled")


def test_defaults_fill_in_what_a_config_leaves_out():
    entry = TOY["scaled"]
    assert entry.with_defaults({"label": "y"}) == {"scale": 1.0, "label": "y"}


def test_a_registry_needs_its_default():
    with pytest.raises(ValueError, match="no default entry 'none'"):
        Registry("toy", [Entry(name="plain", factory=plain)], default="none")


@pytest.mark.parametrize("entry", list(ACTIVATIONS), ids=ACTIVATIONS.names())
def test_every_activation_checks_and_builds_with_its_defaults(entry: Activation):
    ACTIVATIONS.check(entry.name)
    layer = sample(entry)
    x = torch.randn(3, 1)
    assert layer(x).shape == (3, 1)
    # Exactly the entries that replace the linear layer hold one (initialised by the network).
    assert isinstance(getattr(layer, "linear", None), nn.Linear) == entry.replaces_linear


def test_maxout_is_the_one_activation_that_replaces_the_linear_layer():
    assert [e.name for e in ACTIVATIONS if e.replaces_linear] == ["maxout"]
    assert isinstance(sample(ACTIVATIONS["maxout"]), Maxout)


@pytest.mark.parametrize("entry", list(INITIALIZERS), ids=INITIALIZERS.names())
def test_every_initializer_checks_and_fills_a_layer(entry):
    INITIALIZERS.check({"name": entry.name, "bias": 0.5})
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    init_linear(layer, entry.name, gain=2.0)
    expected_bias = None if entry.bias is None else torch.full((10,), entry.bias)
    assert expected_bias is None or torch.equal(layer.bias, expected_bias)
    init_linear(layer, {"name": entry.name, "bias": 0.5}, gain=2.0)
    assert torch.all(layer.bias == 0.5)


@pytest.mark.parametrize("entry", list(LOSSES), ids=LOSSES.names())
def test_every_loss_builds_for_each_task_it_trains(entry):
    LOSSES.check(entry.name)
    for task in entry.tasks:
        num_outputs = 3 if task == "multiclass" else 1
        assert entry.name in valid_losses(task)
        default = BY_TASK[task].default_loss  # what loss=auto builds
        assert isinstance(create_loss(entry.name, task, num_outputs, default), nn.Module)


def test_auto_is_each_tasks_own_loss_and_takes_no_options():
    auto = {task: BY_TASK[task].default_loss for task in BY_TASK}
    assert type(create_loss("auto", "regression", 1, auto["regression"])).__name__ == "MSELoss"
    bce = create_loss(None, "binary", 1, auto["binary"])
    assert type(bce).__name__ == "BCEWithLogitsLoss"
    ce = create_loss({"name": "auto"}, "multiclass", 4, auto["multiclass"])
    assert type(ce).__name__ == "CrossEntropyLoss"
    with pytest.raises(ConfigError, match="loss=auto takes no options, got delta"):
        LOSSES.check({"name": "auto", "delta": 1.0})
