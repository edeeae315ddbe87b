"""Config checks that run before any data loads: keys and value types against the constructor or
function a config goes to (nnlab.core.arguments, nnlab.validation), plain strings for the
registries' groups, the warning for groups the chosen model ignores, and the run's seed
(nnlab.validation.resolve_seed).
Whole configs with bad values are in test_training.py (they must fail before data loads)."""

from __future__ import annotations

import logging
from typing import Literal

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from nnlab.core import ConfigError
from nnlab.core.arguments import check_options
from nnlab.core.hydra import instantiate_config
from nnlab.validation import MAX_SEED, check_arguments, picked_groups, resolve_seed, validate


class Base:
    def __init__(self, size: int, rate: float = 0.1, mode: Literal["a", "b"] | None = None):
        pass


class Child(Base):
    def __init__(self, sizes: list[int] = (), name: str = "x", **kwargs) -> None:
        super().__init__(**kwargs)


class Open:
    def __init__(self, flag: bool = False, **kwargs) -> None:
        pass


def check(cls: type, **values) -> None:
    cfg = OmegaConf.create({"_target_": f"{__name__}.{cls.__qualname__}", **values})
    check_arguments(cfg, "group", passed_in=("size",))


@pytest.mark.parametrize(
    "values",
    [
        {"sizes": [1, 2], "name": "y", "rate": 1, "mode": "b"},  # an int is a float
        {"rate": 0.5, "mode": None},
        {},
    ],
)
def test_fitting_values_pass(values):
    check(Child, **values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sizes": [1, "2"]}, "group.sizes must be a list of int, got [1, '2']"),
        ({"sizes": 3}, "group.sizes must be a list of int, got 3"),
        ({"rate": "fast"}, "group.rate must be float, got 'fast'"),
        ({"rate": True}, "group.rate must be float, got True"),  # a bool is no number here
        ({"mode": "c"}, "group.mode must be one of 'a', 'b' or null, got 'c'"),
        # Keys of a parent's constructor are found through **kwargs.
        ({"rat": 1.0}, "group.rat is not an option of .*; did you mean group.rate\\? valid: "),
        # What the code passes in is not a config key.
        ({"size": 3}, "group.size is not an option of .*valid: sizes, name, rate, mode$"),
    ],
)
def test_wrong_keys_and_types_are_named_with_what_is_valid(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check(Child, **values)


def test_keys_taken_by_an_open_ended_constructor_are_not_judged():
    check(Open, flag=True, anything=1)
    with pytest.raises(ConfigError, match=r"group\.flag must be bool"):
        check(Open, flag="yes")


def test_fixed_length_lists_and_registry_functions():
    def factory(betas: tuple[float, float] = (0.9, 0.99), width: int = 1) -> None:
        pass

    check_options({"betas": [0.5, 1]}, factory, "optimizer", "adam", ("width",))
    with pytest.raises(ConfigError, match=r"optimizer.betas must be a list of 2 \(float, float\)"):
        check_options({"betas": [0.5]}, factory, "optimizer", "adam", ("width",))
    # The width is passed in by the network builder: not an option.
    with pytest.raises(ConfigError, match=r"optimizer\.width is not an option of adam; valid: bet"):
        check_options({"width": 3}, factory, "optimizer", "adam", ("width",))


def test_seed_is_kept_or_drawn(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_seed(0) == (0, False)
    assert resolve_seed(MAX_SEED) == (MAX_SEED, False)
    seed, drawn = resolve_seed(None)
    assert drawn and 0 <= seed <= MAX_SEED
    for bad in (-1, MAX_SEED + 1, 1.5, True, "7"):
        with pytest.raises(ConfigError, match="seed must be an int in"):
            resolve_seed(bad)


def test_ddp_processes_share_the_first_process_seed(monkeypatch):
    # Lightning starts ranks > 0 with LOCAL_RANK set and the first process's PL_GLOBAL_SEED.
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("PL_GLOBAL_SEED", "1234")
    assert resolve_seed(None) == (1234, True)
    # Started by another launcher, without it: no way to agree on a seed.
    monkeypatch.delenv("PL_GLOBAL_SEED")
    with pytest.raises(ConfigError, match="set seed=<int>"):
        resolve_seed(None)
    # The first process (LOCAL_RANK 0, e.g. after an earlier DDP job) draws a fresh one.
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("PL_GLOBAL_SEED", "1234")
    assert resolve_seed(None)[1] and len({resolve_seed(None)[0] for _ in range(4)}) > 1
    # Unless torchrun or SLURM started every process, the first ones on each machine included.
    for launcher, value in (("TORCHELASTIC_RUN_ID", "abc"), ("SLURM_NTASKS", "8")):
        monkeypatch.setenv(launcher, value)
        with pytest.raises(ConfigError, match="cannot share a drawn seed: set seed=<int>"):
            resolve_seed(None)
        monkeypatch.delenv(launcher)


def test_a_model_level_plain_string_composes_and_builds(make_cfg):
    """`model.activation=tanh` (a name where the model config interpolates the group's
    mapping) passes the checks and builds an MLP with Tanh layers; the same for init."""
    cfg = make_cfg("model.activation=tanh", "model.init=kaiming_normal", "logger=none")
    validate(cfg)
    net = instantiate_config(cfg.model, in_features=4, out_features=3)
    assert sum(isinstance(m, torch.nn.Tanh) for m in net) == 2
    assert not any(isinstance(m, torch.nn.ReLU) for m in net)
    with pytest.raises(ConfigError, match="unknown activation 'swish'; valid: identity"):
        validate(make_cfg("model.activation=swish"))


def test_a_plain_string_loss_passes_the_checks(make_cfg):
    cfg = make_cfg("data=linear_regression", "logger=none")
    with open_dict(cfg):
        cfg.loss = "huber"
    assert validate(cfg) == "regression"
    cfg.loss = "cross_entropy"
    with pytest.raises(ConfigError, match="loss=cross_entropy cannot train a regression task"):
        validate(cfg)


WARNINGS = [
    (("model=linear",), None),  # the default activation: nothing to say
    (("model=mlp", "activation=tanh"), None),
    (("model=linear", "activation=tanh"), "model=linear does not use activation=tanh: ignored"),
    (("model=linear", "model.activation=elu"), "does not use model.activation=elu: ignored"),
    (("model=mlp", "model.hidden_sizes=[]", "activation=abs"), "does not use activation=abs"),
    (
        ("data=xor", "model=perceptron", "optimizer=sgd", "scheduler=step", "loss=bce_with_logits"),
        "model=perceptron does not use loss=bce_with_logits, optimizer=sgd, scheduler=step: "
        "ignored",
    ),
    (("experiment=xor_perceptron",), None),
    # The perceptron starts where its own config says (model.init), not at the init group's.
    (("data=xor", "model=perceptron", "init=normal"), "does not use init=normal: ignored"),
    (("data=xor", "model=perceptron", "model.init=normal"), None),
    # The experiment picks activation=tanh; the command line takes its hidden layer away.
    (("experiment=xor_mlp", "model.hidden_sizes=[]"), "does not use activation=tanh: ignored"),
]


@pytest.mark.parametrize(("overrides", "warning"), WARNINGS)
def test_a_picked_group_the_model_ignores_is_named_in_one_warning(
    make_cfg, caplog, overrides, warning
):
    with caplog.at_level(logging.WARNING, logger="nnlab.validation"):
        validate(make_cfg(*overrides, "logger=none"))
    lines = [r.getMessage() for r in caplog.records if "does not use" in r.getMessage()]
    if warning is None:
        assert lines == []
    else:
        assert len(lines) == 1 and warning in lines[0]


def test_outside_hydra_no_group_counts_as_picked(monkeypatch):
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    assert picked_groups() == {}


def test_an_option_file_holding_a_plain_string_works(make_cfg, tmp_path):
    """configs/activation/<option>.yaml may hold just a name (`tanh`) instead of a mapping."""
    (tmp_path / "activation").mkdir()
    (tmp_path / "activation" / "just_tanh.yaml").write_text("tanh\n")
    cfg = make_cfg(f"hydra.searchpath=[file://{tmp_path}]", "activation=just_tanh", "logger=none")
    validate(cfg)
    net = instantiate_config(cfg.model, in_features=4, out_features=3)
    assert sum(isinstance(m, torch.nn.Tanh) for m in net) == 2
