"""Layers, initializers and losses against their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnlab.core import ConfigError
from nnlab.nn.activations import Abs, Maxout, create_activation
from nnlab.nn.init import INITIALIZERS, gain, init_linear
from nnlab.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, create_loss
from nnlab.nn.networks import MLP, Perceptron

FAN_IN, FAN_OUT = 400, 300


def weight_var(init: dict, activation: dict | None = None) -> tuple[float, nn.Linear]:
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    init_linear(layer, init, gain(activation))
    return layer.weight.var().item(), layer


# Each row: init config, activation, expected Var(w). 120,000 weights: the sample variance is
# within about 1 % of the true one, so 5 % tolerance fails only on a wrong formula.
RELU = {"name": "relu"}
VARIANCES = [
    ({"name": "xavier_normal"}, None, 2 / (FAN_IN + FAN_OUT)),
    ({"name": "xavier_uniform"}, None, 2 / (FAN_IN + FAN_OUT)),
    # The course's Xavier has no activation gain: the same variance before ReLU as before tanh.
    ({"name": "xavier_normal"}, RELU, 2 / (FAN_IN + FAN_OUT)),
    ({"name": "xavier_uniform"}, {"name": "tanh"}, 2 / (FAN_IN + FAN_OUT)),
    # init.gain: auto takes the activation's gain (today's Kaiming), a number is used as is.
    ({"name": "xavier_normal", "gain": "auto"}, RELU, 2 * 2 / (FAN_IN + FAN_OUT)),
    ({"name": "xavier_uniform", "gain": 3.0}, RELU, 9 * 2 / (FAN_IN + FAN_OUT)),
    ({"name": "kaiming_normal", "gain": 1.0}, RELU, 1 / FAN_IN),
    ({"name": "kaiming_normal", "mode": "fan_in"}, RELU, 2 / FAN_IN),
    ({"name": "kaiming_uniform", "mode": "fan_in"}, RELU, 2 / FAN_IN),
    ({"name": "kaiming_normal", "mode": "fan_out"}, RELU, 2 / FAN_OUT),
    ({"name": "kaiming_normal"}, {"name": "tanh"}, (5 / 3) ** 2 / FAN_IN),
    ({"name": "kaiming_normal"}, {"name": "leaky_relu", "negative_slope": 0.2}, 2 / 1.04 / FAN_IN),
    ({"name": "lecun_normal"}, RELU, 1 / FAN_IN),
    ({"name": "normal", "std": 0.05}, RELU, 0.05**2),
    ({"name": "default"}, RELU, 1 / (3 * FAN_IN)),  # U(−1/√fan_in, 1/√fan_in)
]


@pytest.mark.parametrize(("init", "activation", "expected"), VARIANCES)
def test_initializer_variance_matches_formula(init, activation, expected):
    var, _ = weight_var(init, activation)
    assert var == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("gain", [0, -1.0, "relu"])
def test_init_gain_must_be_positive_or_auto(gain):
    with pytest.raises(ConfigError, match=r"init\.gain must be"):
        INITIALIZERS.check({"name": "xavier_normal", "gain": gain})
        weight_var({"name": "xavier_normal", "gain": gain}, RELU)


# nnlab's initializer (name, its options, the gain of the activation after the layer) and the
# torch.nn.init call that draws the same weights: torch's own initializers as the reference.
TORCH_INITS = {
    "xavier_normal": ({}, 1.0, lambda w: nn.init.xavier_normal_(w)),
    "xavier_uniform": ({}, 1.0, lambda w: nn.init.xavier_uniform_(w)),
    "xavier_normal, gain 5/3": ({"gain": 5 / 3}, 1.0, lambda w: nn.init.xavier_normal_(w, 5 / 3)),
    "kaiming_normal, ReLU": (
        {},
        math.sqrt(2),
        lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    ),
    "kaiming_uniform, ReLU": (
        {},
        math.sqrt(2),
        lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    ),
    "kaiming_normal, fan_out": (
        {"mode": "fan_out"},
        math.sqrt(2),
        lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    ),
    "lecun_normal": ({}, 1.0, lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear")),
}


@pytest.mark.parametrize(
    "layer", [nn.Linear(300, 100), nn.Conv2d(3, 16, 5)], ids=["linear", "conv"]
)
@pytest.mark.parametrize("case", TORCH_INITS)
def test_initializers_draw_what_torchs_own_initializers_draw(case, layer):
    options, activation_gain, torch_init = TORCH_INITS[case]
    name = case.split(",")[0]
    torch.manual_seed(0)
    init_linear(layer, {"name": name, **options}, gain=activation_gain)
    ours = layer.weight.detach().clone()
    torch.manual_seed(0)
    theirs = torch_init(torch.empty_like(ours))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


def test_default_init_is_pytorchs_uniform_bound():
    _, layer = weight_var({"name": "default"})
    bound = 1 / math.sqrt(FAN_IN)
    for p in (layer.weight, layer.bias):
        assert p.abs().max() <= bound and p.abs().max() > 0.95 * bound


def test_uniform_inits_stay_in_their_bounds():
    _, layer = weight_var({"name": "kaiming_uniform"}, RELU)
    assert layer.weight.abs().max() <= math.sqrt(2) * math.sqrt(3 / FAN_IN)


@pytest.mark.parametrize(
    ("init", "weight", "bias"),
    [
        ({"name": "zeros"}, 0.0, 0.0),
        ({"name": "constant", "value": 0.3, "bias": 0.1}, 0.3, 0.1),
        ({"name": "kaiming_normal", "bias": 0.5}, None, 0.5),
    ],
)
def test_constant_inits_and_bias(init, weight, bias):
    _, layer = weight_var(init, RELU)
    if weight is not None:
        assert torch.all(layer.weight == weight)
    assert torch.all(layer.bias == bias)


@pytest.mark.parametrize(
    "activation",
    [{"name": n} for n in ("relu", "abs", "elu", "softplus", "identity")]
    + [{"name": "maxout", "k": 3}],
)
def test_gain_keeps_second_moment_at_one(activation):
    """gain² · E[f(z)²] = 1 for z ~ N(0, 1): the definition behind Kaiming's √2 for ReLU."""
    torch.manual_seed(0)
    z = torch.randn(1_000_000)
    if activation["name"] == "maxout":
        f_z = torch.randn(1_000_000, activation["k"]).amax(-1)
    else:
        f_z = create_activation(activation, width=1)(z)
    assert gain(activation) ** 2 * f_z.pow(2).mean().item() == pytest.approx(1.0, rel=0.01)


def test_relu_gain_is_sqrt2_and_maxout2_gain_is_one():
    assert gain({"name": "relu"}) == pytest.approx(math.sqrt(2))
    assert gain({"name": "maxout", "k": 2}) == pytest.approx(1.0, abs=1e-6)


def activation_stds(init: dict, activation: dict, depth: int = 30) -> list[float]:
    torch.manual_seed(0)
    net = MLP(256, 256, [256] * depth, activation=activation, init=init)
    stds, h = [], torch.randn(2048, 256)
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.ReLU | nn.Tanh):
            stds.append(h.std().item())
    return stds


def test_kaiming_keeps_activation_scale_flat_over_depth_and_small_normal_does_not():
    kaiming = activation_stds({"name": "kaiming_normal"}, RELU)
    assert 0.5 < kaiming[-1] / kaiming[0] < 2.0
    tiny = activation_stds({"name": "normal", "std": 0.01}, RELU)
    assert tiny[-1] / tiny[0] < 1e-10  # vanishes: each layer scales by about 0.01·√(256/2)


def test_maxout_is_the_max_over_its_pieces():
    torch.manual_seed(0)
    layer = Maxout(5, 3, k=4)
    x = torch.randn(7, 5)
    w = layer.linear.weight.view(3, 4, 5)
    b = layer.linear.bias.view(3, 4)
    pieces = torch.einsum("nd,ukd->nuk", x, w) + b
    assert torch.allclose(layer(x), pieces.max(dim=-1).values, atol=1e-6)


def test_maxout_mlp_has_k_times_the_weights():
    plain = MLP(10, 2, [8], activation=RELU)
    maxout = MLP(10, 2, [8], activation={"name": "maxout", "k": 3})
    assert maxout[1].linear.weight.shape == (24, 10)
    assert sum(p.numel() for p in maxout.parameters()) > 2 * sum(
        p.numel() for p in plain.parameters()
    )


def test_prelu_is_learnable_per_layer_or_per_unit():
    per_layer = create_activation({"name": "prelu", "init": 0.1}, width=16)
    per_unit = create_activation({"name": "prelu", "per_unit": True}, width=16)
    assert per_layer.weight.shape == (1,) and per_layer.weight.requires_grad
    assert per_layer.weight.item() == pytest.approx(0.1)
    assert per_unit.weight.shape == (16,)


def test_abs_activation():
    assert torch.equal(Abs()(torch.tensor([-2.0, 0.0, 3.0])), torch.tensor([2.0, 0.0, 3.0]))


def test_unknown_activation_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: identity, sigmoid"):
        create_activation({"name": "swishy"}, width=1)


def test_linear_model_is_xw_plus_b():
    net = MLP(4, 3, [])
    x = torch.randn(5, 4)
    linear = net[1]
    assert torch.allclose(net(x), x @ linear.weight.T + linear.bias)


def test_bce_is_softplus_minus_yz_and_stable_for_huge_logits():
    z = torch.tensor([[-1000.0], [-2.0], [0.0], [3.0], [1000.0]])
    y = torch.tensor([1, 0, 1, 1, 0])
    expected = (F.softplus(z.squeeze(-1)) - y * z.squeeze(-1)).mean()
    loss = BCEWithLogitsLoss()(z, y)
    assert torch.isfinite(loss) and torch.allclose(loss, expected)


def test_cross_entropy_is_categorical_nll_and_stable():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    y = torch.tensor([1, 2])
    # log-softmax by log-sum-exp, written out
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_p = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    expected = -log_p[torch.arange(2), y].mean()
    loss = CrossEntropyLoss(num_classes=3)(logits, y)
    assert torch.isfinite(loss) and torch.allclose(loss, expected)


def test_cross_entropy_class_weights_must_match_the_data():
    with pytest.raises(ValueError, match="2 entries but the data has 3 classes"):
        create_loss({"name": "cross_entropy", "weight": [1.0, 2.0]}, "multiclass", 3)


def test_regression_losses():
    out, y = torch.tensor([[0.0], [3.0]]), torch.tensor([1.0, 0.0])
    assert create_loss({"name": "mse"}, "regression", 1)(out, y).item() == pytest.approx(5.0)
    assert create_loss({"name": "l1"}, "regression", 1)(out, y).item() == pytest.approx(2.0)
    huber = create_loss({"name": "huber", "delta": 1.0}, "regression", 1)(out, y).item()
    assert huber == pytest.approx((0.5 + 2.5) / 2)


def test_perceptron_rule_matches_the_lecture():
    p = Perceptron(2)  # the course's start: w = 0, b = 0
    assert torch.all(p.linear.weight == 0) and torch.all(p.linear.bias == 0)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    dw, db, mistakes = p.rule_update(x, y)
    # sample 1: score 0 ≥ 0 → ŷ = 1, y − ŷ = −1 → w = (−1, −2), b = −1
    # sample 2: score −3 + 2 − 1 = −2 → ŷ = 0 = y: no change
    # sample 3: score 1 + 0 − 1 = 0 ≥ 0 → ŷ = 1 = y: no change
    assert torch.equal(dw, torch.tensor([[-1.0, -2.0]])) and torch.equal(db, torch.tensor([-1.0]))
    assert mistakes.item() == 1
    # The step output is the rule's: class 1 on the boundary itself.
    on_boundary = Perceptron.step(torch.tensor([-0.5, 0.0, 2.0]))
    assert torch.equal(on_boundary, torch.tensor([False, True, True]))
    assert torch.equal(p.predict(x), torch.ones(3, dtype=torch.long))  # every score is 0


@pytest.mark.parametrize("sizes", [[0], [4, -1], [2.5], [True]])
def test_mlp_refuses_hidden_sizes_that_are_not_positive_ints(sizes):
    with pytest.raises(ValueError, match=r"model.hidden_sizes must be ints >= 1"):
        MLP(3, 2, hidden_sizes=sizes)


def test_a_plain_string_works_wherever_an_option_mapping_does():
    torch.manual_seed(0)
    by_name = MLP(6, 2, [5, 4], activation="tanh", init="kaiming_normal")
    torch.manual_seed(0)
    by_mapping = MLP(6, 2, [5, 4], activation={"name": "tanh"}, init={"name": "kaiming_normal"})
    assert [type(m) for m in by_name] == [type(m) for m in by_mapping]
    assert sum(isinstance(m, nn.Tanh) for m in by_name) == 2
    for a, b in zip(by_name.parameters(), by_mapping.parameters(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(create_activation("relu", width=3), nn.ReLU)
    assert gain("tanh") == pytest.approx(5 / 3)
    assert isinstance(create_loss("huber", "regression", 1), HuberLoss)
    assert torch.all(Perceptron(3, init="zeros").linear.weight == 0)


def test_maxout_is_no_elementwise_activation():
    with pytest.raises(ValueError, match="maxout replaces the linear layer"):
        create_activation({"name": "maxout"}, width=4)


def test_a_linear_model_ignores_its_activation_and_the_perceptron_its_training_groups():
    assert MLP.ignored_groups({"hidden_sizes": []}) == ("activation",)
    assert MLP.ignored_groups({"hidden_sizes": [8]}) == ()
    ignored = {"activation", "init", "loss", "optimizer", "scheduler"}
    assert set(Perceptron.ignored_groups({})) == ignored
