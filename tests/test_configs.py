"""Every option of every config group composes, and configs and code line up."""

from __future__ import annotations

import itertools

import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf, open_dict

from nnlab.core import ConfigError
from nnlab.nn.losses import valid_losses
from nnlab.tasks import module_class
from nnlab.tasks.metrics import metric_mode
from nnlab.validation import REGISTRIES, check_callbacks_and_loggers, data_task, validate

from .conftest import CONFIG_DIR

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


ALL_OPTIONS = [(g, o) for g in GROUPS if g != "hydra" for o in options(g)]


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    optional = ("experiment", "debug", "hparams_search", "scheduler", "logger")
    assert cfg.get(group) is not None or group in optional
    # Resolving every interpolation catches typos such as ${trainer.max_epoch}.
    OmegaConf.to_container(cfg, resolve=True)


# What some options need from the command line, and the options that need a GPU.
REQUIRED = {
    "house_prices_csv": ("data.path=houses.csv", "data.target=price"),
    "csv_classification": ("data.path=iris.csv", "data.target=species"),
    "image_folder": ("data.root=pictures",),
}
NEEDS_GPU = {("trainer", "gpu"), ("trainer", "ddp")}
# Options that the default data (digits, multiclass) cannot take, with data that can.
OTHER_TASK = {
    "mse": "data=linear_regression",
    "l1": "data=linear_regression",
    "huber": "data=linear_regression",
    "bce_with_logits": "data=xor",
    "perceptron": "data=xor",
}


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_passes_the_config_checks(make_cfg, group, option):
    """The checks that run before data loads accept every shipped option: no false alarms."""
    if (group, option) in NEEDS_GPU and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    data = [OTHER_TASK[option]] if option in OTHER_TASK else []
    cfg = make_cfg(f"{group}={option}", *REQUIRED.get(option, ()), *data)
    task = validate(cfg)
    with open_dict(cfg):
        cfg.optimized_metric = cfg.optimized_metric or module_class(cfg.model, task).monitor
        cfg.optimized_mode = cfg.optimized_mode or metric_mode(cfg.optimized_metric)
    check_callbacks_and_loggers(cfg)


def test_eval_config_composes(make_cfg):
    cfg = make_cfg("ckpt_path=some.ckpt", config_name="eval")
    assert cfg.ckpt_path == "some.ckpt" and cfg.get("data") is None
    assert make_cfg("ckpt_path=x", "data=xor", config_name="eval").data.samples_per_corner > 0


def test_eval_refuses_a_data_option_that_does_not_exist(make_cfg):
    # A misspelt data=<option> once fell back silently to the checkpoint's own data.
    with pytest.raises(MissingConfigException, match="Could not find 'data/digit'"):
        make_cfg("ckpt_path=x.ckpt", "data=digit", config_name="eval")


def test_config_names_line_up_with_registries():
    """The option's file name is the registry key its `name` holds (aliases excepted)."""
    assert [r.group for r in REGISTRIES] == ["activation", "init", "loss"]
    for registry in REGISTRIES:
        group = registry.group
        names = {
            o: OmegaConf.load(CONFIG_DIR / group / f"{o}.yaml").get("name") for o in options(group)
        }
        for option, name in names.items():
            if name is None:  # an alias: its defaults list points at another option
                continue
            assert name == option, f"configs/{group}/{option}.yaml says name: {name}"
        declared = {n for n in names.values() if n}
        assert declared == set(registry.names())


@pytest.mark.parametrize(
    ("alias", "target"), [("kaiming", "kaiming_normal"), ("xavier", "xavier_normal")]
)
def test_init_aliases(make_cfg, alias, target):
    assert make_cfg(f"init={alias}").init == make_cfg(f"init={target}").init


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizers_and_schedulers_instantiate(make_cfg, option):
    params = [torch.nn.Parameter(torch.zeros(3))]
    for scheduler in options("scheduler"):
        cfg = make_cfg(f"optimizer={option}", f"scheduler={scheduler}")
        optimizer = instantiate(cfg.optimizer, _convert_="all")(params=params)
        assert isinstance(optimizer, torch.optim.Optimizer)
        if cfg.scheduler:
            instantiate(cfg.scheduler, _convert_="all")(optimizer=optimizer)


def test_sgd_has_no_momentum(make_cfg):
    assert make_cfg("optimizer=sgd").optimizer.momentum == 0


@pytest.mark.parametrize("option", ["default", "cpu", "ddp_cpu"])
def test_cpu_trainers_instantiate(make_cfg, option):
    trainer = instantiate(make_cfg(f"trainer={option}").trainer, logger=False)
    assert trainer.max_epochs == 20


def test_every_data_config_declares_a_task(make_cfg):
    for option in options("data"):
        assert data_task(make_cfg(f"data={option}").data) in ("regression", "binary", "multiclass")


def test_every_option_composes_with_every_other_unless_the_task_forbids_it(make_cfg):
    """data × model × loss: validation accepts exactly the combinations the task allows."""
    base = make_cfg()
    # The data options whose files must be named on the command line.
    composed = {
        group: {o: make_cfg(f"{group}={o}", *REQUIRED.get(o, ()))[group] for o in options(group)}
        for group in ("data", "model", "loss")
    }
    for data, model, loss in itertools.product(*(composed[g] for g in ("data", "model", "loss"))):
        cfg = base.copy()
        cfg.data, cfg.model, cfg.loss = (
            composed["data"][data],
            composed["model"][model],
            composed["loss"][loss],
        )
        task = data_task(cfg.data)
        allowed = loss in valid_losses(task) and task in get_class(cfg.model._target_).tasks
        if allowed:
            assert validate(cfg) == task, (data, model, loss)
        else:
            with pytest.raises(ConfigError):
                validate(cfg)


def test_the_readme_documents_every_group_and_option():
    """Each folder of configs/ has a row in README.md's table of config groups, naming every
    option (YAML file) of the folder in backticks."""
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in (CONFIG_DIR.parent / "README.md").read_text().splitlines()
        if line.startswith("| `")
    }
    missing = []
    for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir()):
        row = rows.get(group.name, "")
        missing += [
            f"{group.name}={option.stem}"
            for option in sorted(group.glob("*.yaml"))
            if f"`{option.stem}`" not in row
        ]
    assert not missing, f"not in README.md's config-group table: {', '.join(missing)}"
