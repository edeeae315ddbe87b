"""The lecture's claims (nnlab.lecture), each asserted on the numbers its study returns, in
fast mode; and the `python -m nnlab.lecture` command."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.contour import ContourSet
from torch import nn

from nnlab.core import ConfigError
from nnlab.lecture import CLAIMS, Claim, run_claim
from nnlab.lecture.__main__ import main
from nnlab.lecture.dead_units import dead_masks, dead_units
from nnlab.lecture.layers import collapse
from nnlab.nn.activations import ACTIVATIONS, create_activation
from nnlab.nn.networks import MLP

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def claim(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Claim]:
    """Runs a claim's study in fast mode once per module (seed 0) and returns its Claim."""
    done: dict[str, Claim] = {}

    def get(name: str) -> Claim:
        if name not in done:
            done[name] = run_claim(name, fast=True, seed=0, out=tmp_path_factory.mktemp(name))
        return done[name]

    return get


def wrote(result: Claim) -> None:
    """The claim's folder holds its verdict line, and every figure and table it reports."""
    assert (result.folder / "verdict.txt").read_text().strip() == result.verdict
    for path in [*result.figures.values(), *result.tables.values()]:
        assert path.parent == result.folder and path.stat().st_size > 0
    for path in result.figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_perceptron_converges_on_and_or_separable_never_on_xor(claim):
    result = claim("perceptron")
    n = result.numbers
    assert n["converged_epochs"]["AND"] is not None and n["converged_epochs"]["OR"] is not None
    assert n["converged_epochs"]["separable"] is not None
    assert n["converged_epochs"]["XOR"] is None
    first, again = n["xor_cycle"]  # (w, b) repeats: the rule cycles forever
    assert 1 <= first < again
    assert n["noisy_xor_min_mistakes"] > 0
    accuracy = n["xor_test_accuracy"]
    assert accuracy["perceptron"] <= 0.77 and accuracy["logistic regression"] <= 0.77
    assert accuracy["MLP, 8 tanh units"] >= 0.95
    assert result.held and set(result.figures) == {"mistakes", "xor_boundaries"}
    wrote(result)


def test_perceptron_xor_panels_draw_each_models_own_output(claim):
    """Each panel's shading is its model's σ(score) (the perceptron's: its class) on the image's
    own grid, its black line is where the model's score is 0, its points are the test split."""
    result = claim("perceptron")
    axes = result.plots["xor_boundaries"].axes[:3]
    assert [ax.get_title().split("\n")[0] for ax in axes] == list(result.fits)
    for ax, (name, model) in zip(axes, result.fits.items(), strict=True):
        (image,) = ax.images
        shown = torch.as_tensor(np.asarray(image.get_array()), dtype=torch.float32)
        left, right, bottom, top = image.get_extent()
        x1 = torch.linspace(left, right, shown.shape[1])
        x2 = torch.linspace(bottom, top, shown.shape[0])  # origin="lower": row 0 at the bottom
        grid = torch.cartesian_prod(x2, x1).flip(1)  # (x₁, x₂), x₁ fastest
        score = model.network(grid).view(shown.shape)
        expected = (score > 0).float() if name == "perceptron" else torch.sigmoid(score)
        torch.testing.assert_close(shown, expected)
        lines = [c for c in ax.collections if isinstance(c, ContourSet) and c.levels[0] == 0]
        if score.min() < 0 < score.max():
            (boundary,) = lines
            vertices = torch.as_tensor(np.concatenate([p.vertices for p in boundary.get_paths()]))
            assert len(vertices) > 10
            assert model.network(vertices.float()).abs().max() < 0.05
        else:  # logistic regression on XOR, p ≈ 0.5: no line in view, and the title says why
            assert not lines and "p ≈ 0.5 everywhere" in ax.get_title()
        points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        x, _ = model.data.splits["test"]
        assert sorted(map(tuple, np.concatenate(points).tolist())) == sorted(map(tuple, x.tolist()))


def test_feedforward_is_x_w_transposed_plus_b(claim):
    result = claim("feedforward")
    assert result.numbers["batch_max_abs_diff"] <= 1e-6
    assert result.numbers["image_max_abs_diff"] <= 1e-5
    assert result.numbers["in_features"] == 64  # 1 × 8 × 8 digits, flattened
    frame = result.frames["shapes"]
    shapes = {(b, t): s for b, t, s in zip(frame.batch, frame.tensor, frame["shape"], strict=True)}
    assert shapes["random", "X"] == "5×4" and shapes["random", "W"] == "3×4"
    assert shapes["random", "b"] == "3" and shapes["random", "Y"] == "5×3"
    assert shapes["digits", "images"] == "8×1×8×8" and shapes["digits", "X (flattened)"] == "8×64"
    assert shapes["digits", "W"] == "10×64" and shapes["digits", "Y"] == "8×10"
    assert result.held
    wrote(result)
    # In a notebook the claim shows its verdict and figures, embedded.
    page = result._repr_html_()
    assert result.verdict.split(":")[0] in page and page.count("data:image/png;base64,") == 2


def test_collapse_is_the_product_of_the_weights():
    torch.manual_seed(0)
    net = MLP(6, 2, hidden_sizes=[5, 4], activation={"name": "identity"})
    (w1, b1), (w2, b2), (w3, b3) = [(m.weight, m.bias) for m in net if isinstance(m, nn.Linear)]
    w, b = collapse(net)
    torch.testing.assert_close(w, w3 @ w2 @ w1)
    torch.testing.assert_close(b, w3 @ (w2 @ b1 + b2) + b3)
    x = torch.randn(32, 6)
    assert (net(x) - (x @ w.T + b)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="more than Linear"):
        collapse(MLP(6, 2, hidden_sizes=[5], activation={"name": "tanh"}))


def test_linear_collapse_fits_xor_no_better_than_one_layer(claim):
    result = claim("linear_collapse")
    n = result.numbers
    assert n["gap_at_init"] <= 1e-5 and n["gap_trained"] <= 1e-5
    loss, accuracy = n["final_train_loss"], n["test_accuracy"]
    deep = "3 hidden layers, no activation"
    assert loss[deep] >= loss["one linear layer"] - 0.01
    assert loss[deep] >= math.log(2) - 0.02  # XOR's balanced classes: no line beats ½
    assert accuracy[deep] <= 0.77
    assert loss["3 hidden layers, tanh"] < 0.1 and accuracy["3 hidden layers, tanh"] >= 0.95
    assert result.held
    wrote(result)


def test_activations_every_config_saturation_and_gains(claim):
    result = claim("activations")
    names = {p.stem for p in (ROOT / "configs" / "activation").glob("*.yaml")}
    assert set(result.frames["activations"].activation) == names
    gains = result.numbers["gains"]
    assert gains["relu"] == pytest.approx(math.sqrt(2)) and gains["tanh"] == pytest.approx(5 / 3)
    assert gains["identity"] == pytest.approx(1.0)
    saturation = result.numbers["saturation"]
    assert saturation["sigmoid"] == (True, True) and saturation["tanh"] == (True, True)
    assert saturation["relu"] == (True, False)
    assert saturation["leaky_relu"] == (False, False) and saturation["identity"] == (False, False)
    # He's definition 1/√E[f(z)²] gives √2 for ReLU too (sampled: within 1 %).
    assert result.numbers["gain_he"]["relu"] == pytest.approx(math.sqrt(2), rel=0.01)
    assert result.held
    wrote(result)


def test_activations_panels_follow_the_registry_and_draw_each_function(claim):
    """Panels in the registry's (the course's) order; each f(x) line is that activation on the
    line's own x; maxout's f is the max of the pieces drawn with it."""
    result = claim("activations")
    axes = [ax for ax in result.plots["activations"].axes if ax.axison]
    names = [ax.get_title().split()[0] for ax in axes]
    assert names == [entry.name for entry in ACTIVATIONS]
    for ax, name in zip(axes, names, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        x = torch.as_tensor(lines["f(x)"].get_xdata())
        f = torch.as_tensor(lines["f(x)"].get_ydata())
        if name == "maxout":
            parts = [torch.as_tensor(v.get_ydata()) for k, v in lines.items() if "piece" in k]
            assert len(parts) == 2 and "max of its 2 affine pieces" in ax.get_title()
            torch.testing.assert_close(f, torch.stack(parts).amax(0))
        else:
            with torch.no_grad():
                expected = create_activation(name, width=1)(x[:, None]).squeeze(-1)
            torch.testing.assert_close(f, expected)


def test_init_variance_kaiming_flat_normal_explodes_constant_identical(claim):
    result = claim("init_variance")
    n = result.numbers
    assert n["depth"] >= 20
    ratio = n["std_ratio"]
    assert 0.5 <= ratio["Kaiming + ReLU"] <= 2.0
    assert 0.1 <= ratio["Xavier + tanh"] <= 1.2  # flat-ish, slowly decaying
    assert ratio["N(0, 1) + ReLU"] > 1e3  # explodes
    assert n["saturated_last_layer"]["N(0, 1) + tanh"] > 0.5  # saturates
    assert ratio["N(0, 1/d) + ReLU"] < 0.1  # ReLU halves the variance per layer
    assert n["constant_unit_spread"] == 0.0  # every unit of a layer computes the same
    assert n["trained_row_spread"]["constant"] < 1e-5 < n["trained_row_spread"]["kaiming_normal"]
    accuracy = n["test_accuracy"]
    assert accuracy["constant"] < accuracy["kaiming_normal"]
    assert set(result.figures) == {"std_by_layer", "constant_init"}
    wrote(result)


def test_init_variance_xavier_relu_shrinks(claim):
    """The course's Xavier has no activation gain: with ReLU the std shrinks over depth."""
    result = claim("init_variance")
    assert result.numbers["std_ratio"]["Xavier + ReLU"] < 0.1
    assert result.held


def test_dead_units_definition():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -10.0, 0.0]))  # unit 2 is never positive
    x = torch.rand(64, 2)
    assert dead_units(net, x) == [pytest.approx(1 / 3)]
    net[1] = nn.LeakyReLU(0.01)
    assert dead_units(net, x) == [0.0]
    with torch.no_grad():
        net[0].weight[0, 0] = math.nan
    assert dead_units(net, x) is None  # diverged, not dead


def test_dead_relu_grows_with_the_learning_rate(claim):
    result = claim("dead_relu")
    frame = result.frames["dead_units"]
    relu = frame[(frame.activation == "relu") & ~frame.diverged]
    assert relu.dead_fraction.iloc[0] <= 0.1
    assert relu.dead_fraction.max() >= 0.3
    assert relu.lr[relu.dead_fraction.idxmax()] > relu.lr.iloc[0]
    others = frame[frame.activation != "relu"]
    assert (~others.diverged).sum() >= 3 and (others[~others.diverged].dead_fraction == 0).all()
    assert frame[frame.diverged].dead_fraction.isna().all()
    # The left panel draws the table: ReLU's dead share against the learning rate.
    (line,) = [
        ln for ln in result.plots["dead_units"].axes[0].get_lines() if ln.get_label() == "relu"
    ]
    np.testing.assert_allclose(line.get_xydata(), relu[["lr", "dead_fraction"]].to_numpy())
    assert result.held
    wrote(result)


def test_dead_relu_first_layer_never_revives_deeper_layers_do(claim):
    result = claim("dead_relu")
    frame = result.frames["revival"]
    first, second = (frame[frame.layer == k] for k in (1, 2))
    assert first.dead.iloc[-1] > 0 and (first.revived == 0).all()
    assert first.dead.is_monotonic_increasing  # once dead, always dead
    assert second.revived.iloc[-1] > 0 and not second.dead.is_monotonic_increasing
    assert result.numbers["revived"] == {1: 0, 2: int(second.revived.iloc[-1])}


def test_dead_tracker_sees_a_unit_die_and_a_deeper_one_come_back():
    """dead_masks per layer: a first-layer unit with a very negative bias is dead; a second-layer
    unit dead on the first layer's output comes back when that layer changes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    x = torch.rand(16, 2)
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.copy_(torch.tensor([0.0, -10.0]))  # unit 2 of layer 1: dead
        net[2].weight.copy_(torch.tensor([[-1.0, 0.0]]))  # layer 2's unit: −x₁ ≤ 0, dead
        net[2].bias.zero_()
    masks = dead_masks(net, x)
    assert [m.tolist() for m in masks] == [[False, True], [True]]
    with torch.no_grad():
        net[0].weight[0, 0] = -1.0  # the layer below changes: x₁ ↦ ReLU(−x₁) = 0 ...
        net[2].bias.fill_(0.5)  # ... and layer 2's unit sees a positive input again
    assert [m.tolist() for m in dead_masks(net, x)] == [[True, True], [False]]


def test_losses_outliers_mle_bce_and_stability(claim):
    result = claim("losses")
    n = result.numbers
    bias = {k: abs(v["bias_error"]) for k, v in n["robust"].items()}
    assert bias["mse"] > 5 * max(bias["l1"], bias["huber"])
    assert n["robust"]["l1"]["test_mse"] < 0.05 < n["robust"]["mse"]["test_mse"]
    assert n["mse"] == n["gaussian_nll"] and n["l1"] == n["laplace_nll"]
    assert abs(n["mse"] - n["mean"]) <= n["grid_step"]
    assert abs(n["l1"] - n["median"]) <= n["grid_step"]
    assert n["mean"] > n["median"] + 1  # the outliers pull the mean, not the median
    assert n["bce_softplus_max_gap"] <= 1e-5
    # float32's e^t overflows past t = ln(3.4e38) ≈ 88.7
    assert 88 < n["naive_logsigmoid_overflow_at"] < 90
    assert 88 < n["naive_softmax_ce_overflow_at"] < 90
    assert n["stable_finite"] and n["stable_vs_naive_where_finite"] < 1e-4
    assert result.held
    wrote(result)


def test_losses_robust_fit_draws_each_models_own_predictions(claim):
    """The left panel's points of each loss are its model's ŷ at the training inputs (against
    the true signal), the middle panel's are ŷ − (w·x + b)."""
    result = claim("losses")
    left, middle, _ = result.plots["robust_fit"].axes
    assert set(result.fits) == {"mse", "l1", "huber"}
    for loss, model in result.fits.items():
        x, _ = model.data.splits["train"]
        signal = (x @ model.data.true_weight + model.data.true_bias).numpy()
        predicted = model.network(x).squeeze(-1).numpy()
        (shown,) = [c for c in left.collections if c.get_label().startswith(f"{loss}: ")]
        np.testing.assert_allclose(shown.get_offsets(), np.stack([signal, predicted], 1))
        (gap,) = [c for c in middle.collections if c.get_label().startswith(f"{loss}: ")]
        np.testing.assert_allclose(gap.get_offsets()[:, 1], predicted - signal, atol=1e-5)
        bias = result.numbers["robust"][loss]["bias_error"]
        assert f"{bias:+.2f}" in gap.get_label()


def test_learning_rate_too_small_right_too_big(claim):
    result = claim("learning_rate")
    small, right_lr, big = 0.001, 0.1, 1.1
    final = result.numbers["final_loss"]
    assert final[right_lr] <= 0.02 and final[small] > 10 * final[right_lr]
    assert not math.isfinite(final[big])
    frame = result.frames["learning_rate"]
    epochs = frame[frame.lr == small].epoch.max()
    assert (frame.groupby("lr").epoch.count() == epochs).all()  # diverged epochs kept
    assert (~frame[frame.lr == big].train_loss.apply(math.isfinite)).sum() >= 1
    assert result.numbers["fate"][big].startswith("diverged")
    # Too small and right share a panel; the diverging run, 1e30s, gets its own.
    left, right = result.plots["learning_rate"].axes
    curves = {
        ax: [ln.get_label() for ln in ax.get_lines() if ln.get_label()[:1] != "_"]
        for ax in (left, right)
    }
    assert curves[left][:2] == [f"lr {small:g} (too small)", f"lr {right_lr:g} (right)"]
    assert curves[right][0].startswith(f"lr {big:g} (too big), diverged")
    assert max(left.get_ylim()) < 1e3
    assert result.held
    wrote(result)


def test_gd_regimes_epochs_updates_time(claim):
    result = claim("gd_regimes")
    frame = result.frames["gd_regimes"]
    last = frame.groupby("regime").last()
    epochs = int(last.epoch.iloc[0])
    n_train = last.updates["per-sample SGD"] // epochs
    assert last.updates["full-batch GD"] == epochs
    assert last.updates["mini-batch SGD (32)"] == epochs * math.ceil(n_train / 32)
    first = result.numbers["first_epoch_loss"]
    assert first["per-sample SGD"] < first["mini-batch SGD (32)"] < first["full-batch GD"]
    late = result.numbers["late_loss"]
    assert late["per-sample SGD"] > late["mini-batch SGD (32)"]  # one sample: a noisy floor
    seconds = result.numbers["seconds_to_target"]
    assert seconds["mini-batch SGD (32)"] < seconds["per-sample SGD"]
    updates = result.numbers["updates_to_target"]
    assert updates["mini-batch SGD (32)"] in set(frame.updates)
    assert (frame.groupby("regime").seconds.diff().dropna() > 0).all()
    # The dotted line is the true line's MSE on the held-out split, and says so.
    floor = result.numbers["held_out_floor"]
    assert 0.005 < floor < 0.02
    (line,) = [
        ln for ln in result.plots["gd_regimes"].axes[0].get_lines() if "true line" in ln.get_label()
    ]
    assert line.get_ydata()[0] == floor and f"{floor:.4f}" in line.get_label()
    assert result.held
    wrote(result)


def test_mle_consistency_error_shrinks_like_one_over_root_n(claim):
    result = claim("mle_consistency")
    errors = list(result.numbers["mean_error"].values())
    assert errors == sorted(errors, reverse=True)
    assert -0.75 <= result.numbers["slope"] <= -0.3
    assert errors[0] / errors[-1] >= 3
    # The right panel draws each fitted model's coefficient minus the true one (first data set).
    frame = result.frames["mle_consistency"]
    first = frame[frame.seed == frame.seed.min()]
    lines = {ln.get_label(): ln for ln in result.plots["mle_consistency"].axes[1].get_lines()}
    np.testing.assert_allclose(lines["w1"].get_ydata(), first.w0 - first.true_w0)
    np.testing.assert_allclose(lines["b"].get_ydata(), first.w5 - first.true_w5)
    assert result.held
    wrote(result)


def test_run_claim_refuses_unknown_names_and_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown claim"):
        run_claim("backprop", out=tmp_path)
    with pytest.raises(ConfigError, match="valid: width, depth, nets"):
        run_claim("init_variance", out=tmp_path, widht=64)  # codespell:ignore


def lecture(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "nnlab.lecture", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_writes_one_claims_folder(tmp_path):
    proc = lecture("feedforward", "--out", "tmp", "--fast", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "tmp" / "feedforward"
    assert {p.name for p in folder.iterdir()} == {
        "affine_batch.png",
        "flatten.png",
        "shapes.csv",
        "verdict.txt",
    }
    verdict = (folder / "verdict.txt").read_text().strip()
    assert verdict.startswith("HELD feedforward:") and verdict in proc.stdout
    assert len(pd.read_csv(folder / "shapes.csv")) == 9


def test_cli_refuses_a_malformed_option(capsys):
    assert main(["init_variance", "--fast", "-o", "width"]) == 2
    assert "-o takes KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow  # every claim in fast mode: ~50 s
def test_cli_all_writes_the_report(tmp_path):
    proc = lecture("all", "--out", "run", "--fast", cwd=tmp_path)
    root = tmp_path / "run"
    report = (root / "report.md").read_text()
    verdicts = {name: (root / name / "verdict.txt").read_text().strip() for name in CLAIMS}
    for name, verdict in verdicts.items():
        assert f"## {name}" in report and verdict in report and verdict in proc.stdout
        for png in (root / name).glob("*.png"):
            assert f"]({name}/{png.name})" in report
    assert proc.returncode == (0 if all(v.startswith("HELD") for v in verdicts.values()) else 1)
