"""Diagnostics callbacks on real networks and a real Trainer: layer discovery, the statistics
against their definitions, hooks present only on measuring steps, and the files they write."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from nnlab.callbacks import LayerDiagnostics, PredictionDiagnostics, find_layers, output
from nnlab.callbacks.predictions import as_images
from nnlab.core.hydra import instantiate_group
from nnlab.evaluate import load_module
from nnlab.nn.activations import Maxout
from nnlab.nn.networks import MLP, Perceptron
from nnlab.train import train

from .helpers.fitting import data_and_module, quiet_trainer


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def inches(width: float, height: float) -> tuple[int, int]:
    """The pixel size of a figure of this many inches, as saved."""
    return round(width * output.DPI), round(height * output.DPI)


def val_split(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation inputs (normalized, as the model sees them) and targets."""
    batches = list(datamodule.val_dataloader())
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # a complete, valid PNG
    with Image.open(path) as image:
        return image.size


def fit(make_cfg, tmp_path: Path, callbacks: list, *overrides: str, steps: int = 4):
    """Fits the configured module for `steps` optimizer steps with these callbacks only, on the
    CPU: the tests compare with tensors on the CPU, and on a GPU speed=max replays a CUDA graph,
    which no hook can measure (tests/test_speed.py covers that)."""
    datamodule, module = data_and_module(make_cfg(*overrides))
    trainer = quiet_trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=1,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    return trainer, module, datamodule


# -- layers ---------------------------------------------------------------------------------------
def test_layers_are_named_in_network_order():
    net = MLP(64, 10, hidden_sizes=[128, 64], activation={"name": "relu"})
    layers = find_layers(net)
    assert [layer.name for layer in layers] == ["layer1", "layer2", "output"]
    assert [layer.weights.out_features for layer in layers] == [128, 64, 10]
    assert [layer.has_dead_units for layer in layers] == [True, True, False]
    tanh = find_layers(MLP(4, 1, hidden_sizes=[8], activation={"name": "tanh"}, norm="layernorm"))
    assert [(layer.name, layer.has_dead_units) for layer in tanh] == [
        ("layer1", False),
        ("output", False),
    ]
    maxout = find_layers(MLP(4, 2, hidden_sizes=[8, 8], activation={"name": "maxout", "k": 3}))
    assert [layer.name for layer in maxout] == ["layer1", "layer2", "output"]
    assert isinstance(maxout[0].activation, Maxout) and maxout[0].weights.out_features == 24
    assert [layer.name for layer in find_layers(Perceptron(2))] == ["output"]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_statistics_follow_their_definitions(make_cfg, tmp_path, activation):
    diagnostics = LayerDiagnostics(every_n_steps=1, plots=False)
    trainer, module, datamodule = fit(
        make_cfg, tmp_path, [diagnostics], f"activation={activation}", "optimizer=sgd"
    )
    first = module.net[1]  # Flatten, Linear(64 → 128), activation, ...
    with torch.no_grad():  # 32 units can never be positive, 96 always output exactly 1
        first.weight.zero_()
        first.bias.fill_(1.0)
        first.bias[:32] = -1.0
    weight_norms = [layer.weights.weight.norm().item() for layer in find_layers(module.net)]
    trainer.fit(module, datamodule=datamodule)

    rows = read_csv(tmp_path / output.DIRNAME / "activations.csv")
    assert [(r["step"], r["layer"]) for r in rows] == [
        (str(s), layer) for s in range(4) for layer in ("layer1", "layer2")
    ]
    step0 = rows[0]
    negative = -0.01 if activation == "leaky_relu" else 0.0  # leaky ReLU's slope times −1
    values = torch.tensor([negative] * 32 + [1.0] * 96).repeat(64)  # one batch of 64
    # ReLU: a quarter of the units output 0 (zero gradient) for the whole batch: dead. Leaky
    # ReLU: the same units only sit in the negative regime, where a gradient still passes.
    if activation == "relu":
        assert float(step0["dead_fraction"]) == 0.25 and step0["negative_fraction"] == ""
    else:
        assert step0["dead_fraction"] == "" and float(step0["negative_fraction"]) == 0.25
    assert float(step0["nonfinite_fraction"]) == 0.0
    assert float(step0["mean"]) == pytest.approx(values.mean().item(), rel=1e-5)
    assert float(step0["std"]) == pytest.approx(values.std().item(), rel=1e-5)

    grads = read_csv(tmp_path / output.DIRNAME / "gradients.csv")
    at_init = [float(r["weight_norm"]) for r in grads if r["step"] == "0"]
    assert at_init[1:] == pytest.approx(weight_norms[1:], rel=1e-6)  # layer1 was zeroed
    assert at_init[0] == 0.0
    assert all(float(r["grad_norm"]) > 0 for r in grads if r["layer"] == "output")


class HookProbe(L.Callback):
    """Counts the forward hooks on the activation layers at every training step."""

    def __init__(self, diagnostics: LayerDiagnostics) -> None:
        self.diagnostics, self.hooks = diagnostics, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        acts = [layer.activation for layer in self.diagnostics.layers if layer.activation]
        self.hooks.append(sum(len(a._forward_hooks) for a in acts))


def test_hooks_exist_only_on_measuring_steps(make_cfg, tmp_path):
    diagnostics = LayerDiagnostics(every_n_steps=3, plots=False)
    probe = HookProbe(diagnostics)  # after diagnostics: sees the hooks it registered
    # One optimizer step per Lightning batch, so the probe sees every step.
    trainer, module, datamodule = fit(
        make_cfg, tmp_path, [diagnostics, probe], "speed.steps_per_batch=1", steps=7
    )
    trainer.fit(module, datamodule=datamodule)
    assert probe.hooks == [2, 0, 0, 2, 0, 0, 2]  # two hidden layers on steps 0, 3, 6
    assert sum(len(layer.activation._forward_hooks) for layer in diagnostics.layers[:2]) == 0
    assert sorted({r["step"] for r in diagnostics.activation_rows}) == [0, 3, 6]


def test_layer_plots_are_written(make_cfg, tmp_path):
    diagnostics = LayerDiagnostics(every_n_steps=2, histogram_every_n_steps=2)
    trainer, module, datamodule = fit(make_cfg, tmp_path, [diagnostics], steps=5)
    trainer.fit(module, datamodule=datamodule)
    folder = tmp_path / output.DIRNAME
    assert png_size(folder / "activation_std.png") == inches(2 * 5.5, 4)  # two panels
    assert png_size(folder / "dead_units.png") == inches(5.5, 4)
    assert png_size(folder / "grad_norms.png") == inches(2 * 5.5, 4)
    # weights and activations (rows) of layer1, layer2, output (columns)
    assert png_size(folder / "histograms.png") == inches(3 * 3.2, 2 * 2.6)
    hist = read_csv(folder / "histograms.csv")
    counts = [int(r["count"]) for r in hist if r["step"] == "0" and r["kind"] == "weights"]
    assert sum(counts) == 64 * 128 + 128 * 64 + 64 * 10


def test_non_finite_units_are_not_dead(make_cfg, tmp_path):
    diagnostics = LayerDiagnostics(every_n_steps=1, plots=False)
    trainer, module, datamodule = fit(make_cfg, tmp_path, [diagnostics], "optimizer=sgd", steps=1)
    first = module.net[1]
    with torch.no_grad():  # 16 units output NaN, 32 output exactly 0, the rest 1
        first.weight.zero_()
        first.bias.fill_(1.0)
        first.bias[:32] = -1.0
        first.bias[32:48] = math.nan
    module.divergence.enabled = False  # a non-finite loss would stop training (on purpose here)
    trainer.fit(module, datamodule=datamodule)
    step0 = diagnostics.activation_rows[0]
    assert step0["layer"] == "layer1"
    assert step0["dead_fraction"] == 0.25 and step0["nonfinite_fraction"] == 0.125


def test_no_dead_units_for_other_activations(make_cfg, tmp_path):
    diagnostics = LayerDiagnostics(every_n_steps=1)
    trainer, module, datamodule = fit(make_cfg, tmp_path, [diagnostics], "activation=tanh")
    trainer.fit(module, datamodule=datamodule)
    assert all(r["dead_fraction"] is None for r in diagnostics.activation_rows)
    assert not (tmp_path / output.DIRNAME / "dead_units.png").exists()


# -- predictions ----------------------------------------------------------------------------------
def test_confusion_matrix_and_mistakes_match_the_model(make_cfg, tmp_path):
    callback = PredictionDiagnostics(every_n_epochs=1, max_misclassified=10)
    trainer, module, datamodule = fit(make_cfg, tmp_path, [callback], steps=30)
    trainer.fit(module, datamodule=datamodule)
    x, y = val_split(datamodule)
    with torch.no_grad():
        predicted = module.eval().predict(x)
    folder = tmp_path / output.DIRNAME
    rows = read_csv(folder / "confusion_matrix.csv")
    names = list(datamodule.spec.class_names)
    matrix = torch.tensor([[int(r[n]) for n in names] for r in rows])
    assert matrix.sum() == len(y)
    assert matrix.trace().item() == (predicted == y).sum().item()
    assert [r["true"] for r in rows] == names
    mistakes = read_csv(folder / "misclassified.csv")
    assert 0 < len(mistakes) <= 10
    for m in mistakes:
        i = int(m["index"])
        assert m["true"] == names[y[i]] != m["predicted"] == names[predicted[i]]
    confidences = [float(m["confidence"]) for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    assert png_size(folder / "confusion_matrix.png") == inches(7.5, 6.5)  # 10 classes
    rows_of_8 = -(-len(mistakes) // 8)
    assert png_size(folder / "misclassified.png") == inches(1.6 * 8, 1.8 * rows_of_8 + 0.4)


def test_a_confusion_figure_over_many_classes_shows_the_most_confused_ones():
    n = 1000
    matrix = np.diag(np.full(n, 5))
    confused = [3, 17, 400, 999]  # each mistaken for the next one, more often down the list
    for k, (a, b) in enumerate(zip(confused, confused[1:] + confused[:1], strict=True)):
        matrix[a, b] = k + 1
    keep = output.most_confused(matrix, 30)
    assert len(keep) == 30 and set(confused) <= set(keep) and list(keep) == sorted(keep)
    fig = output.confusion_plot(matrix, [f"c{i}" for i in range(n)], "title")
    # 30 classes drawn, whatever the class count (1,351 classes once took 24 GB).
    assert tuple(fig.get_size_inches()) == (0.45 * 30 + 3, 0.45 * 30 + 2)
    assert "30 most confused of 1000 classes" in fig.axes[0].get_title()
    assert len(fig.axes[0].get_xticklabels()) == 30


def test_final_predictions_describe_the_best_checkpoint(make_cfg):
    # Maximizing val/loss makes epoch 0 the best of three: its weights differ from the last.
    cfg = make_cfg(
        "trainer.max_epochs=3", "optimized_metric=val/loss", "optimized_mode=max", "logger=none"
    )
    train(cfg)
    folder = Path(cfg.paths.output_dir) / output.DIRNAME
    datamodule, _ = data_and_module(cfg)
    x, y = val_split(datamodule)
    names = list(datamodule.spec.class_names)
    rows = read_csv(folder / "confusion_matrix.csv")
    assert [r["epoch"] for r in rows] == ["0"] * len(names)  # the best epoch, not the last (2)
    final = torch.tensor([[int(r[n]) for n in names] for r in rows])
    best_ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    with torch.no_grad():
        best = load_module(best_ckpt).eval().predict(x)
        last = load_module(best_ckpt.with_name("last.ckpt")).eval().predict(x)
    assert final.trace().item() == (best == y).sum().item() != (last == y).sum().item()
    assert final.tolist() == [
        [int(((y == t) & (best == p)).sum()) for p in range(len(names))] for t in range(len(names))
    ]


def test_regression_predictions_are_in_the_targets_own_units(make_cfg, tmp_path):
    # Prices in dollars, trained on as standardized logs: the CSV shows dollars again.
    lines = ["area,price"] + [f"{a},{1000 * a + 50_000}" for a in range(40, 240)]
    (tmp_path / "houses.csv").write_text("\n".join(lines) + "\n")
    cfg = make_cfg(
        "data=house_prices_csv",
        f"data.path={tmp_path / 'houses.csv'}",
        "data.target=price",
        "data.log_target=true",
        "trainer.max_epochs=2",
        "logger=none",
    )
    train(cfg)
    datamodule, _ = data_and_module(cfg)
    _, y = val_split(datamodule)
    rows = read_csv(Path(cfg.paths.output_dir) / output.DIRNAME / "predictions.csv")
    actual = torch.tensor([float(r["actual"]) for r in rows], dtype=torch.float64)
    expected = datamodule.spec.target_scale.to_original(y.double().reshape(-1))
    torch.testing.assert_close(actual, expected)
    assert actual.min() > 89_000 and all(float(r["predicted"]) > 0 for r in rows)
    for r in rows:
        residual = float(r["predicted"]) - float(r["actual"])
        assert float(r["residual"]) == pytest.approx(residual, rel=1e-6, abs=1e-6)


def test_regression_scatter_and_residuals(make_cfg, tmp_path):
    trainer, module, datamodule = fit(
        make_cfg, tmp_path, [PredictionDiagnostics()], "data=linear_regression", steps=20
    )
    trainer.fit(module, datamodule=datamodule)
    x, y = val_split(datamodule)
    with torch.no_grad():
        predicted = module.eval()(x).squeeze(-1)
    rows = read_csv(tmp_path / output.DIRNAME / "predictions.csv")
    assert len(rows) == len(y)
    actual = torch.tensor([float(r["actual"]) for r in rows])
    residual = torch.tensor([float(r["residual"]) for r in rows])
    torch.testing.assert_close(actual, y.float())
    torch.testing.assert_close(residual, predicted - y, rtol=1e-5, atol=1e-5)
    folder = tmp_path / output.DIRNAME
    assert png_size(folder / "pred_vs_actual.png") == inches(5, 5)
    assert png_size(folder / "residuals.png") == inches(5.5, 4)
    assert math.isfinite(residual.abs().max().item())


# -- configuration -------------------------------------------------------------------------------
def test_diagnostics_group_builds_the_callbacks(make_cfg):
    assert instantiate_group(make_cfg("diagnostics=none").get("diagnostics")) == []
    basic = instantiate_group(make_cfg("diagnostics=basic").diagnostics)
    assert [type(c) for c in basic] == [LayerDiagnostics, PredictionDiagnostics]
    assert basic[0].histogram_every_n_steps == 0
    full = instantiate_group(make_cfg("diagnostics=full").diagnostics)
    assert full[0].histogram_every_n_steps > 0 and full[1].max_misclassified > 0


def test_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="every_n_steps must be >= 1"):
        LayerDiagnostics(every_n_steps=0)
    with pytest.raises(ValueError, match="multiple of every_n_steps"):
        LayerDiagnostics(every_n_steps=50, histogram_every_n_steps=75)
    with pytest.raises(ValueError, match=">= 0"):
        PredictionDiagnostics(every_n_epochs=-1)


def test_grouped_steps_are_measured_at_the_due_steps(make_cfg):
    """speed=max on the CPU takes 8 optimizer steps per Lightning batch: the hooks stay on for
    a batch holding a due step and record that step exactly."""
    cfg = make_cfg(
        "speed=max",
        "diagnostics=basic",
        "diagnostics.layers.every_n_steps=10",
        "trainer.max_epochs=1",
        "logger=none",
        "test=false",
    )
    train(cfg)
    folder = Path(cfg.paths.output_dir) / output.DIRNAME
    # 20 steps in batches of 8, 8, 4 starting at steps 0, 8, 16: due at 0 and 10.
    activations = read_csv(folder / "activations.csv")
    assert sorted({int(r["step"]) for r in activations}) == [0, 10]
    gradients = read_csv(folder / "gradients.csv")
    assert sorted({int(r["step"]) for r in gradients}) == [0, 10]
    assert all(float(r["grad_norm"]) > 0 for r in gradients)


def test_a_graph_captured_step_is_not_hooked(make_cfg, tmp_path, caplog):
    """With speed.cuda_graph the module's steps are replayed from a CUDA graph: hooks present at
    capture would be baked into every replay, so none are registered, and the log says why."""
    diagnostics = LayerDiagnostics(every_n_steps=1, plots=False)
    # A plain step taken for captured (TaskModule.captures_step), as on a GPU.
    trainer, module, datamodule = fit(make_cfg, tmp_path, [diagnostics], "speed.steps_per_batch=1")
    module.captures_step = True  # what the fast path sets for a fit on a GPU
    with caplog.at_level("WARNING", logger="nnlab.callbacks.layers"):
        trainer.fit(module, datamodule=datamodule)
    assert not (tmp_path / output.DIRNAME / "activations.csv").exists()
    assert sum(len(layer.activation._forward_hooks) for layer in diagnostics.layers[:2]) == 0
    assert [r.message for r in caplog.records if "cuda_graph" in r.message]


def test_mistake_images_are_stretched_each_and_uniform_ones_shown_grey():
    x = torch.stack([torch.linspace(-2, 3, 16).reshape(1, 4, 4), torch.full((1, 4, 4), -1.5)])
    images = as_images(x)
    assert images.shape == (2, 4, 4)
    assert images[0].min() == 0.0 and images[0].max() == 1.0
    assert (images[1] == 0.5).all()  # not black: a uniform picture has no range to stretch
