"""The course's theory, demonstrated (nnlab.lecture's mle_conditions, mle_efficiency,
gradient_flow and optimizers): each claim asserted on the numbers its study returns in fast
mode, and its figures checked to draw what the study computed."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from nnlab.core import ConfigError
from nnlab.lecture import Claim, run_claim
from nnlab.lecture.estimation import LINE_GAP, SIGMA, cramer_rao, fit_replicates, noise
from nnlab.lecture.optimizers import BOWL, RAVINE, RAVINE_OPTIMIZERS, descend
from nnlab.nn.losses import LOSSES
from tests.test_lecture import wrote


@pytest.fixture(scope="module")
def claim(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Claim]:
    """Runs a claim's study in fast mode once per module (seed 0) and returns its Claim."""
    done: dict[str, Claim] = {}

    def get(name: str) -> Claim:
        if name not in done:
            done[name] = run_claim(name, fast=True, seed=0, out=tmp_path_factory.mktemp(name))
        return done[name]

    return get


# -- mle_conditions -----------------------------------------------------------------------------
def test_misspecified_line_stays_at_its_floor_and_duplicated_weights_only_sum(claim):
    result = claim("mle_conditions")
    n = result.numbers
    line, parabola = n["test_mse"]["line"], n["test_mse"]["parabola"]
    sizes = sorted(line)
    # The line's excess error over the noise is Var(x²) = 4/45 however many samples it gets.
    assert n["excess_at_largest"]["line"] == pytest.approx(LINE_GAP, rel=0.1)
    assert line[sizes[-1]] >= 0.95 * line[sizes[len(sizes) // 2]]
    # The parabola (the family holds the truth) gets down to the noise variance.
    assert parabola[sizes[-1]] == pytest.approx(0.01, rel=0.05)
    assert parabola[sizes[0]] > parabola[sizes[-1]]
    # Duplicated input: each start ends elsewhere, on one line of equal (lowest) loss.
    assert n["weight_spread"]["w1"] > 0.3 and n["weight_spread"]["sum"] < 1e-4
    assert n["loss_spread"] < 1e-9 and n["difference_moved"] < 1e-9
    dup = result.frames["not_identifiable"]
    assert dup["sum"].mean() == pytest.approx(2.0, abs=0.05)  # the true slope, split anyhow
    assert result.held and set(result.figures) == {"misspecified", "not_identifiable"}
    wrote(result)


def test_misspecified_figure_draws_the_fitted_models(claim):
    """The fit panel's curves are the models' own predictions: the line through the learned
    (w, b) and the parabola through the learned (w₁, w₂, b) of the largest data set."""
    result = claim("mle_conditions")
    frame = result.frames["misspecified"]
    largest = frame[(frame.n == frame.n.max()) & (frame.repeat == 0)].set_index("model")
    curves = {
        line.get_label().split(":")[1].split(",")[0].strip(): line
        for line in result.plots["misspecified"].axes[0].get_lines()
        if line.get_label().startswith("fit:")
    }
    x = np.asarray(curves["a line ŷ = w·x + b"].get_xdata(), dtype=float).ravel()
    w = largest.loc["line"]
    expected = w.w1 * x + w.b
    np.testing.assert_allclose(curves["a line ŷ = w·x + b"].get_ydata().ravel(), expected)
    p = largest.loc["parabola"]
    np.testing.assert_allclose(
        curves["ŷ = w₁·x + w₂·x² + b"].get_ydata().ravel(), p.w1 * x + p.w2 * x**2 + p.b
    )


# -- mle_efficiency ----------------------------------------------------------------------------
def test_mse_efficient_under_gaussian_l1_under_laplace(claim):
    result = claim("mle_efficiency")
    ratio = result.numbers["variance_over_bound"]
    tolerance = 4 * math.sqrt(2 / result.numbers["replicates"])
    assert ratio["Gaussian"]["mse"] == pytest.approx(1.0, abs=tolerance)  # attains the bound
    assert result.numbers["covariance_gap"] < tolerance  # σ²·(XᵀX)⁻¹, off-diagonal too
    assert ratio["Gaussian"]["l1"] > 1.25 * ratio["Gaussian"]["mse"]
    assert ratio["Laplace"]["mse"] == pytest.approx(2.0, abs=2 * tolerance)
    assert ratio["Laplace"]["l1"] < 0.75 * ratio["Laplace"]["mse"]
    for by_loss in ratio.values():  # nothing unbiased beats Cramér–Rao
        assert min(by_loss.values()) > 1 - tolerance
    table = result.frames["efficiency"]
    assert (table.bias_w.abs() < 0.05).all()  # unbiased: the bound applies
    assert result.held
    wrote(result)


def test_efficiency_figure_draws_the_estimates(claim):
    """Each scatter panel's points are the fitted (ŵ, b̂) of its noise, MSE's then L1's."""
    result = claim("mle_efficiency")
    frame = result.frames["estimates"]
    for ax, kind in zip(result.plots["efficiency"].axes[:2], ("Gaussian", "Laplace"), strict=True):
        for points, loss in zip(ax.collections, ("mse", "l1"), strict=True):
            part = frame[(frame.noise == kind) & (frame.loss == loss)]
            np.testing.assert_allclose(points.get_offsets(), part[["w", "b"]].to_numpy())


def test_cramer_rao_bound_and_laplace_noise():
    x = torch.linspace(-1, 1, 30, dtype=torch.float64)[:, None]
    design = torch.cat([x, torch.ones_like(x)], dim=1)
    expected = SIGMA**2 * np.linalg.inv(design.numpy().T @ design.numpy())
    np.testing.assert_allclose(cramer_rao(design, "Gaussian").numpy(), expected)
    np.testing.assert_allclose(cramer_rao(design, "Laplace").numpy(), expected / 2)
    draws = noise("Laplace", (200_000,), torch.Generator().manual_seed(0)).numpy()
    assert draws.std() == pytest.approx(SIGMA, rel=0.02)
    kurtosis = ((draws - draws.mean()) ** 4).mean() / draws.var() ** 2
    assert kurtosis == pytest.approx(6.0, rel=0.1)  # Laplace's; a Gaussian's is 3


def test_fit_replicates_reaches_each_data_sets_minimum():
    """MSE: the least-squares solution; L1: no small move of (w, b) lowers a data set's
    absolute error (its minimum, up to the annealed steps' precision)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, generator=generator, dtype=torch.float64) * 2 - 1
    y = 2 * x + 0.5 + noise("Laplace", (40, 20), generator)
    design = torch.cat([x, torch.ones_like(x)], dim=1)
    np.testing.assert_allclose(
        fit_replicates(x, y, "mse", 400).T.numpy(),
        torch.linalg.lstsq(design, y).solution.numpy(),
        atol=1e-10,
    )
    l1 = fit_replicates(x, y, "l1", 400)
    loss = LOSSES.build("l1")

    def error(params: torch.Tensor) -> torch.Tensor:
        return torch.stack([loss(design @ p, y[:, k]) for k, p in enumerate(params)])

    at = error(l1)
    for move in ([1e-3, 0], [-1e-3, 0], [0, 1e-3], [0, -1e-3]):
        assert (error(l1 + torch.tensor(move, dtype=torch.float64)) >= at - 1e-6).all()


# -- gradient_flow -----------------------------------------------------------------------------
def test_gradients_vanish_with_sigmoid_and_stay_flat_with_kaiming_relu(claim):
    result = claim("gradient_flow")
    n = result.numbers
    ratio = n["first_over_last"]
    assert ratio["sigmoid + xavier_normal"] < 1e-2
    assert 0.25 <= ratio["relu + kaiming_normal"] <= 4
    assert ratio["tanh + xavier_normal"] > 10 * ratio["sigmoid + xavier_normal"]
    # The diagnostics' ‖∂L/∂W‖ is the norm of the gradient the optimizer took.
    assert n["diagnostics_vs_gradient"] < 1e-5
    # Kaiming's step: E[x²] = ½·Var(ỹ) per ReLU layer, so the variance stays flat.
    assert all(abs(r - 0.5) < 0.05 for r in n["relu_second_moment_ratio"])
    assert all(0.85 < g < 1.15 for g in n["relu_variance_growth"])
    frame = result.frames["grad_norms"]
    assert len(frame) == 9 * (n["depth"] + 1)  # 3 activations × 3 inits, hidden + output
    assert (frame.grad_norm > 0).all()
    assert result.held
    assert set(result.figures) == {"grad_norms", "grad_histograms", "kaiming_step"}
    wrote(result)


def test_grad_norm_figure_draws_the_diagnostics_rows(claim):
    result = claim("gradient_flow")
    frame = result.frames["grad_norms"]
    panel = result.plots["grad_norms"].axes[2]  # relu
    (curve,) = [c for c in panel.get_lines() if c.get_label().startswith("Kaiming")]
    rows = frame[(frame.activation == "relu") & (frame.init == "kaiming_normal")]
    hidden = rows[rows.layer != "output"]
    np.testing.assert_allclose(curve.get_ydata(), hidden.grad_norm)


# -- optimizers ------------------------------------------------------------------------------
def test_learning_rate_paths_and_ravine(claim):
    result = claim("optimizers")
    n = result.numbers
    small, right, big = sorted(n["bowl_final_loss"])
    final = n["bowl_final_loss"]
    assert n["stable_below"] == pytest.approx(0.5)  # 2 / the largest eigenvalue, 4
    assert small < right < n["stable_below"] < big
    assert final[right] < 1e-6 * n["bowl_start_loss"] < final[small]
    assert final[big] > n["bowl_start_loss"]  # diverges
    reach = n["ravine_steps_to_target"]
    sgd, momentum, adam = RAVINE_OPTIMIZERS
    assert max(reach[momentum], reach[adam]) < reach[sgd]
    assert result.held and set(result.figures) == {"lr_paths", "ravine"}
    wrote(result)


def test_optimizer_figures_draw_the_paths(claim):
    result = claim("optimizers")
    paths = result.frames["lr_paths"]
    for ax, (lr, path) in zip(result.plots["lr_paths"].axes[:3], paths.groupby("lr"), strict=True):
        (line,) = [x for x in ax.get_lines() if x.get_label() == f"gradient descent, lr {lr:g}"]
        np.testing.assert_allclose(line.get_xydata(), path[["w1", "w2"]].to_numpy())
    ravine = result.frames["ravine"]
    panel = result.plots["ravine"].axes[0]
    for label in RAVINE_OPTIMIZERS:
        (line,) = [x for x in panel.get_lines() if x.get_label().startswith(f"{label} (")]
        expected = ravine[ravine.optimizer == label][["w1", "w2"]].to_numpy()
        np.testing.assert_allclose(line.get_xydata(), expected)


def test_paths_are_the_configs_optimizer_steps():
    """sgd: w ← w − lr·Aw exactly; sgd_momentum: the heavy ball v ← 0.9·v + Aw, w ← w − lr·v;
    Adam's first step moves each weight by lr against its gradient's sign."""
    path = descend(BOWL, (1.0, -2.0), 5, "sgd", lr=0.1)
    w = np.array([1.0, -2.0])
    for step in range(6):
        np.testing.assert_allclose(path[["w1", "w2"]].iloc[step], w, atol=1e-12)
        w = w - 0.1 * BOWL.numpy() @ w
    path = descend(RAVINE, (-4.5, 1.0), 5, "sgd_momentum", lr=0.05)
    w, v = np.array([-4.5, 1.0]), np.zeros(2)
    for step in range(6):
        np.testing.assert_allclose(path[["w1", "w2"]].iloc[step], w, atol=1e-12)
        v = 0.9 * v + RAVINE.numpy() @ w
        w = w - 0.05 * v
    path = descend(RAVINE, (-4.5, 1.0), 1, "adam", lr=0.3)
    np.testing.assert_allclose(path[["w1", "w2"]].iloc[1], [-4.2, 0.7], atol=1e-6)
    assert path.loss.iloc[0] == pytest.approx(0.5 * (0.1 * 4.5**2 + 10 * 1.0))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("optimizers", {"lrs": [0.5, 0.1, 1.0]}, r"lrs=.* three learning rates > 0, increasing"),
        ("optimizers", {"steps": 0}, r"steps=0\b"),
        ("mle_efficiency", {"n": 2}, r"n=2 is not valid; an int >= 3"),
        ("mle_efficiency", {"replicates": 1.5}, r"replicates=1\.5\b"),
        ("mle_conditions", {"sizes": [10, "many"]}, r"sizes=\[10, 'many'\]"),
        ("mle_conditions", {"sizes": [2, 10]}, r"sizes=\[2, 10\] .*each an int >= 3"),
        ("mle_conditions", {"starts": 1}, r"starts=1 is not valid; an int >= 2"),
        ("gradient_flow", {"depth": 1}, r"depth=1 is not valid; an int >= 2"),
        ("gradient_flow", {"width": True}, r"width=True\b"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path, name, options, message):
    """A wrong type (the registry's check) or a value the study cannot use (its own, e.g. lrs
    not increasing): one ConfigError naming the option and its value, and nothing written."""
    with pytest.raises(ConfigError, match=message):
        run_claim(name, fast=True, out=tmp_path, **options)
    assert not any(tmp_path.iterdir())
