"""speed=max: the whole-step CUDA graph's bookkeeping (undoing warm-up exactly, refusing what it
cannot capture), training through Trainer to the same result as speed=default, and, on a GPU,
exactness of the captured step against eager steps for every activation, loss and optimizer."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nnlab.core import ConfigError
from nnlab.core.hydra import register_resolvers
from nnlab.speed import FastPath, apply_speed, check_speed
from nnlab.speed.graphed import _restore, _snapshot
from nnlab.speed.groups import AUTO_STEPS_PER_BATCH, StepGroups
from nnlab.speed.optim import optimizer_options

from .conftest import run_script
from .helpers.fitting import data_and_module, quiet_trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


def train_steps(model, opt, batches) -> None:
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.Adam(p, lr=0.01),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    ],
)
def test_undoing_warmup_leaves_training_exactly_as_if_it_never_ran(make_opt):
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g))] * 3
    reference, ref_opt = net(), None
    ref_opt = make_opt(reference.parameters())
    train_steps(reference, ref_opt, batches)

    model = net()
    opt = make_opt(model.parameters())
    saved = _snapshot(model, opt)
    train_steps(model, opt, batches[:2])  # the "warm-up": real updates, to be undone
    _restore(model, opt, saved)
    train_steps(model, opt, batches)
    for a, b in zip(reference.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_graph_optimizer_options_refuse_what_cannot_be_captured():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match=r"supported are torch\.optim\.Adam, AdamW and SGD"):
        optimizer_options({"_target_": "torch.optim.RMSprop", "lr": 0.01}, cpu, None, graph=True)
    with pytest.raises(ValueError, match="dampening=0"):
        sgd = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.5}
        optimizer_options(sgd, cpu, None, graph=True)
    options = optimizer_options({"_target_": "torch.optim.Adam", "lr": 0.01}, cpu, None, True)
    assert options["capturable"] and options["fused"] and isinstance(options["lr"], torch.Tensor)
    assert optimizer_options({"_target_": "torch.optim.Adam"}, cpu, "foreach", False) == {
        "foreach": True
    }
    # Others ignore the implementation asked for (whose value check_speed validated).
    assert optimizer_options({"_target_": "torch.optim.RMSprop"}, cpu, "fused", False) == {}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("resident", "sometimes", "one of auto, True, False"),
        ("optimizer_impl", "fast", "one of null, fused, foreach"),
        ("matmul_precision", "low", "one of highest, high, medium"),
        ("steps_per_batch", 0, "auto or an int >= 1"),
        ("steps_per_batch", "many", "auto or an int >= 1"),
        ("cuda_graph", "yes", "true or false"),
        ("compile", "yes", "true or false"),
        ("write_checkpoints_every_s", -1, "a number of seconds >= 0"),
        ("sanity_val_steps", -2, "null, -1 (all) or an int >= 0"),
    ],
)
def test_check_speed_is_the_one_check_of_every_speed_key(key, value, message):
    cfg = composed()
    check_speed(cfg.speed)  # the composed defaults pass
    cfg.speed[key] = value
    with pytest.raises(ConfigError, match=rf"speed\.{key} must be {re.escape(message)}"):
        check_speed(cfg.speed)


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["paths.root_dir=.", "paths.output_dir=.", *overrides])
    check_speed(cfg.speed)  # as train.py: validated once, then applied
    apply_speed(cfg)
    return cfg


def fit(cfg, accelerator: str, max_epochs: int = 3) -> dict[str, float]:
    """The callback metrics of a fit with the speed group applied, as train.py applies it."""
    L.seed_everything(0, verbose=False)
    data, module = data_and_module(cfg)
    trainer = quiet_trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=max_epochs,
        num_sanity_val_steps=cfg.trainer.get("num_sanity_val_steps", 2),
        callbacks=[FastPath(cfg.speed)],
    )
    trainer.fit(module, datamodule=data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_speed_max_on_cpu_trains_like_default():
    default = fit(composed("data=digits", "speed=default"), "cpu")
    fast = fit(composed("data=digits", "speed=max"), "cpu")
    assert default["val/acc"] > 0.8
    # fused Adam on the CPU is the same arithmetic in another order: same result within noise.
    assert abs(default["val/acc"] - fast["val/acc"]) < 0.03
    assert set(default) == set(fast)


@pytest.mark.slow
def test_speed_compile_trains_like_eager_and_its_checkpoint_loads_back(tmp_path):
    eager = fit(composed("data=xor", "speed=default"), "cpu", max_epochs=2)
    cfg = composed("data=xor", "speed=default", "speed.compile=true")
    compiled = fit(cfg, "cpu", max_epochs=2)
    assert set(eager) == set(compiled)
    for key, value in eager.items():  # the same arithmetic, fused: equal within rounding
        assert compiled[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    # A compiled run's checkpoint has the eager parameter names: eval loads it as any other.
    run_script(
        "train.py",
        "data=xor",
        "speed.compile=true",
        "trainer.max_epochs=1",
        "diagnostics=none",
        "print_config=false",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    state = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert state and not any("_orig_mod" in k for k in state)
    run_script("eval.py", f"ckpt_path={tmp_path}/run/checkpoints/last.ckpt", cwd=tmp_path)


def test_speed_compile_is_refused_where_it_cannot_run(monkeypatch, tmp_path):
    from nnlab.speed.compiled import check_compile

    cfg = composed("speed=max", "speed.compile=true")  # on the CPU: no CUDA graph, compiles
    with pytest.raises(ConfigError, match=r"speed.compile=true and speed.cuda_graph=true"):
        check_compile(cfg, gpu=True)
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler on PATH
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match=r"speed.compile=true on the CPU needs a C\+\+ compiler"):
        check_compile(cfg, gpu=False)
    check_compile(composed("speed=max"), gpu=False)  # off: nothing to check


def test_speed_group_is_in_the_composed_config_with_every_key_documented():
    cfg = composed("speed=max")
    assert OmegaConf.to_container(cfg.speed) == {
        "resident": "auto",
        "cuda_graph": True,
        "compile": False,
        "steps_per_batch": 16,
        "optimizer_impl": "fused",
        "matmul_precision": "high",
        "gpu_precision": None,
        "write_checkpoints_every_s": 60,
        "sanity_val_steps": 0,
    }
    assert cfg.trainer.num_sanity_val_steps == 0
    text = (CONFIGS / "speed" / "default.yaml").read_text()
    for key in cfg.speed:
        assert f"\n{key}:" in text and "#" in text.split(f"\n{key}:")[0].rsplit("\n\n", 1)[-1]


# One run per kind of option: every optimizer, schedulers, activations with parameters or
# pieces, norms, dropout, inits, each task's losses.
OPTION_RUNS = [
    ["optimizer=adam"],
    ["optimizer=adamw", "scheduler=step", "scheduler.step_size=1"],
    ["optimizer=sgd"],
    ["optimizer=sgd_momentum", "scheduler=plateau"],
    ["activation=prelu", "model.norm=batchnorm", "model.dropout=0.1"],
    ["activation=maxout", "init=kaiming"],
    ["activation=tanh", "model.norm=layernorm", "init=xavier"],
    ["loss=cross_entropy", "loss.label_smoothing=0.1"],
    ["data=xor", "loss=bce_with_logits"],
    ["data=linear_regression", "loss=huber", "activation=elu"],
    ["data=linear_regression", "loss=l1", "activation=softplus"],
    ["data=linear_regression", "model=linear", "loss=mse"],
]


@cuda
@pytest.mark.parametrize("overrides", OPTION_RUNS)
def test_captured_step_trains_like_eager_steps_on_gpu(overrides):
    assert_max_trains_like_default(overrides, "gpu")


@pytest.mark.parametrize("overrides", OPTION_RUNS)
def test_speed_max_on_cpu_trains_like_default_with_every_kind_of_option(overrides):
    assert_max_trains_like_default(overrides, "cpu")


def assert_max_trains_like_default(overrides: list[str], accelerator: str) -> None:
    """speed=max (on a GPU the captured step; on the CPU fused optimizers and grouped steps)
    reaches what speed=default reaches in two epochs, within noise."""
    if not any(o.startswith("data=") for o in overrides):
        overrides = ["data=digits", *overrides]
    default = fit(composed(*overrides, "speed=default"), accelerator, max_epochs=2)
    fast = fit(composed(*overrides, "speed=max"), accelerator, max_epochs=2)
    monitor = "val/acc" if "val/acc" in default else "val/mse"
    assert monitor in fast and f"train/{monitor.split('/')[1]}" in fast
    assert abs(default[monitor] - fast[monitor]) <= 0.05 * max(1.0, abs(default[monitor]))


@cuda
def test_graph_replay_and_ragged_eager_step_match_eager_training_exactly():
    from nnlab.speed.graphed import GraphedStep

    # True fp32 matmuls, through the API apply_speed uses: torch refuses a mix of the two.
    torch.set_float32_matmul_precision("highest")
    device = torch.device("cuda")
    g = torch.Generator().manual_seed(2)
    sizes = [16, 16, 16, 5, 16, 16, 5]  # full batches and an epoch's ragged last batch
    batches = [
        (
            torch.randn(n, 6, generator=g).to(device),
            torch.randint(0, 3, (n,), generator=g).to(device),
        )
        for n in sizes
    ]

    def make():
        model = net().to(device)
        lr = torch.tensor(0.01, device=device)
        return model, torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=True)

    reference, ref_opt = make()
    train_steps(reference, ref_opt, batches)

    model, opt = make()
    seen = torch.zeros((), device=device)

    def step_fn(x, y):
        seen.add_(len(x))
        return torch.nn.functional.cross_entropy(model(x), y)

    step = GraphedStep(model, opt, step_fn, reset=seen.zero_)
    for x, y in batches:
        step(x, y)
    assert step.graph is not None
    assert seen.item() == sum(sizes)  # in-graph accumulation counted every batch once
    for a, b in zip(reference.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@cuda
def test_several_steps_per_batch_count_every_step_and_stop_exactly_at_max_steps():
    cfg = composed("data=digits", "speed=max", "speed.steps_per_batch=8")
    data, module = data_and_module(cfg)
    batches_per_epoch = -(-len(data.splits["train"][0]) // data.batch_size)
    fast = FastPath(cfg.speed)
    trainer = quiet_trainer(
        accelerator="gpu",
        devices=1,
        max_steps=batches_per_epoch + 3,  # stops inside a group of 8 in the second epoch
        callbacks=[fast],
    )
    trainer.fit(module, datamodule=data)
    assert fast.group == 8
    assert fast.runner.graph and fast.runner.graphed.graph is not None
    assert trainer.global_step == batches_per_epoch + 3
    assert "train/loss" in trainer.callback_metrics


class SeenInFit(L.Callback):
    """What the module and the loader are while training: its training_step, whether its
    steps count as captured, its optimizer's options, and the training loader."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.training_step = pl_module.training_step
        self.captures_step = pl_module.captures_step
        self.fused = trainer.optimizers[0].defaults.get("fused")
        self.loader = trainer.train_dataloader


def test_the_fast_path_is_applied_to_the_fit_only_and_put_back_after_it():
    data, module = data_and_module(composed("data=digits", "speed=max"))
    plain_loader = type(data.train_dataloader())
    fast, seen = FastPath(composed("data=digits", "speed=max").speed), SeenInFit()
    trainer = quiet_trainer(accelerator="cpu", max_epochs=1, callbacks=[fast, seen])
    trainer.fit(module, datamodule=data)
    # In the fit: the runner's grouped steps (eager on the CPU: none captured), fused Adam,
    # the loader in groups.
    assert seen.training_step == fast.runner.run and not seen.captures_step
    assert seen.fused is True
    assert isinstance(seen.loader, StepGroups) and seen.loader.batches_per_item == 16
    # After it: the task module's own training_step and the datamodule's own loader; steps
    # still counted (Lightning reads them through manual optimization).
    assert "training_step" not in module.__dict__ and module.optimizer_options == {}
    assert "train_dataloader" not in data.__dict__
    assert type(data.train_dataloader()) is plain_loader is not StepGroups
    assert trainer.global_step == -(-len(data.splits["train"][0]) // data.batch_size)
    # Without the fast path the task module is plain Lightning again: its training_step
    # returns the batch's loss, for Lightning's automatic optimization to step on.
    loss = module.training_step(next(iter(data.train_dataloader())), 0)
    assert loss.dim() == 0 and loss.requires_grad


def test_the_fast_path_is_put_back_after_a_fit_that_fails():
    class Fail(L.Callback):
        def on_train_batch_end(self, *args) -> None:
            raise RuntimeError("stop")

    data, module = data_and_module(composed("data=digits"))
    trainer = quiet_trainer(
        accelerator="cpu", max_epochs=1, callbacks=[FastPath({"steps_per_batch": 4}), Fail()]
    )
    with pytest.raises(RuntimeError, match="stop"):
        trainer.fit(module, datamodule=data)
    assert "training_step" not in module.__dict__ and "train_dataloader" not in data.__dict__


def test_steps_per_batch_is_resolved_for_each_fit():
    data, module = data_and_module(composed("data=digits", "speed.steps_per_batch=1"))
    fast = FastPath(composed("speed.steps_per_batch=1").speed)
    trainer = quiet_trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, callbacks=[fast])
    trainer.fit(module, datamodule=data)
    assert fast.group == 1 and fast.runner is None and module.automatic_optimization
    assert trainer.global_step == len(data.train_dataloader())
    # "auto" is resolved for each fit's trainer: groups, then single batches for a trainer
    # that counts batches, from the same datamodule.
    data, module = data_and_module(composed("data=digits"))
    fast = FastPath(composed().speed)
    trainer = quiet_trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, callbacks=[fast])
    trainer.fit(module, datamodule=data)
    assert fast.group == AUTO_STEPS_PER_BATCH and fast.runner is not None
    _, again = data_and_module(composed("data=digits"))
    trainer = quiet_trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=5, callbacks=[fast]
    )
    trainer.fit(again, datamodule=data)
    assert fast.group == 1 and fast.runner is None and trainer.global_step == 5


def test_the_perceptron_takes_grouped_steps_with_its_own_rule_exactly():
    """No opt-out: the fast path calls a module that takes its own optimizer steps (the
    perceptron's rule) once per batch of a group; the same updates in the same order."""

    def weights(steps_per_batch: str) -> tuple[list[torch.Tensor], int, int]:
        L.seed_everything(0, verbose=False)
        cfg = composed(
            "model=perceptron", "data=separable", f"speed.steps_per_batch={steps_per_batch}"
        )
        data, module = data_and_module(cfg)
        fast = FastPath(cfg.speed)
        trainer = quiet_trainer(accelerator="cpu", max_epochs=3, callbacks=[fast])
        trainer.fit(module, datamodule=data)
        return [p.detach().clone() for p in module.parameters()], trainer.global_step, fast.group

    one, one_steps, one_group = weights("1")
    grouped, steps, group = weights("auto")
    assert (one_group, group) == (1, AUTO_STEPS_PER_BATCH)
    assert steps == one_steps > 0
    for a, b in zip(one, grouped, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "extra", [[], ["scheduler=step", "scheduler.step_size=1"], ["scheduler=plateau"]]
)
def test_default_grouped_steps_train_exactly_like_one_step_per_batch(extra):
    one = fit(composed("data=digits", *extra, "speed.steps_per_batch=1"), "cpu", max_epochs=2)
    grouped = fit(composed("data=digits", *extra), "cpu", max_epochs=2)  # auto: groups
    assert one == grouped  # same arithmetic in the same order: identical metrics


class CountHooks(L.Callback):
    """Counts the per-step and per-batch hooks that diagnostics callbacks rely on."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("backward", "before_step", "batch_end"), 0)

    def on_after_backward(self, trainer, pl_module) -> None:
        self.counts["backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.counts["before_step"] += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.counts["batch_end"] += 1


def fit_logged(tmp_path: Path, *overrides: str, **trainer_args) -> tuple:
    """Fits 2 epochs with a CSV logger and a hook counter: (trainer, counts, logged steps)."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    L.seed_everything(0, verbose=False)
    cfg = composed("data=digits", *overrides)
    data, module = data_and_module(cfg)
    counter, fast = CountHooks(), FastPath(cfg.speed)
    args = {"accelerator": "cpu", "max_epochs": 2, "callbacks": [counter, fast]}
    trainer = quiet_trainer(**args, logger=CSVLogger(tmp_path), **trainer_args)
    trainer.fit(module, datamodule=data)
    steps = []
    if trainer.logger.log_dir is not None:  # fast_dev_run replaces loggers by a dummy
        with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
            steps = [(row["epoch"], row["step"]) for row in csv.DictReader(f) if row["train/loss"]]
    return trainer, fast, counter.counts, steps


def test_default_groups_keep_per_step_hooks_and_logged_steps(tmp_path):
    trainer, fast, counts, steps = fit_logged(tmp_path / "auto")
    data = trainer.datamodule
    assert fast.group == AUTO_STEPS_PER_BATCH
    steps_per_epoch = -(-len(data.splits["train"][0]) // data.batch_size)
    assert trainer.global_step == 2 * steps_per_epoch
    # Gradient and optimizer hooks once per optimizer step; per-batch hooks once per group.
    assert counts["backward"] == counts["before_step"] == trainer.global_step
    assert counts["batch_end"] == 2 * -(-steps_per_epoch // AUTO_STEPS_PER_BATCH) > 2
    # Metrics are logged at the same steps as with one step per batch.
    one, _, one_counts, one_steps = fit_logged(tmp_path / "one", "speed.steps_per_batch=1")
    assert steps == one_steps and one.global_step == trainer.global_step
    assert one_counts["backward"] == one_counts["before_step"] == one_counts["batch_end"]


class NoOpBackwardHook(L.Callback):
    """Implements a per-step hook (doing nothing), so Lightning's step wrappers must run."""

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        pass


def fit_grouped(callbacks=(), **trainer_args) -> tuple[L.LightningModule, L.Trainer, FastPath]:
    """Fits 1 epoch of digits in groups of manual steps (auto); returns (module, trainer,
    the fast path)."""
    L.seed_everything(0, verbose=False)
    cfg = composed("data=digits")
    data, module = data_and_module(cfg)
    fast = FastPath(cfg.speed)
    args = {"accelerator": "cpu", "max_epochs": 1}
    trainer_args = {**args, **trainer_args}
    trainer_args["callbacks"] = [*callbacks, *trainer_args.get("callbacks", []), fast]
    trainer = quiet_trainer(**trainer_args)
    trainer.fit(module, datamodule=data)
    assert fast.group == AUTO_STEPS_PER_BATCH
    return module, trainer, fast


@pytest.mark.parametrize(
    ("trainer_args", "plain"),
    [
        ({}, True),
        ({"callbacks": [CountHooks()]}, False),
        ({"callbacks": [NoOpBackwardHook()]}, False),
        ({"profiler": "simple"}, False),
        ({"precision": "bf16-mixed"}, True),  # no gradient scaler: nothing to wrap
    ],
)
def test_manual_steps_bypass_lightning_wrappers_only_when_no_hook_would_run(trainer_args, plain):
    _, trainer, fast = fit_grouped(**trainer_args)
    assert fast.runner.plain is plain
    data = trainer.datamodule
    steps_per_epoch = -(-len(data.splits["train"][0]) // data.batch_size)
    assert trainer.global_step == steps_per_epoch  # counted either way


def test_bypassing_lightning_wrappers_changes_no_result():
    plain, _, plain_fast = fit_grouped()
    wrapped, _, wrapped_fast = fit_grouped(callbacks=[NoOpBackwardHook()])
    assert plain_fast.runner.plain and not wrapped_fast.runner.plain
    for (name, a), b in zip(plain.state_dict().items(), wrapped.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "trainer_args",
    [
        {"limit_train_batches": 5},
        {"limit_train_batches": 0.5},
        {"val_check_interval": 5},
        {"val_check_interval": 0.5},
        {"overfit_batches": 1},
        {"fast_dev_run": True},
        {"gradient_clip_val": 1.0},
        {"accumulate_grad_batches": 2},
    ],
)
def test_auto_steps_per_batch_is_one_where_trainer_options_count_batches(tmp_path, trainer_args):
    trainer, fast, counts, _ = fit_logged(tmp_path, **trainer_args)
    assert fast.group == 1
    assert counts["batch_end"] == trainer.fit_loop.epoch_loop.batch_progress.total.completed


def test_steps_per_batch_must_be_auto_or_positive():
    with pytest.raises(ConfigError, match=r"speed\.steps_per_batch must be auto or an int >= 1"):
        composed("data=digits", "speed.steps_per_batch=0")


def test_several_eager_steps_per_batch_stop_exactly_at_max_steps():
    cfg = composed("data=digits", "speed.steps_per_batch=8")
    data, module = data_and_module(cfg)
    fast = FastPath(cfg.speed)
    trainer = quiet_trainer(accelerator="cpu", max_steps=21, callbacks=[fast])
    trainer.fit(module, datamodule=data)
    assert fast.group == 8 and not module.automatic_optimization
    assert trainer.global_step == 21


@pytest.mark.parametrize("steps_per_batch", ["auto", "1"])
def test_progress_bar_counts_steps_whether_or_not_they_are_grouped(steps_per_batch):
    from nnlab.callbacks import StepProgressBar

    cfg = composed("data=digits", f"speed.steps_per_batch={steps_per_batch}")
    data, module = data_and_module(cfg)
    bar, fast = StepProgressBar(refresh_rate=5), FastPath(cfg.speed)
    shown = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            shown.append((bar.train_progress_bar.n, bar.train_progress_bar.total))

    trainer = quiet_trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_val_batches=0,
        enable_progress_bar=True,  # the bar under test
        callbacks=[bar, Record(), fast],
    )
    trainer.fit(module, datamodule=data)
    steps = -(-len(data.splits["train"][0]) // data.batch_size)
    group = AUTO_STEPS_PER_BATCH if steps_per_batch == "auto" else 1
    assert fast.group == group
    assert shown[-1] == (steps, steps)  # the bar ends each epoch at its step count
    assert all(total == steps for _, total in shown)
    counts = [n for n, _ in shown]
    # Redrawn at least every refresh_rate steps, or every group of steps where that is more.
    assert max(b - a for a, b in itertools.pairwise(counts) if b > a) <= max(group, 5)


def test_grouped_training_resumed_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(max_epochs: int, ckpt_path: str | None = None, save: bool = False) -> L.Trainer:
        L.seed_everything(0, verbose=False)
        cfg = composed("data=digits")
        data, module = data_and_module(cfg)
        fast = FastPath(cfg.speed)
        callbacks = [ModelCheckpoint(dirpath=tmp_path, save_last=True)] if save else []
        trainer = quiet_trainer(
            accelerator="cpu",
            max_epochs=max_epochs,
            enable_checkpointing=save,
            callbacks=[*callbacks, fast],
        )
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        assert fast.group == AUTO_STEPS_PER_BATCH
        return trainer

    run(2, save=True)
    resumed = run(3, ckpt_path=str(tmp_path / "last.ckpt"))
    straight = run(3)
    assert resumed.global_step == straight.global_step
    for a, b in zip(
        resumed.lightning_module.state_dict().values(),
        straight.lightning_module.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_frozen_heap_hides_live_objects_from_the_collector_until_exit():
    import gc

    from nnlab.speed import frozen_heap

    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        assert gc.get_freeze_count() > 1000  # everything imported so far
        raise RuntimeError
    assert gc.get_freeze_count() == 0  # unfrozen even when the block raises


@pytest.mark.slow
def test_grouped_steps_under_ddp_train_exactly_like_one_step_per_batch(tmp_path):
    """Two real DDP processes (gloo on CPU) per run. Each grouped step's gradients must be
    all-reduced like automatic optimization's: any step trained on one rank's gradients alone
    would leave rank 0's parameters different from the ungrouped run's."""
    fast = ("trainer=ddp_cpu", "trainer.max_epochs=2", "logger=none", "diagnostics=none")
    fast += ("callbacks.progress_bar=null", "test=false")
    states = {}
    for steps in ("auto", "1"):
        run_dir = tmp_path / steps
        args = (*fast, f"speed.steps_per_batch={steps}", f"hydra.run.dir={run_dir}")
        run_script("train.py", *args, cwd=tmp_path)
        states[steps] = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    grouped, single = states["auto"], states["1"]
    # auto grouped (several steps per Lightning batch) under DDP; "1" took one per batch.
    batches = grouped["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"]
    assert grouped["global_step"] == single["global_step"] > batches
    for name, value in single["state_dict"].items():
        torch.testing.assert_close(grouped["state_dict"][name], value, rtol=0, atol=0)
    moments = [s["optimizer_states"][0]["state"][0]["exp_avg"] for s in (grouped, single)]
    torch.testing.assert_close(*moments, rtol=0, atol=0)
