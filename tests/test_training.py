"""Real training runs through nnlab.train with the real configs and a real Lightning Trainer."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from nnlab.core import ConfigError, Diverged
from nnlab.data.base import ArrayDataModule
from nnlab.evaluate import evaluate, load_module
from nnlab.train import train

QUIET = ("logger=none",)

# Each task with a spread of activation / init / loss / optimizer / scheduler / batch options.
FAST_DEV_RUNS = [
    ("data=digits", "model=mlp", "activation=relu", "init=kaiming", "optimizer=adam"),
    ("data=digits", "model=linear", "optimizer=sgd", "data.batch_size=full"),
    (
        "data=digits",
        "activation=maxout",
        "init=xavier_uniform",
        "optimizer=adamw",
        "scheduler=cosine",
        "loss=cross_entropy",
        "loss.label_smoothing=0.1",
    ),
    (
        "data=digits",
        "activation=prelu",
        "activation.per_unit=true",
        "model.norm=batchnorm",
        "scheduler=step",
    ),
    (
        "data=digits",
        "activation=elu",
        "init=lecun_normal",
        "model.norm=layernorm",
        "model.dropout=0.2",
        "loss=cross_entropy",
        "loss.weight=[1,1,1,1,1,1,1,1,1,2]",
    ),
    (
        "data=xor",
        "activation=tanh",
        "init=xavier_normal",
        "optimizer=sgd_momentum",
        "optimizer.nesterov=true",
    ),
    (
        "data=xor",
        "model=linear",
        "loss=bce_with_logits",
        "loss.pos_weight=2.0",
        "data.batch_size=1",
    ),
    ("data=xor", "activation=sigmoid", "init=normal", "scheduler=plateau"),
    ("data=separable", "model=perceptron", "init=zeros"),
    ("data=linear_regression", "model=linear", "optimizer=sgd", "loss=mse"),
    ("data=linear_regression", "activation=softplus", "init=kaiming_uniform", "loss=huber"),
    ("data=linear_regression", "activation=abs", "init=constant", "loss=l1"),
    (
        "data=linear_regression",
        "activation=leaky_relu",
        "init=default",
        "activation.negative_slope=0.2",
    ),
    ("data=linear_regression", "activation=identity", "init=zeros"),
]


def read_results(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())


@pytest.mark.parametrize("overrides", FAST_DEV_RUNS, ids=lambda o: " ".join(o))
def test_fast_dev_run(make_cfg, overrides):
    cfg = make_cfg(*overrides, *QUIET, "debug=fdr")
    train(cfg)
    results = read_results(cfg)
    metrics = {**results["val"], **results["test"]}
    assert "test/loss" in metrics and all(math.isfinite(v) for v in metrics.values())


def test_default_loss_follows_the_task(make_cfg):
    for data, key in (
        ("digits", "test/acc"),
        ("xor", "test/auroc"),
        ("linear_regression", "test/r2"),
    ):
        cfg = make_cfg(f"data={data}", *QUIET, "debug=fdr")
        train(cfg)
        assert key in read_results(cfg)["test"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("data=digits", "loss=mse"), "valid losses for multiclass: auto, cross_entropy"),
        (
            ("data=linear_regression", "loss=cross_entropy"),
            "valid losses for regression: auto, mse, l1, huber",
        ),
        (("data=xor", "loss=huber"), "valid losses for binary: auto, bce_with_logits"),
        (("data=digits", "model=perceptron"), "model=perceptron cannot train data=digits"),
        (("data=linear_regression", "model=perceptron"), "model=perceptron cannot train"),
        (("data.batch_size=0",), "batch_size must be a positive int or 'full'"),
        (("activation.name=swish",), "unknown activation 'swish'; valid: identity"),
        (("init.name=orthogonal",), "unknown init 'orthogonal'; valid: default, zeros"),
        (("speed.resident=sometimes",), "speed.resident must be one of auto, True, False"),
        (("speed.optimizer_impl=fast",), "speed.optimizer_impl must be one of null, fused"),
        (("speed.matmul_precision=low",), "speed.matmul_precision must be one of highest"),
        (("speed.steps_per_batch=0",), "speed.steps_per_batch must be auto or an int >= 1"),
        (("speed.cuda_graph=maybe",), "speed.cuda_graph must be true or false"),
        (("speed.write_checkpoints_every_s=-1",), "write_checkpoints_every_s must be a number"),
        (("speed.sanity_val_steps=-2",), "speed.sanity_val_steps must be null, -1"),
        (("seed=abc",), "seed must be an int in [0, 4294967295] or null, got 'abc'"),
        (("trainer.max_epochs=abc",), "trainer.max_epochs must be int or null, got 'abc'"),
        (("+trainer.max_epoch=3",), "did you mean trainer.max_epochs? valid: accelerator"),
        (("trainer.precision=bf17",), "trainer.precision must be one of 64, 32, 16, "),
        (
            ("trainer=cpu", "trainer.precision=16-mixed"),
            "trainer.precision=16-mixed (fp16 autocast with gradient scaling) needs a CUDA GPU; "
            "on the CPU use trainer.precision=bf16-mixed or 32-true",
        ),
        (("data.val_fraction=x",), "data.val_fraction must be float, got 'x'"),
        (("+data.bogus=1",), "data.bogus is not an option of nnlab.data.toy.DigitsData"),
        (("model.hidden_sizes=[0]",), "model.hidden_sizes must be ints >= 1, got [0]"),
        (("model.hidden_sizes=abc",), "model.hidden_sizes must be a list of int, got 'abc'"),
        (
            ("activation=maxout", "activation.k=0"),
            "activation.k: maxout needs k >= 1 pieces, got 0",
        ),
        (("optimizer.lr=-1",), "optimizer=adam: Invalid learning rate: -1"),
        (("+optimizer.foo=1",), "optimizer.foo is not an option of torch.optim.Adam"),
        (("scheduler=step", "scheduler.gamma=abc"), "scheduler.gamma must be float, got 'abc'"),
        (("ckpt_path=/no/such.ckpt",), "ckpt_path=/no/such.ckpt: no such file"),
        (("data.val_fraction=1.5",), "data.val_fraction must be in (0, 1), got 1.5"),
        (("data.normalize=zscore",), "data.normalize must be one of global, feature, none"),
        (("init=normal", "init.std=-1"), "init.std must be >= 0, got -1"),
        (("init=kaiming", "init.mode=fan_avg"), "init.mode must be fan_in or fan_out"),
        (("+init.std=0.1",), "init=default takes no options, got std"),
        (("init=xavier", "init.bias=abc"), "init.bias must be a number, got 'abc'"),
        (("activation=prelu", "activation.init=abc"), "activation.init must be float, got 'abc'"),
        (("activation=elu", "+activation.beta=2"), "activation.beta is not an option of elu"),
        (
            ("data=linear_regression", "loss=huber", "loss.delta=-1"),
            "loss.delta must be > 0, got -1",
        ),
        (("loss=cross_entropy", "loss.label_smoothing=2"), "loss.label_smoothing must be in"),
        (("optimizer.betas=[0.9]",), "optimizer.betas must be a list of 2 (float or Tensor"),
        (("trainer.max_epochs=-5",), "`max_epochs` must be a non-negative integer or -1"),
        (("diagnostics.layers.every_n_steps=0",), "diagnostics.layers.every_n_steps must be"),
        (
            ("callbacks.model_checkpoint.mode=avg",),
            "callbacks.model_checkpoint: `mode` can be min, max but got avg",
        ),
        pytest.param(
            ("trainer=gpu",),
            "trainer.accelerator=gpu, but torch",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_invalid_combinations_fail_before_any_data_is_loaded(
    make_cfg, monkeypatch, overrides, message
):
    def no_loading(self, stage=None):
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr(ArrayDataModule, "setup", no_loading)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(make_cfg(*overrides, *QUIET))


def test_a_checkpoint_metric_the_task_does_not_log_is_refused_before_fitting(make_cfg):
    cfg = make_cfg("optimized_metric=val/f00", "optimized_mode=max", *QUIET)
    with pytest.raises(ConfigError, match="valid: val/acc, val/acc_best, val/f1, val/loss"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_bf16_mixed_trains_on_the_cpu_to_the_fp32_accuracy(make_cfg):
    """trainer.precision is a first-class key: bf16 autocast on the CPU reaches the accuracy of
    fp32 within noise (digits, the default MLP, 8 epochs)."""
    accuracy = {}
    for precision in ("32-true", "bf16-mixed"):
        cfg = make_cfg("trainer=cpu", f"trainer.precision={precision}", "trainer.max_epochs=8")
        train(cfg)
        accuracy[precision] = read_results(cfg)["test"]["test/acc"]
    assert accuracy["32-true"] >= 0.9
    assert abs(accuracy["bf16-mixed"] - accuracy["32-true"]) <= 0.03, accuracy


def test_perceptron_converges_on_separable_data(make_cfg):
    cfg = make_cfg("data=separable", "model=perceptron", "trainer.max_epochs=100", *QUIET)
    train(cfg)
    results = read_results(cfg)
    # It stops as soon as an epoch makes no mistake, well before max_epochs.
    assert results["epochs"] < 100
    assert results["val"]["val/acc"] >= 0.97 and results["test"]["test/acc"] >= 0.97


def linear_ceiling(split) -> float:
    """The best accuracy any line can reach on balanced XOR: all corners but one."""
    x, _ = split
    corner = x.round().clamp(0, 1)
    counts = torch.unique(corner, dim=0, return_counts=True)[1]
    return 1 - counts.min().item() / len(x)


@pytest.mark.slow
def test_perceptron_cannot_learn_xor_but_one_hidden_layer_can(make_cfg):
    cfg = make_cfg("experiment=xor_perceptron", *QUIET)
    train(cfg)
    perceptron = read_results(cfg)
    assert perceptron["test"]["test/acc"] <= 0.75 + 1e-6
    assert perceptron["val"]["val/acc"] <= 0.75 + 1e-6

    cfg = make_cfg("experiment=xor_mlp", *QUIET)
    train(cfg)
    assert read_results(cfg)["test"]["test/acc"] == 1.0


def test_logistic_regression_cannot_learn_xor(make_cfg):
    cfg = make_cfg("data=xor", "model=linear", "optimizer.lr=0.05", "trainer.max_epochs=30", *QUIET)
    train(cfg)
    assert read_results(cfg)["test"]["test/acc"] <= 0.75 + 1e-6


def test_linear_regression_recovers_the_true_weights(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(
        "data=linear_regression", "model=linear", "optimizer=sgd", "trainer.max_epochs=15", *QUIET
    )
    train(cfg)
    results = read_results(cfg)
    module = load_module(results["ckpt_path"])
    data = instantiate(cfg.data)
    linear = module.net[1]
    assert torch.allclose(linear.weight[0], data.true_weight, atol=0.03)
    assert linear.bias.item() == pytest.approx(data.true_bias, abs=0.03)
    assert results["test"]["test/r2"] > 0.99


def test_checkpoint_reloads_to_identical_predictions(make_cfg):
    cfg = make_cfg("trainer.max_epochs=2", "activation=prelu", "model.norm=batchnorm", *QUIET)
    train(cfg)
    results = read_results(cfg)
    reloaded = load_module(results["ckpt_path"]).eval()
    again = load_module(results["ckpt_path"]).eval()
    x = torch.randn(32, 1, 8, 8)
    assert torch.equal(reloaded(x), again(x))
    # The reloaded module scores the test split exactly as train.py's test of that checkpoint.
    from hydra.utils import instantiate

    data = instantiate(cfg.data)
    data.setup()
    with torch.no_grad():
        hits = [(reloaded.predict(x) == y).float() for x, y in data.test_dataloader()]
    acc = torch.cat(hits).mean().item()
    assert acc == pytest.approx(results["test"]["test/acc"], abs=1e-6)


def test_eval_takes_another_data_config_and_refuses_one_that_does_not_fit(make_cfg):
    cfg = make_cfg("trainer.max_epochs=1", *QUIET)
    train(cfg)
    results = read_results(cfg)
    ckpt = f"ckpt_path={results['ckpt_path']}"
    # data=digits given explicitly: its ${seed} is eval.yaml's, the split the same as in training.
    metrics = evaluate(make_cfg(ckpt, "data=digits", *QUIET, config_name="eval"))
    assert metrics == pytest.approx(results["test"], rel=1e-6)
    with pytest.raises(ConfigError, match="the data does not fit the checkpoint: it gives"):
        evaluate(make_cfg(ckpt, "data=xor", *QUIET, config_name="eval"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("+trainer.max_epoch=1",), "trainer.max_epoch is not an option of lightning.pytorch"),
        (("seed=abc",), "seed must be an int in [0, 4294967295] or null, got 'abc'"),
        (("data=digits", "+data.foo=1"), "data.foo is not an option of nnlab.data.toy"),
        (("data=digits", "data.val_fraction=2"), "data.val_fraction must be in (0, 1), got 2"),
    ],
)
def test_eval_refuses_bad_options_before_loading_anything(
    make_cfg, monkeypatch, tmp_path, overrides, message
):
    def no_loading(*args, **kwargs):
        raise AssertionError("the checkpoint or data was loaded before the options were checked")

    monkeypatch.setattr("nnlab.evaluate.load_module", no_loading)
    monkeypatch.setattr(ArrayDataModule, "setup", no_loading)
    cfg = make_cfg(f"ckpt_path={tmp_path / 'any.ckpt'}", *overrides, *QUIET, config_name="eval")
    with pytest.raises(ConfigError, match=re.escape(message)):
        evaluate(cfg)


def test_resuming_needs_the_checkpoints_network_optimizer_and_data(make_cfg, monkeypatch, caplog):
    first = make_cfg("trainer.max_epochs=1", *QUIET)
    train(first)
    last = f"ckpt_path={read_results(first)['last_ckpt_path']}"
    # Training on: more epochs, another init (resumed weights are not initialized), another lr.
    more = make_cfg(last, "trainer.max_epochs=2", "init=kaiming", "optimizer.lr=0.01", *QUIET)
    with caplog.at_level("WARNING"):
        train(more)
    assert read_results(more)["epochs"] == 2
    # Lightning restores the optimizer's state: the lr stays the checkpoint's, and is said so.
    assert "optimizer.lr as saved in it (0.001), not as configured (0.01)" in caplog.text
    with pytest.raises(ConfigError, match=r"data with \{'task': 'multiclass'.*gives \{'task'"):
        train(make_cfg(last, "data=xor", "trainer.max_epochs=2", *QUIET))
    # What cannot resume is refused before any data loads.
    monkeypatch.setattr(ArrayDataModule, "setup", lambda *a: pytest.fail("data was loaded"))
    for overrides, message in (
        (("model.hidden_sizes=[32]",), "model.hidden_sizes=[128, 64], this run has [32]"),
        (("activation=tanh",), "model.activation={'name': 'relu'}, this run has {'name'"),
        (("optimizer=sgd",), "optimizer._target_='torch.optim.Adam', this run has 'torch.opt"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            train(make_cfg(last, "trainer.max_epochs=2", *overrides, *QUIET))


def test_a_file_that_is_no_checkpoint_is_named(make_cfg, tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    for config_name in ("train", "eval"):
        cfg = make_cfg(f"ckpt_path={tmp_path / 'notes.ckpt'}", *QUIET, config_name=config_name)
        with pytest.raises(ConfigError, match=r"notes\.ckpt is not a readable checkpoint"):
            (train if config_name == "train" else evaluate)(cfg)


def test_seed_zero_is_a_seed(make_cfg):
    def run(seed: int) -> float:
        cfg = make_cfg(f"seed={seed}", "trainer.max_epochs=1", *QUIET)
        train(cfg)
        return read_results(cfg)["val"]["val/loss"]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_seed_null_draws_a_seed_that_repeats_the_run(make_cfg, monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)

    def run(seed: str) -> dict:
        cfg = make_cfg(f"seed={seed}", "trainer.max_epochs=1", *QUIET)
        train(cfg)
        return read_results(cfg)

    drawn = [run("null") for _ in range(2)]
    seeds = [r["seed"] for r in drawn]
    assert all(isinstance(s, int) for s in seeds) and seeds[0] != seeds[1]
    # The data split followed the drawn seed (what eval.py rebuilds from the checkpoint).
    module = load_module(drawn[0]["ckpt_path"])
    assert module.hparams.data["seed"] == seeds[0]
    assert run(str(seeds[0]))["val"] == drawn[0]["val"]


def test_sgd_learning_rate_too_small_right_too_big(make_cfg):
    """The lecture's three regimes, on linear regression with full-batch gradient descent."""

    def final_mse(lr: float) -> float:
        cfg = make_cfg(
            "data=linear_regression",
            "model=linear",
            "optimizer=sgd",
            f"optimizer.lr={lr}",
            "data.batch_size=full",
            "trainer.max_epochs=30",
            "callbacks=none",
            *QUIET,
        )
        train(cfg)
        return float(read_results(cfg)["val"]["val/mse"])  # JSON keeps inf/nan as strings

    too_small, right = final_mse(0.001), final_mse(0.3)
    assert right < 0.05 < too_small  # slow: still far from the noise floor (0.01)
    with pytest.raises(Diverged, match=r"the loss became (inf|nan)"):
        final_mse(2.5)  # diverges: training stops at the first non-finite loss


def test_last_checkpoint_holds_the_latest_epoch_and_best_the_best(make_cfg):
    # Maximizing val/loss makes the first epoch the best one (the loss falls as training goes).
    cfg = make_cfg(
        "trainer.max_epochs=3", "optimized_metric=val/loss", "optimized_mode=max", *QUIET
    )
    train(cfg)
    results = read_results(cfg)
    best = torch.load(results["ckpt_path"], weights_only=False)
    last = torch.load(results["last_ckpt_path"], weights_only=False)
    assert Path(results["last_ckpt_path"]).name == "last.ckpt"
    assert (best["epoch"], last["epoch"]) == (0, 2)
    assert last["global_step"] == 3 * best["global_step"]
