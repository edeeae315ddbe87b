"""The exercises of the seven notebooks: for each, the cases a student's function is run on
(small inputs first, then other shapes and edge cases) and nnlab's own piece it must agree
with (its Perceptron, MLP layers, activations, initializers' formulas, losses, and one SGD step
of a Lightning-free torch optimizer on nnlab's model and loss)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from nnlab.core.tasks import BINARY, MULTICLASS, REGRESSION
from nnlab.exercises.checking import Case, run_cases
from nnlab.nn.activations import create_activation, gain
from nnlab.nn.init import kaiming_std, xavier_std
from nnlab.nn.losses import create_loss
from nnlab.nn.networks import MLP, Perceptron


@dataclass(frozen=True)
class Exercise:
    """One exercise: `check(name, fn)` runs fn on `cases()` and compares with `reference`."""

    name: str
    notebook: str  # the notebook's file stem
    summary: str  # what the student's function computes, one line
    cases: Callable[[], list[Case]]
    reference: Callable[..., Any]
    # What the function returns, as the messages name it; "w, b" for a pair.
    what: str = "the result"
    rtol: float = 1e-4
    atol: float = 1e-5

    def run(self, fn: Callable[..., Any]) -> int:
        """The number of cases fn got right (all), or Wrong for the first it did not."""
        return run_cases(fn, self.reference, self.cases(), self.what, self.rtol, self.atol)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _t(values: Any) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- 01 · the perceptron ----------------------------------------------------------------


def _perceptron(w: torch.Tensor, b: float) -> Perceptron:
    net = Perceptron(len(w))
    with torch.no_grad():
        net.linear.weight.copy_(w[None])
        net.linear.bias.fill_(float(b))
    return net


def _perceptron_predict(x: torch.Tensor, w: torch.Tensor, b: float) -> torch.Tensor:
    return _perceptron(w, b).predict(x)


def _perceptron_predict_cases() -> list[Case]:
    gen = _gen(1)
    return [
        Case({"X": _t([[2.0, 1.0], [-1.0, -3.0]]), "w": _t([1.0, 1.0]), "b": -0.5}),
        Case({"X": _t([[0.0, 0.0], [1.0, 2.0]]), "w": _t([1.0, -1.0]), "b": 0.0}, "a score of 0"),
        Case({"X": _randn(gen, 8, 3), "w": _randn(gen, 3), "b": 0.3}),
        Case({"X": _randn(gen, 1, 5), "w": _randn(gen, 5), "b": -1.0}, "one sample"),
    ]


def _perceptron_update(
    w: torch.Tensor, b: float, x: torch.Tensor, y: int
) -> tuple[torch.Tensor, torch.Tensor]:
    dw, db, _ = _perceptron(w, b).rule_update(x[None], torch.tensor([y]))
    return w + dw[0], torch.tensor(float(b)) + db[0]


def _perceptron_update_cases() -> list[Case]:
    gen = _gen(2)
    raw = [
        (_t([0.0, 0.0]), -1.0, _t([1.0, 2.0]), 1, "a mistake on class 1"),
        (_t([0.5, -1.0]), 0.0, _t([2.0, 0.5]), 1, "no mistake"),
        (_t([1.0, 1.0]), 0.0, _t([2.0, -1.0]), 0, "a mistake on class 0"),
        (_t([0.0, 0.0]), 0.0, _t([1.0, 1.0]), 0, "a score of exactly 0"),
        (_t([1.0, -1.0]), 0.0, _t([1.0, 1.0]), 1, "a score of exactly 0"),
        *((_randn(gen, 4), 0.5, _randn(gen, 4), y, "") for y in (0, 1, 0, 1)),
    ]
    return [
        Case({"w": w, "b": b, "x": x, "y": y}, note, starts={"w": w, "b": b})
        for w, b, x, y, note in raw
    ]


# ---- 02 · the feedforward layer ---------------------------------------------------------


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    net = MLP(w.shape[1], w.shape[0])  # model=linear: one Linear layer after Flatten
    with torch.no_grad():
        net[-1].weight.copy_(w)
        net[-1].bias.copy_(b)
        return net(x)


def _affine_cases() -> list[Case]:
    gen = _gen(3)
    shapes = [(2, 3, 2, ""), (3, 3, 3, "a square W"), (1, 4, 1, "one sample, one output")]
    shapes.append((16, 10, 5, ""))
    return [
        Case({"X": _randn(gen, n, d), "W": _randn(gen, k, d), "b": _randn(gen, k)}, note)
        for n, d, k, note in shapes
    ]


def _flatten_batch(images: torch.Tensor) -> torch.Tensor:
    return MLP(1, 1)[0](images)  # the Flatten every nnlab MLP starts with


def _flatten_batch_cases() -> list[Case]:
    gen = _gen(4)
    shapes = [((2, 1, 2, 2), "grey images"), ((2, 3, 2, 2), "3 colour channels")]
    shapes += [((1, 1, 3, 3), "one image"), ((5, 3, 4, 6), "")]
    return [Case({"images": _randn(gen, *shape)}, note) for shape, note in shapes]


def _count_parameters(in_features: int, hidden_sizes: list[int], out_features: int) -> int:
    net = MLP(in_features, out_features, hidden_sizes, activation="relu")
    return torch.tensor(sum(p.numel() for p in net.parameters()))


def _count_parameters_cases() -> list[Case]:
    raw = [(3, [], 1), (4, [], 3), (4, [8], 3), (64, [128, 64], 10), (784, [256, 256, 256], 10)]
    return [Case({"in_features": d, "hidden_sizes": h, "out_features": k}) for d, h, k in raw]


# ---- 03 · linear, logistic and softmax regression -----------------------------------------


def _sigmoid(z: torch.Tensor) -> torch.Tensor:
    return create_activation("sigmoid", width=1)(z)  # activation=sigmoid


def _sigmoid_cases() -> list[Case]:
    gen = _gen(5)
    return [
        Case({"z": _t([-2.0, -1.0, 0.0, 1.0, 2.0])}),
        Case({"z": _t([-30.0, 30.0])}, "large scores"),
        Case({"z": _t([-1000.0, 1000.0])}, "huge scores"),
        Case({"z": _randn(gen, 3, 4, scale=5.0)}, "a matrix"),
    ]


def _softmax(z: torch.Tensor) -> torch.Tensor:
    # The probabilities nnlab's cross_entropy loss scores: −loss of class c is log softmax(z)_c.
    return torch.log_softmax(z, dim=-1).exp()


def _softmax_cases() -> list[Case]:
    gen = _gen(6)
    return [
        Case({"Z": _t([[1.0, 2.0, 3.0]])}),
        Case({"Z": _t([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])}, "two rows"),
        Case({"Z": _t([[1000.0, 0.0, -5.0]])}, "large logits"),
        Case({"Z": _t([[-1000.0, -1001.0]])}, "very negative logits"),
        Case({"Z": _randn(gen, 8, 10, scale=3.0)}),
    ]


def _least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    solution = torch.linalg.lstsq(x1, y[:, None]).solution[:, 0]
    return solution[:-1], solution[-1]


def _least_squares_cases() -> list[Case]:
    gen = _gen(7)
    cases = []
    sizes = [(4, 1, 0.0, "through the origin"), (6, 1, 3.0, ""), (50, 3, -2.0, "")]
    for n, d, intercept, note in [*sizes, (200, 8, 0.5, "")]:
        x = torch.randn(n, d, generator=gen, dtype=torch.float64) + 1.0
        w = torch.randn(d, generator=gen, dtype=torch.float64)
        y = x @ w + intercept + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
        cases.append(Case({"X": x, "y": y}, note))
    return cases


# ---- 04 · losses as maximum likelihood ---------------------------------------------------


def _bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return create_loss("bce_with_logits", BINARY)(z[:, None], y)  # z as a network's output


def _bce_with_logits_cases() -> list[Case]:
    gen = _gen(8)
    return [
        Case({"z": _t([-2.0, 0.0, 1.5]), "y": _t([0.0, 1.0, 1.0])}),
        Case({"z": _t([30.0]), "y": _t([0.0])}, "a large logit, the wrong class"),
        Case({"z": _t([-100.0]), "y": _t([1.0])}, "a very negative logit, the wrong class"),
        Case({"z": _t([1000.0, -1000.0]), "y": _t([1.0, 0.0])}, "huge logits, right classes"),
        Case(
            {
                "z": _randn(gen, 16, scale=4.0),
                "y": torch.randint(0, 2, (16,), generator=gen).float(),
            }
        ),
    ]


def _log_softmax(z: torch.Tensor) -> torch.Tensor:
    # What nnlab's cross_entropy loss (F.cross_entropy) takes of the logits: the loss of a
    # sample of class c is −log_softmax(z)_c.
    return torch.log_softmax(z, dim=-1)


def _log_softmax_cases() -> list[Case]:
    gen = _gen(11)
    return [
        Case({"Z": _t([[1.0, 2.0, 3.0]])}),
        Case({"Z": _t([[1000.0, 0.0, -5.0]])}, "large logits"),
        Case({"Z": _t([[-1000.0, 0.0]])}, "a very negative logit"),
        Case({"Z": _randn(gen, 4, 10, scale=3.0)}),
    ]


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return create_loss("cross_entropy", MULTICLASS, logits.shape[-1])(logits, targets)


def _cross_entropy_cases() -> list[Case]:
    gen = _gen(12)
    return [
        Case({"logits": _t([[1.0, 2.0, 3.0]]), "targets": torch.tensor([2])}, "one sample"),
        Case({"logits": _randn(gen, 5, 4), "targets": torch.tensor([0, 3, 1, 1, 2])}, "5 samples"),
        Case(
            {"logits": _t([[1000.0, 0.0], [0.0, 1000.0]]), "targets": torch.tensor([1, 1])},
            "large logits",
        ),
        Case({"logits": _randn(gen, 16, 10, scale=3.0), "targets": torch.arange(16) % 10}),
    ]


def _huber(prediction: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    return create_loss({"name": "huber", "delta": delta}, REGRESSION)(prediction, target)


def _huber_cases() -> list[Case]:
    gen = _gen(13)
    raw = [
        ([0.5], [0.0], 1.0, "a small residual, |r| ≤ delta"),
        ([3.0], [0.0], 1.0, "a large residual, |r| > delta"),
        ([-4.0], [0.0], 2.0, "a large negative residual"),
        ([0.0, 1.0, 5.0, -0.2], [0.5, -1.0, 0.0, 0.0], 1.5, ""),
    ]
    cases = [Case({"prediction": _t(p), "target": _t(t), "delta": d}, n) for p, t, d, n in raw]
    cases.append(
        Case({"prediction": _randn(gen, 32, scale=3.0), "target": _randn(gen, 32), "delta": 1.0})
    )
    return cases


# ---- 05 · non-linearities ----------------------------------------------------------------


def _leaky_relu(x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    return create_activation({"name": "leaky_relu", "negative_slope": negative_slope}, width=1)(x)


def _leaky_relu_cases() -> list[Case]:
    gen = _gen(14)
    return [
        Case({"x": _t([0.5, 1.0, 3.0]), "negative_slope": 0.01}, "positive inputs"),
        Case({"x": _t([-3.0, -1.0, -0.5]), "negative_slope": 0.1}, "negative inputs"),
        Case({"x": _t([-2.0, 0.0, 2.0]), "negative_slope": 0.2}),
        Case({"x": _randn(gen, 4, 5, scale=3.0), "negative_slope": 0.3}, "a matrix"),
    ]


def _derivative(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def derivative(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        (slope,) = torch.autograd.grad(create_activation(name, width=1)(x).sum(), x)
        return slope

    return derivative


def _derivative_cases(seed: int) -> Callable[[], list[Case]]:
    def cases() -> list[Case]:
        gen = _gen(seed)
        return [
            Case({"x": _t([0.0])}, "at 0"),
            Case({"x": _t([-1.0, 0.5, 2.0])}),
            Case({"x": _t([-20.0, 20.0])}, "saturated"),
            Case({"x": _randn(gen, 3, 4, scale=3.0)}, "a matrix"),
        ]

    return cases


# ---- 06 · initialization -----------------------------------------------------------------


_FANS = [(256, 256, "a square layer"), (100, 10, ""), (10, 100, ""), (784, 128, ""), (1, 1, "")]


def _xavier_std(fan_in: int, fan_out: int) -> torch.Tensor:
    return torch.tensor(xavier_std(fan_in, fan_out), dtype=torch.float64)


def _kaiming_std(fan_in: int) -> torch.Tensor:
    return torch.tensor(kaiming_std(fan_in, gain("relu")), dtype=torch.float64)


# ---- 07 · optimization -------------------------------------------------------------------


def _sgd_step(
    w: torch.Tensor, b: float, x: torch.Tensor, y: torch.Tensor, lr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    net = MLP(len(w), 1)  # model=linear for regression
    layer = net[-1]
    with torch.no_grad():
        layer.weight.copy_(w[None])
        layer.bias.fill_(float(b))
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)  # optimizer=sgd
    create_loss("mse", REGRESSION, 1)(net(x), y).backward()
    optimizer.step()
    return layer.weight[0].detach(), layer.bias[0].detach()


def _sgd_step_cases() -> list[Case]:
    gen = _gen(15)
    cases = []
    sizes = [(4, 2, 0.1, "a batch of 4"), (1, 1, 0.5, "one sample"), (32, 3, 0.05, "")]
    for n, d, lr, note in [*sizes, (10, 5, 0.01, "")]:
        w, b = _randn(gen, d), 0.25
        args = {"w": w, "b": b, "X": _randn(gen, n, d), "y": _randn(gen, n), "lr": lr}
        cases.append(Case(args, note, starts={"w": w, "b": b}))
    return cases


def _max_stable_lr(x: torch.Tensor) -> torch.Tensor:
    # The notebook's bound: full-batch GD on the MSE converges for lr < 2 / λ_max(H),
    # H = (2/n)·X̃ᵀX̃ (X̃: X with a column of ones for the bias).
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    return 2 / torch.linalg.eigvalsh(2 * x1.T @ x1 / len(x1)).max()


def _max_stable_lr_cases() -> list[Case]:
    gen = _gen(16)
    cases = []
    for n, d, shift, note in [(10, 1, 0.0, "one feature"), (50, 2, 3.0, "features far from 0")]:
        x = torch.randn(n, d, generator=gen, dtype=torch.float64) + shift
        cases.append(Case({"X": x}, note))
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64) * torch.arange(1, 7) + 1
    cases.append(Case({"X": x}, "features of different scales"))
    return cases


_EXERCISES = [
    Exercise(
        "perceptron_predict",
        "01_perceptron",
        "ŷ = 1 where w·x + b ≥ 0, else 0, for each row x of X",
        _perceptron_predict_cases,
        _perceptron_predict,
    ),
    Exercise(
        "perceptron_update",
        "01_perceptron",
        "one step of the perceptron rule on one sample (x, y): the new (w, b)",
        _perceptron_update_cases,
        _perceptron_update,
        what="w, b",
    ),
    Exercise(
        "affine",
        "02_feedforward_layer",
        "Y = X Wᵀ + b for a batch X (N × d), W (k × d), b (k)",
        _affine_cases,
        _affine,
        what="Y",
    ),
    Exercise(
        "flatten_batch",
        "02_feedforward_layer",
        "an image batch (N, C, H, W) as an (N, C·H·W) matrix, as nn.Flatten reads it",
        _flatten_batch_cases,
        _flatten_batch,
    ),
    Exercise(
        "count_parameters",
        "02_feedforward_layer",
        "the number of weights and biases of an MLP with these layer sizes",
        _count_parameters_cases,
        _count_parameters,
    ),
    Exercise(
        "sigmoid",
        "03_linear_logistic_softmax_regression",
        "σ(z) = 1 / (1 + e^(−z)), element by element, for any z",
        _sigmoid_cases,
        _sigmoid,
    ),
    Exercise(
        "softmax",
        "03_linear_logistic_softmax_regression",
        "the softmax of each row of logits, for any logits",
        _softmax_cases,
        _softmax,
        atol=1e-6,
    ),
    Exercise(
        "least_squares",
        "03_linear_logistic_softmax_regression",
        "the (w, b) of linear regression that minimizes the squared error, in closed form",
        _least_squares_cases,
        _least_squares,
        what="w, b",
        rtol=1e-6,
        atol=1e-8,
    ),
    Exercise(
        "bce_with_logits",
        "04_losses_and_mle",
        "the mean binary cross-entropy of labels y under σ(z), for any logits z",
        _bce_with_logits_cases,
        _bce_with_logits,
    ),
    Exercise(
        "log_softmax",
        "04_losses_and_mle",
        "log softmax of each row of logits, finite for any logits",
        _log_softmax_cases,
        _log_softmax,
    ),
    Exercise(
        "cross_entropy",
        "04_losses_and_mle",
        "the mean cross-entropy of integer targets under softmax(logits)",
        _cross_entropy_cases,
        _cross_entropy,
    ),
    Exercise(
        "huber",
        "04_losses_and_mle",
        "the mean Huber loss: quadratic for |residual| ≤ delta, linear beyond",
        _huber_cases,
        _huber,
    ),
    Exercise(
        "leaky_relu",
        "05_nonlinearities",
        "leaky ReLU with the given slope for negative inputs",
        _leaky_relu_cases,
        _leaky_relu,
    ),
    Exercise(
        "tanh_derivative",
        "05_nonlinearities",
        "tanh′(x), element by element",
        _derivative_cases(17),
        _derivative("tanh"),
    ),
    Exercise(
        "sigmoid_derivative",
        "05_nonlinearities",
        "σ′(x), element by element",
        _derivative_cases(18),
        _derivative("sigmoid"),
    ),
    Exercise(
        "xavier_std",
        "06_initialization",
        "the std of Xavier's normal weights for a layer of fan_in inputs and fan_out outputs",
        lambda: [Case({"fan_in": i, "fan_out": o}, n) for i, o, n in _FANS],
        _xavier_std,
        rtol=1e-6,
    ),
    Exercise(
        "kaiming_std",
        "06_initialization",
        "the std of Kaiming's normal weights (fan_in mode) for a layer followed by ReLU",
        lambda: [Case({"fan_in": i}, n) for i, _, n in _FANS],
        _kaiming_std,
        rtol=1e-6,
    ),
    Exercise(
        "sgd_step",
        "07_optimization",
        "one gradient-descent step on a mini-batch's mean squared error of ŷ = X w + b",
        _sgd_step_cases,
        _sgd_step,
        what="w, b",
    ),
    Exercise(
        "max_stable_lr",
        "07_optimization",
        "the largest learning rate for which full-batch GD on the MSE of a linear model converges",
        _max_stable_lr_cases,
        _max_stable_lr,
        rtol=1e-6,
    ),
]

EXERCISES: dict[str, Exercise] = {exercise.name: exercise for exercise in _EXERCISES}
