"""Checks of a composed config before any data loads. nnlab.config.validate calls most;
nnlab.train calls the callback checks (once optimized_metric is filled in) and the resume
checks (reading the checkpoint once for the checks before and after the data loads).

Every component config is checked against the constructor it goes to: keys the constructor
does not take (with the closest valid one) and values of the wrong type for its annotations
(plain types, unions, literals and lists of them; a type it cannot judge, such as a class,
passes). Then each component is built once without data, so that its own checks run now: the
datamodule (construction loads nothing), the model on the "meta" device with placeholder sizes,
the loss, the optimizer and scheduler on one placeholder parameter, and the Trainer.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from nnlab.config import ConfigError, picked_option

T = TypeVar("T")
log = logging.getLogger(__name__)


def check_components(cfg: DictConfig, task: str) -> None:
    """The checks of this module on the data, model, activation, init, loss, optimizer,
    scheduler and Trainer configs, in the order a run builds them."""
    check_data(cfg)
    check_registries(cfg, task)
    check_arguments(cfg.model, "model", passed_in=("in_features", "out_features"))
    check_buildable(cfg)
    check_trainer(cfg)


def check_data(cfg: DictConfig) -> None:
    """The data config's keys and types, and the datamodule built once (it loads nothing)."""
    check_arguments(cfg.data, "data")
    check_built(cfg, "data", lambda: instantiate_config(cfg.data))


def check_trainer(cfg: DictConfig) -> None:
    """The trainer config's keys and types, a GPU where one is asked for, and the Trainer
    built once."""
    check_arguments(cfg.trainer, "trainer", passed_in=("callbacks", "logger"))
    check_accelerator(cfg.trainer.get("accelerator"))
    check_built(cfg, "trainer", lambda: quiet_trainer(cfg.trainer))


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


def check_arguments(cfg: DictConfig, group: str, passed_in: tuple[str, ...] = ()) -> None:
    """Raises ConfigError naming the first key of `cfg` (the config of group `group`) that
    `cfg._target_` does not take or whose value does not fit its annotation, and what is valid.

    passed_in: arguments the code supplies itself (e.g. a model's in_features): not config keys.
    """
    from hydra.utils import get_class

    target = cfg.get("_target_")
    if not target:
        return
    values = OmegaConf.to_container(cfg, resolve=True)
    options = {k: v for k, v in values.items() if not k.startswith("_")}
    check_options(options, get_class(target), group, target, passed_in)


def check_options(
    options: Mapping[str, Any],
    fn: Callable[..., Any],
    group: str,
    name: str,
    passed_in: tuple[str, ...] = (),
) -> None:
    """check_arguments for options that go to `fn` (a class or a function, e.g. a registry's
    factory) by another route than `_target_`; `name` names fn in messages."""
    parameters, hints, open_ended = _signature(fn)
    valid = [p for p in parameters if p not in passed_in]
    for key, value in options.items():
        if key not in parameters or key in passed_in:
            if open_ended and key not in passed_in:
                continue  # taken by **kwargs and passed on: nothing to check it against
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {group}.{close[0]}? " if close else ""
            listed = ", ".join(valid) if valid else "none"
            raise ConfigError(f"{group}.{key} is not an option of {name}; {hint}valid: {listed}")
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            raise ConfigError(f"{group}.{key} must be {_describe(hint)}, got {value!r}")


def _signature(fn: Callable[..., Any]) -> tuple[list[str], dict[str, Any], bool]:
    """The keyword parameters of fn(...), for a class following **kwargs up its hierarchy;
    their resolved annotations where they can be resolved; whether unknown keywords are
    accepted."""
    names: list[str] = []
    hints: dict[str, Any] = {}
    functions = [k.__dict__.get("__init__") for k in fn.__mro__] if isinstance(fn, type) else [fn]
    for function in functions:
        if function is None:
            continue
        params = list(inspect.signature(function).parameters.values())
        if isinstance(fn, type):
            params = params[1:]  # self
        try:
            resolved = typing.get_type_hints(function)
        except Exception:  # annotations naming what only type checkers import: not checked
            resolved = {}
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
                if p.name in resolved:
                    hints[p.name] = resolved[p.name]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, hints, False
    return names, hints, True


def _fits(value: Any, hint: Any) -> bool:
    """Whether value (plain YAML data) can be an argument annotated `hint`; True where the
    annotation is something this check does not judge."""
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:  # a fixed length
            return len(value) == len(args) and all(map(_fits, value, args))
        return not args or all(_fits(item, args[0]) for item in value)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    return True


def _describe(hint: Any) -> str:
    """A hint as a user reads it: "int or null", "one of 32, 'bf16-mixed'", "a list of int"."""
    if hint is type(None) or hint is None:
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) or origin is typing.Literal:
        members = _flatten(hint)
        literals = [repr(m.value) for m in members if isinstance(m, _Literal)]
        others = [_describe(m) for m in members if not isinstance(m, _Literal)]
        if literals:
            others.insert(0, "one of " + ", ".join(literals))
        return " or ".join(dict.fromkeys(others))
    if origin in (list, tuple, Sequence):
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


class _Literal(typing.NamedTuple):
    value: Any


def _flatten(hint: Any) -> list[Any]:
    """The members of a union, nested unions and literals opened up (literal values wrapped in
    _Literal), None last."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [m for arg in typing.get_args(hint) for m in _flatten(arg)]
        return sorted(members, key=lambda m: m is type(None))
    if origin is typing.Literal:
        return [_Literal(v) for v in typing.get_args(hint)]
    return [hint]


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint file's contents, memory-mapped (tensors are not read unless used); a file
    that is not a checkpoint is a ConfigError naming it."""
    import torch

    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects
        raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {e}") from None


def check_resume(cfg: DictConfig, ckpt_path: str) -> dict[str, Any]:
    """Refuses to resume from a checkpoint whose network or optimizer differ from this run's
    configs (Lightning would fail loading the weights or the optimizer state, or go on with
    another network); `init` is not compared, since resumed weights are not initialized. Other
    optimizer options (lr) are warned about: Lightning restores the saved optimizer state.
    Returns the checkpoint's saved hyperparameters (its data spec for check_resume_data)."""
    from nnlab.tasks.base import module_class_path

    checkpoint = read_checkpoint(ckpt_path)
    module_class_path(checkpoint)  # refuses a checkpoint not written by nnlab
    saved = checkpoint.get("hyper_parameters", {})
    current = OmegaConf.to_container(cfg, resolve=True)
    old_model, new_model = dict(saved.get("model") or {}), dict(current.get("model") or {})
    old_opt, new_opt = dict(saved.get("optimizer") or {}), dict(current.get("optimizer") or {})
    old_model.pop("init", None), new_model.pop("init", None)
    refusals = [("model", k) for k in sorted(set(old_model) | set(new_model))]
    for group, key in [*refusals, ("optimizer", "_target_")]:
        old, new = (old_model, new_model) if group == "model" else (old_opt, new_opt)
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"ckpt_path={ckpt_path} was trained with {group}.{key}={old.get(key)!r}, "
                f"this run has {new.get(key)!r}: resume with the checkpoint's {group}, or "
                "start a new run (ckpt_path=null)"
            )
    changed = [k for k in sorted(set(old_opt) | set(new_opt)) if old_opt.get(k) != new_opt.get(k)]
    if changed:
        log.warning(
            "resuming restores the checkpoint's optimizer state: %s as saved in it (%s), not as "
            "configured (%s)",
            ", ".join(f"optimizer.{k}" for k in changed),
            ", ".join(f"{old_opt.get(k)!r}" for k in changed),
            ", ".join(f"{new_opt.get(k)!r}" for k in changed),
        )
    return saved


def check_resume_data(ckpt_path: str, saved: dict[str, Any], spec: dict[str, Any]) -> None:
    """Refuses to resume from a checkpoint (`saved`: its hyperparameters, from check_resume)
    trained on data of another shape or task (`spec`: this run's DataSpec as a dict)."""
    if saved.get("spec") is not None and saved["spec"] != spec:
        raise ConfigError(
            f"ckpt_path={ckpt_path} was trained on data with {saved['spec']}; this run's data "
            f"gives {spec}: resume on the same data, or start a new run (ckpt_path=null)"
        )


def check_accelerator(accelerator: Any) -> None:
    """Refuses a GPU accelerator where torch sees no CUDA GPU, saying why that may be (a CPU
    build of torch is the usual reason)."""
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

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
    import torch

    def model() -> Any:
        with torch.device("meta"):
            return instantiate_config(cfg.model, in_features=1, out_features=1)

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


def check_registries(cfg: DictConfig, task: str) -> None:
    """The activation, init and loss configs ({name, **options}, no _target_): options against
    the registered factory's parameters; the loss is also built (without the class count)."""
    from nnlab.nn.activations import ACTIVATIONS, Maxout, split_config
    from nnlab.nn.init import INITIALIZERS, check_config
    from nnlab.nn.losses import LOSSES, create_loss, resolve_name

    activation = OmegaConf.to_container(cfg.activation, resolve=True)
    name, options = split_config(activation)
    if name == "maxout":
        check_options(options, Maxout, "activation", "maxout", ("in_features", "out_features"))
    else:
        check_options(options, ACTIVATIONS[name], "activation", name, ("width",))
    name, options, bias = check_config(OmegaConf.to_container(cfg.init, resolve=True))
    if bias is not None and not _fits(bias, float):
        raise ConfigError(f"init.bias must be a number, got {bias!r}")
    if INITIALIZERS[name] is None and options:
        raise ConfigError(f"init={name} takes no options, got {', '.join(options)}")
    if INITIALIZERS[name] is not None:
        check_options(options, INITIALIZERS[name], "init", name, ("w", "gain"))
    loss = OmegaConf.to_container(cfg.get("loss"), resolve=True) if cfg.get("loss") else None
    if loss and loss.get("name", "auto") != "auto":
        options = {k: v for k, v in loss.items() if k != "name"}
        check_options(
            options, LOSSES[resolve_name(loss, task)], "loss", loss["name"], ("num_classes",)
        )
    check_built(cfg, "loss", lambda: create_loss(loss, task, None))


def check_built(
    cfg: DictConfig, group: str, build: Callable[[], T], label: str | None = None
) -> T | None:
    """build() (a component made from cfg[group]); what its constructor refuses becomes a
    ConfigError naming the group's option (or `label`). Only refusals count (ConfigError,
    ValueError, TypeError, Lightning's MisconfigurationException): anything else (say, a model
    that reads a tensor's value while it is built, which "meta" cannot do) is left to the real
    build."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    refusals = (ConfigError, TypeError, ValueError, MisconfigurationException)
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
            target = str(node.get("_target_") or node.get("name")) if node else group
            label = f"{group}={picked_option(cfg, group, target)}"
        raise ConfigError(f"{label}: {cause}") from None


def instantiate_config(node: DictConfig, **kwargs: Any) -> Any:
    """hydra's instantiate with plain containers (what every component receives)."""
    from hydra.utils import instantiate

    return instantiate(node, **kwargs, _convert_="all")


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
