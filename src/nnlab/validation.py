"""Validation of a composed config, before any data loads: train.py's `validate` and eval.py's
`validate_eval`, and nothing else checks a whole config.

Every component config is checked against the constructor it goes to (nnlab.core.arguments).
Then each component is built once without data, so that its own checks run now: the
datamodule (construction loads nothing), the model on the "meta" device with placeholder sizes,
the loss, the optimizer and scheduler on one placeholder parameter, and the Trainer. The speed
group is checked by nnlab.speed.check_speed, once.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, ListConfig, OmegaConf

from nnlab.checkpoints import local_checkpoint
from nnlab.core import ConfigError, is_int
from nnlab.core.arguments import check_options
from nnlab.core.components import DATAMODULES, NETWORKS
from nnlab.core.hydra import hydra_choices, instantiate_config, picked_option
from nnlab.core.paths import check_checkpoint_file, check_paths
from nnlab.core.ranges import check_flags, check_ranges, suspicious
from nnlab.nn.activations import ACTIVATIONS
from nnlab.nn.init import INITIALIZERS
from nnlab.nn.losses import LOSSES, check_task, create_loss
from nnlab.nn.networks import PASSED_IN, PLACEHOLDER_SIZES
from nnlab.speed.config import check_anomaly, check_speed, uses_gpu
from nnlab.tasks import BY_TASK

T = TypeVar("T")
log = logging.getLogger(__name__)

# The registries whose entries configs pick by name, one per config group (configs/<group>/).
REGISTRIES = (ACTIVATIONS, INITIALIZERS, LOSSES)


# Seeds Lightning (and numpy) accept: unsigned 32-bit.
MAX_SEED = 2**32 - 1


def resolve_seed(seed: Any) -> tuple[int, bool]:
    """The run's seed and whether it was drawn: `seed` itself, or for null a fresh random one.

    DDP processes that Lightning starts inherit the first process's seed through
    PL_GLOBAL_SEED (set by seeding, as Lightning does), so all ranks split the data alike.
    """
    if seed is not None:
        if not is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed must be an int in [0, {MAX_SEED}] or null, got {seed!r}")
        return seed, False
    inherited = os.environ.get("PL_GLOBAL_SEED")
    if os.environ.get("LOCAL_RANK", "0") != "0" and inherited is not None:
        return int(inherited), True  # a DDP process Lightning started from the first one
    # torchrun and SLURM start every process themselves: each would draw a seed of its own (and
    # split the data its own way), the first process on each machine included.
    launched = "TORCHELASTIC_RUN_ID" in os.environ or os.environ.get("SLURM_NTASKS", "1") != "1"
    if launched or os.environ.get("LOCAL_RANK", "0") != "0":
        raise ConfigError(
            "seed=null draws a seed per run, but this run's processes were started by a "
            "launcher (torchrun, SLURM) and cannot share a drawn seed: set seed=<int>"
        )
    return secrets.randbelow(MAX_SEED + 1), True


def data_task(data_cfg: DictConfig | dict[str, Any]) -> str:
    """The task a data config's datamodule declares, read from its class."""
    target = data_cfg.get("_target_")
    if not target:
        raise ConfigError("the data config has no _target_ (the datamodule class)")
    task = getattr(get_class(target), "task", None)
    if task is None:
        raise ConfigError(f"{target} declares no task (regression, binary or multiclass)")
    return task


def validate(cfg: DictConfig) -> str:
    """Checks that data, model, loss, optimizer and trainer can work together; returns the
    data's task.

    Runs before anything is loaded, so a bad combination or option costs no time: besides the
    combinations, every key of every component's config is checked against the constructor it
    goes to (nnlab.checks), and each component is built once without data (the model on
    placeholders) so that its own checks run now.
    """
    check_paths(cfg)
    check_flags(cfg)
    check_targets(cfg)
    task = data_task(cfg.data)
    data_name = picked_option("data", cfg.data._target_.rsplit(".", 1)[-1])
    model_target = cfg.model.get("_target_")
    model_tasks = getattr(get_class(model_target), "tasks", None) if model_target else None
    if model_tasks is not None and task not in model_tasks:
        model_name = picked_option("model", model_target)
        raise ConfigError(
            f"model={model_name} cannot train data={data_name} (a {task} task); it trains "
            f"{', '.join(model_tasks)} tasks. Pick another model (linear, mlp) or another data set."
        )
    try:
        check_task(plain(cfg.get("loss")), task)
    except ConfigError as e:
        raise ConfigError(f"{e} (data={data_name} is a {task} task)") from None
    if cfg.get("speed"):
        check_speed(cfg.speed)
    check_components(cfg, task)  # the datamodule's own checks (batch_size...) run here
    check_checkpoint_file(local_checkpoint(cfg))
    warn_ignored_groups(cfg)
    groups = (plain(cfg.get(group)) or {} for group in ("optimizer", "scheduler", "trainer"))
    for warning in suspicious(*groups):
        log.warning(warning)
    return task


def validate_eval(cfg: DictConfig) -> None:
    """eval.py's share of validate(): the paths, the seed, the trainer (keys, types, a GPU
    where asked for, built once), a data config given with data=<option> (keys, types, built
    once) and the checkpoint file."""
    check_paths(cfg)
    check_flags(cfg)
    if cfg.get("seed") is not None:
        resolve_seed(cfg.seed)
    if cfg.get("data"):
        check_data(cfg)
    check_trainer(cfg)
    check_checkpoint_file(local_checkpoint(cfg))


def check_components(cfg: DictConfig, task: str) -> None:
    """The checks of this module on the data, model, activation, init, loss, optimizer,
    scheduler and Trainer configs, in the order a run builds them."""
    check_data(cfg)
    check_registries(cfg, task)
    check_arguments(cfg.model, "model", passed_in=PASSED_IN)
    check_buildable(cfg)
    check_trainer(cfg)


def check_targets(cfg: DictConfig) -> None:
    """The model and data configs name registered classes (nnlab.core.components): a typed
    `_target_` is the user's own code, so its module is imported, but only a registered class
    is built (and so a checkpoint of it loads again); anything else (os.system) is refused."""
    if cfg.data.get("_target_"):  # none: data_task says so
        DATAMODULES.typed(cfg.data._target_, "data._target_")
    NETWORKS.typed(cfg.model.get("_target_"), "model._target_")


def check_data(cfg: DictConfig) -> None:
    """The data config's keys and types, and the datamodule built once (it loads nothing)."""
    if cfg.data.get("_target_"):
        DATAMODULES.typed(cfg.data._target_, "data._target_")
    check_arguments(cfg.data, "data")
    check_built(cfg, "data", lambda: instantiate_config(cfg.data))


def check_trainer(cfg: DictConfig) -> None:
    """The trainer config's keys and types, a GPU where one is asked for, and the Trainer
    built once."""
    check_arguments(cfg.trainer, "trainer", passed_in=("callbacks", "logger"))
    check_accelerator(cfg.trainer.get("accelerator"))
    check_precision(cfg.trainer, cfg.get("speed"))
    check_anomaly(cfg)
    check_built(cfg, "trainer", lambda: quiet_trainer(cfg.trainer))


# fp16 autocast, whose small range needs CUDA's gradient scaler (on the CPU Lightning would
# quietly train in bf16 instead).
FP16_MIXED = ("16-mixed", "16", 16)


# Weights held in another type than float32: Lightning converts each batch's inputs to it, which
# it cannot do for the batch groups of grouped steps (speed.steps_per_batch).
TRUE_PRECISIONS = ("64-true", "64", 64, "bf16-true", "16-true")


def check_precision(trainer_cfg: DictConfig, speed_cfg: DictConfig | None = None) -> None:
    """Refuses fp16 mixed precision on the CPU, naming what works there, and weights in another
    type than float32 with grouped training steps."""
    precision = trainer_cfg.get("precision")
    if precision in FP16_MIXED and not uses_gpu(trainer_cfg):
        raise ConfigError(
            f"trainer.precision={precision} (fp16 autocast with gradient scaling) needs a CUDA "
            "GPU; on the CPU use trainer.precision=bf16-mixed or 32-true"
        )
    steps = (speed_cfg or {}).get("steps_per_batch", 1)
    if precision in TRUE_PRECISIONS and steps != 1:
        raise ConfigError(
            f"trainer.precision={precision} (weights in that type) does not work with grouped "
            f"training steps (speed.steps_per_batch={steps}), whose inputs stay float32: add "
            "speed.steps_per_batch=1"
        )


def check_callbacks_and_loggers(cfg: DictConfig) -> None:
    """Keys and types of the callbacks, diagnostics and logger entries, and the callbacks built
    once (their constructors create no files; loggers' may, so those are not built). Call it
    once optimized_metric and optimized_mode, which the checkpoint callbacks interpolate, are
    filled in."""
    for group in ("callbacks", "diagnostics", "logger"):
        for key, node in (cfg.get(group) or {}).items():
            if node and "_target_" in node:
                check_arguments(node, f"{group}.{key}")
                if group != "logger":
                    label = f"{group}.{key}"
                    check_built(cfg, group, lambda node=node: instantiate_config(node), label)
                elif node._target_ in PASSED_ON:
                    check_passed_on(node, f"{group}.{key}")


def tensorboard_writer() -> type:
    """The class TensorBoardLogger hands its extra keys to (importing it imports tensorboard:
    only where such keys are set)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


# Loggers that hand the keys they do not take to another constructor, which runs only when the
# first value is logged (a TypeError mid-run otherwise): that constructor, and what the logger
# passes to it itself.
PASSED_ON = {"lightning.pytorch.loggers.TensorBoardLogger": (tensorboard_writer, ("log_dir",))}


def check_passed_on(node: DictConfig, group: str) -> None:
    """Checks the keys of a PASSED_ON logger's config that the logger itself does not take
    against the constructor it hands them to."""
    writer, passed_in = PASSED_ON[node._target_]
    own = inspect.signature(get_class(node._target_)).parameters
    extra = {k: v for k, v in plain(node).items() if not k.startswith("_") and k not in own}
    if extra:
        cls = writer()
        check_options(extra, cls, group, f"{node._target_} (or {cls.__name__})", passed_in)


def check_arguments(cfg: DictConfig, group: str, passed_in: tuple[str, ...] = ()) -> None:
    """Raises ConfigError naming the first key of `cfg` (the config of group `group`) that
    `cfg._target_` does not take, whose value does not fit its annotation, or whose value is
    out of the range nnlab.core.ranges gives it; and what is valid.

    passed_in: arguments the code supplies itself (e.g. a model's in_features): not config keys.
    """
    target = cfg.get("_target_")
    if not target:
        return
    values = OmegaConf.to_container(cfg, resolve=True)
    options = {k: v for k, v in values.items() if not k.startswith("_")}
    check_options(options, get_class(target), group, target, passed_in)
    raw = OmegaConf.to_container(cfg, resolve=False)
    sources = {k: raw[k] for k in options if OmegaConf.is_interpolation(cfg, k)}
    check_ranges(options, group, target, sources)


def check_accelerator(accelerator: Any) -> None:
    """Refuses a GPU accelerator where torch sees no CUDA GPU, saying why that may be (a CPU
    build of torch is the usual reason)."""
    if accelerator not in ("gpu", "cuda"):
        return
    if torch.cuda.is_available():
        return
    build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
    raise ConfigError(
        f"trainer.accelerator={accelerator}, but torch {torch.__version__} ({build}) sees no "
        "CUDA GPU here; use trainer=cpu, or trainer=default to take a GPU when there is one"
    )


def check_buildable(cfg: DictConfig) -> None:
    """Builds the model on the "meta" device with placeholder sizes, and the optimizer and
    scheduler on one placeholder parameter, so that what their constructors refuse (a hidden
    size of 0, a negative learning rate, an unknown option) is reported before data loads."""

    def model() -> Any:
        with torch.device("meta"):  # as TaskModule builds it, sizes passed where named
            return NETWORKS.build(plain(cfg.model), "model", **PLACEHOLDER_SIZES)

    check_built(cfg, "model", model)
    if not cfg.get("optimizer"):
        return
    check_arguments(cfg.optimizer, "optimizer", passed_in=("params",))
    param = torch.nn.Parameter(torch.zeros(1))

    def optimizer() -> Any:
        return instantiate_config(cfg.optimizer)(params=[param])

    built = check_built(cfg, "optimizer", optimizer)
    if cfg.get("scheduler") and built is not None:
        check_arguments(cfg.scheduler, "scheduler", passed_in=("optimizer",))
        check_built(cfg, "scheduler", lambda: instantiate_config(cfg.scheduler)(optimizer=built))


def plain(node: Any) -> Any:
    """A config node as plain data, interpolations resolved (a string stays a string)."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def check_registries(cfg: DictConfig, task: str) -> None:
    """The configs that pick a registry entry by name (activation, init, loss: a name or
    {name, **options}, no _target_), each against its entry's options: the group's config,
    and the model's own key of that name where it differs (`model.activation=tanh`). The
    loss is also built (without the class count)."""
    model = plain(cfg.get("model")) or {}
    for registry in REGISTRIES:
        configs = [plain(cfg.get(registry.group))]
        if registry.group in model and model[registry.group] != configs[0]:
            configs.append(model[registry.group])
        for config in configs:
            registry.check(config)
    loss = plain(cfg.get("loss"))
    default = BY_TASK[task].default_loss  # loss=auto's: the task's own
    check_built(cfg, "loss", lambda: create_loss(loss, task, None, default))


def warn_ignored_groups(cfg: DictConfig) -> None:
    """Logs one warning naming the config groups the user picked that the chosen model does
    not use (its network class's `ignored_groups`: an activation for model=linear, an
    optimizer for model=perceptron). Groups left at their default option are not named, so
    the default activation does not warn on every linear run."""
    target = cfg.model.get("_target_")
    network = get_class(target) if target else None
    ignored_groups = getattr(network, "ignored_groups", None)
    if ignored_groups is None:
        return
    picked = picked_groups(own=getattr(network, "own_options", ()))
    ignored = [picked[group] for group in ignored_groups(plain(cfg.model)) if group in picked]
    if ignored:
        model = picked_option("model", target)
        log.warning("model=%s does not use %s: ignored", model, ", ".join(ignored))


def picked_groups(own: tuple[str, ...] = ()) -> dict[str, str]:
    """The config groups the user picked, each with how: the command-line overrides that name
    it (`activation=tanh`, `model.activation=tanh`, `+optimizer.lr=0.1`: a model key
    interpolates the group of its name, except the keys in `own`, which the model's config
    sets itself), or `group=option` where an experiment changed the group's default option.
    Empty outside Hydra."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    picked: dict[str, list[str]] = {}
    for override in hydra_cfg.overrides.task:
        parts = override.split("=", 1)[0].lstrip("+~").split(".")
        group = parts[1] if parts[0] == "model" and len(parts) > 1 else parts[0]
        if parts[0] == "model" and group in own:
            continue
        picked.setdefault(group, []).append(override)
    defaults = default_choices(hydra_cfg)
    for group, option in hydra_choices().items():
        if group not in picked and defaults.get(group, option) != option:
            picked[group] = [f"{group}={option}"]
    return {group: " ".join(overrides) for group, overrides in picked.items()}


def default_choices(hydra_cfg: DictConfig) -> dict[str, str]:
    """The option of each group in the primary config's defaults list (configs/train.yaml),
    before any override or experiment; empty where the configs are not plain files."""
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            primary = Path(source.path) / f"{hydra_cfg.job.config_name}.yaml"
            defaults = OmegaConf.load(primary).get("defaults") or []
            entries = [entry for entry in defaults if isinstance(entry, DictConfig)]
            return {group: str(option) for entry in entries for group, option in entry.items()}
    return {}


def check_built(
    cfg: DictConfig, group: str, build: Callable[[], T], label: str | None = None
) -> T | None:
    """build() (a component made from cfg[group]); what its constructor refuses becomes a
    ConfigError naming the group's option (or `label`). Only refusals count (ConfigError,
    ValueError, TypeError, Lightning's MisconfigurationException, ImportError): anything else
    (say, a model that reads a tensor's value while it is built, which "meta" cannot do) is
    left to the real build."""
    # An ImportError: an option that needs a package this machine lacks (trainer.accelerator=tpu).
    refusals = (ConfigError, TypeError, ValueError, MisconfigurationException, ImportError)
    try:
        return build()
    except (InstantiationException, *refusals) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) else e
        if isinstance(cause, ConfigError):
            raise ConfigError(str(cause)) from None
        if not isinstance(cause, refusals):
            return None
        if label is None:
            node = cfg.get(group)
            if isinstance(node, DictConfig):
                node = node.get("_target_") or node.get("name")
            target = str(node or group)
            label = f"{group}={picked_option(group, target)}"
        raise ConfigError(f"{label}: {cause}") from None


def quiet_trainer(trainer_cfg: DictConfig) -> Any:
    """The configured Trainer, built and dropped, without its "GPU available" lines (the real
    one prints them)."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        return instantiate_config(trainer_cfg, callbacks=[], logger=False)
    finally:
        lightning_log.setLevel(level)
