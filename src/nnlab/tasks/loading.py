"""What a checkpoint may name, checked before anything is built: the one path through which
eval.py, predict.py and a resume (train.py ckpt_path=…) use a checkpoint's contents.

A checkpoint is data. Its file is read with weights only (nnlab.checkpoints.read_checkpoint);
then `read_checked` refuses it, with one ConfigError naming the key, unless
- its `nnlab_module` is one of nnlab's task modules (by name; older checkpoints stored the
  class's dotted path, accepted for those same classes only);
- its hyper-parameters are those a task module takes (spec, model, loss, optimizer,
  scheduler, data, speed) and name classes only where a class goes: `model._target_` a
  registered network, `data._target_` a registered datamodule (nnlab.core.components),
  `optimizer._target_` and `scheduler._target_` one of torch.optim's optimizers and learning
  rate schedulers. Any other `_target_` (or Hydra key such as `_args_`), at any depth, in a
  mapping or a list, is refused; no string of the checkpoint is ever imported;
- its spec is one of the task module's task, its loss a registered loss for that task;
- its weights are all finite (a diverged run's weights predict nan).
`module_from` then builds the task module from those configs (the network through its
registry, no Hydra) and loads the weights; `datamodule_from` builds a saved data config."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch

from nnlab.checkpoints import MODULE_KEY, read_checkpoint
from nnlab.core import ConfigError
from nnlab.core.components import DATAMODULES, NETWORKS, TOP_KEYS, dotted_name
from nnlab.data.spec import DataSpec
from nnlab.nn.losses import LOSSES, check_task
from nnlab.tasks import module_class
from nnlab.tasks.base import TaskModule
from nnlab.tasks.binary import BinaryTask
from nnlab.tasks.multiclass import MulticlassTask
from nnlab.tasks.perceptron import PerceptronTask
from nnlab.tasks.regression import RegressionTask

# nnlab's task modules, by the name a checkpoint stores (TaskModule.on_save_checkpoint) and by
# the dotted path that checkpoints written before names were stored hold.
TASK_MODULES: dict[str, type[TaskModule]] = {
    name: cls
    for cls in (RegressionTask, BinaryTask, MulticlassTask, PerceptronTask)
    for name in (cls.__name__, dotted_name(cls))
}
# The hyper-parameters a task module takes: what a checkpoint's may hold, and nothing else.
HPARAMS = tuple(inspect.signature(TaskModule.__init__).parameters)[1:]
# Hydra's instantiation keys: none may appear in a saved config but TOP_KEYS at the top of a
# config that names a class.
HYDRA_KEYS = ("_target_", "_args_", "_recursive_", "_convert_", "_partial_")


def _torch_classes(module: Any, base: type | tuple[type, ...]) -> dict[str, type]:
    """The classes of a torch module that derive from `base`, by the names configs use
    (`torch.optim.Adam`) and by their defining module's (`torch.optim.adam.Adam`)."""
    classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base)]
    return {
        name: c
        for c in classes
        if c not in (base if isinstance(base, tuple) else (base,))
        for name in (f"{module.__name__}.{c.__name__}", dotted_name(c))
    }


OPTIMIZERS = _torch_classes(torch.optim, torch.optim.Optimizer)
SCHEDULERS = _torch_classes(
    torch.optim.lr_scheduler,
    (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
)


def _allowed(group: str, name: Any) -> bool:
    """Whether `name` may be the `_target_` at the top of a saved optimizer or scheduler config."""
    table = OPTIMIZERS if group == "optimizer" else SCHEDULERS
    return isinstance(name, str) and name in table


# Groups whose top may name a class, and what it must be.
CLASS_GROUPS = {
    "model": "a registered network",
    "data": "a registered datamodule",
    "optimizer": "a torch.optim optimizer",
    "scheduler": "a torch.optim.lr_scheduler scheduler",
}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def key_path(parent: str, key: Any) -> str:
    """The path of `key` under `parent` as a user types it (`model.activation.file`,
    `model.layers[0]`); a key that is no identifier is quoted, so no message spans lines."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if isinstance(key, str) and IDENTIFIER.match(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{key!r}]"


def check_hyperparameters(hparams: Any, source: str) -> None:
    """Refuses saved hyper-parameters that hold anything but the task module's own keys, or that
    name a class anywhere but at the top of the model, data, optimizer or scheduler config
    (and there, anything but an allowed class). `source` names the checkpoint in messages."""
    if not isinstance(hparams, Mapping):
        raise ConfigError(f"{source} holds no hyper-parameters: not a checkpoint train.py wrote")
    for key in hparams:
        if key not in HPARAMS:
            raise ConfigError(
                f"{source}: hyper-parameter {key_path('', key)} is not one a task module takes "
                f"({', '.join(HPARAMS)}): refused unread"
            )
    # Depth-first, without recursion: a crafted nesting depth costs no stack.
    stack: list[tuple[str, Any, str, bool]] = [(k, v, k, True) for k, v in hparams.items()]
    while stack:
        path, node, group, top = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                here = key_path(path, key)
                if not isinstance(key, str):
                    raise ConfigError(f"{source}: {here}: a saved config's keys are names")
                if key in HYDRA_KEYS:
                    _check_hydra_key(source, here, key, value, group, top)
                stack.append((here, value, group, False))
        elif isinstance(node, list | tuple):
            stack.extend((key_path(path, i), v, group, False) for i, v in enumerate(node))


def _check_hydra_key(source: str, here: str, key: str, value: Any, group: str, top: bool) -> None:
    """Refuses a Hydra key (`key` at path `here`) unless it is `_target_` (or `_partial_`) at
    the top of a config that names a class, and the class there is an allowed one."""
    if not top or group not in CLASS_GROUPS or key not in TOP_KEYS:
        where = ", ".join(f"{g}._target_" for g in CLASS_GROUPS)
        raise ConfigError(
            f"{source}: {here}={_short(value)} is refused: a checkpoint names a class only at "
            f"{where}, never elsewhere; nothing of it was built"
        )
    registry = {"model": NETWORKS, "data": DATAMODULES}.get(group)
    if key == "_target_" and registry is not None:
        registry.lookup(value, here, source)  # refused saying how to register a class
    elif key == "_target_" and not _allowed(group, value):
        raise ConfigError(
            f"{source}: {here}={_short(value)} is not {CLASS_GROUPS[group]}; nothing of it was "
            f"built (valid: {', '.join(_valid(group))})"
        )


def _valid(group: str) -> list[str]:
    """The names allowed at an optimizer's or scheduler's `_target_`, as configs spell them."""
    table, dots = (OPTIMIZERS, 2) if group == "optimizer" else (SCHEDULERS, 3)
    return sorted(name for name in table if name.count(".") == dots)


def _short(value: Any) -> str:
    """A value of a checkpoint as a message shows it: repr (one line), cut at 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def task_module_class(checkpoint: Mapping[str, Any], source: str) -> type[TaskModule]:
    """The task module a checkpoint names: one of nnlab's (TASK_MODULES), never imported."""
    if MODULE_KEY not in checkpoint:
        raise ConfigError(f"{source} was not written by an nnlab task module (no {MODULE_KEY})")
    name = checkpoint[MODULE_KEY]
    cls = TASK_MODULES.get(name) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(c.__name__ for c in dict.fromkeys(TASK_MODULES.values()))
        raise ConfigError(
            f"{source}: {MODULE_KEY}={_short(name)} is not one of nnlab's task modules "
            f"({valid}); refused unread"
        )
    return cls


def check_finite(state_dict: Any, source: str) -> None:
    """Refuses weights that are not a mapping of tensors, or that hold a NaN or an infinity
    (a run that diverged: its predictions would be nan)."""
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"{source} holds no weights (state_dict): not written by train.py")
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(f"{source}: state_dict[{name!r}] is not a tensor")
        inexact = tensor.is_floating_point() or tensor.is_complex()
        if inexact and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(
                f"{source}: its weights are not finite ({_short(name)} holds NaN or inf): "
                "the run diverged; use a checkpoint from before (best.ckpt) or train again"
            )


def read_checked(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint file read with weights only and checked (see the module docstring) before
    anything of it is built; ConfigError naming the key otherwise."""
    checkpoint = read_checkpoint(ckpt_path)
    source = f"ckpt_path={ckpt_path}"
    if not isinstance(checkpoint, Mapping):
        raise ConfigError(f"{source} is not a checkpoint train.py wrote")
    cls = task_module_class(checkpoint, source)
    hparams = checkpoint.get("hyper_parameters")
    check_hyperparameters(hparams, source)
    for required in ("spec", "model"):
        if not isinstance(hparams.get(required), Mapping):
            raise ConfigError(f"{source} records no {required} config: not written by train.py")
    spec = _spec(hparams["spec"], source)
    if spec.task != cls.task:
        raise ConfigError(
            f"{source}: its spec is a {spec.task} task, but its {MODULE_KEY} "
            f"{cls.__name__} trains {cls.task} tasks: the checkpoint is not consistent"
        )
    if module_class(hparams["model"], spec.task) is not cls:
        raise ConfigError(
            f"{source}: {MODULE_KEY} {cls.__name__} does not train model._target_="
            f"{hparams['model']['_target_']}: the checkpoint is not consistent"
        )
    if cls is not PerceptronTask:
        try:
            check_task(hparams.get("loss"), spec.task)
            LOSSES.check(hparams.get("loss"))
        except ConfigError as e:
            raise ConfigError(f"{source}: its loss config is refused: {e}") from None
    check_finite(checkpoint.get("state_dict"), source)
    hparams["spec"] = spec.to_dict()  # an older checkpoint's spec, as this version writes it
    return checkpoint


def _spec(spec: Mapping[str, Any], source: str) -> DataSpec:
    """The DataSpec a checkpoint records; ConfigError when it is not one."""
    try:
        return DataSpec.from_dict(dict(spec))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{source}: its spec is not a data spec ({e})") from None


def module_from(checkpoint: Mapping[str, Any], ckpt_path: str) -> TaskModule:
    """The task module of a checkpoint checked by `read_checked`, with its weights, on the CPU.
    A saved config that does not build, or weights that do not fit, is a ConfigError."""
    source = f"ckpt_path={ckpt_path}"
    cls = task_module_class(checkpoint, source)
    hparams = dict(checkpoint["hyper_parameters"])
    try:
        module = cls(**hparams)
    except ConfigError as e:
        raise ConfigError(f"{source}: its saved configs are refused: {e}") from None
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"{source}: its saved configs do not build a module: {e}") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{source}: its weights do not fit its network ({first})") from None
    return module


def datamodule_from(data_cfg: Mapping[str, Any], source: str | None) -> Any:
    """The datamodule a data config describes, through the datamodule registry: a checkpoint's
    (`source` names it; checked by `read_checked`) or one the user typed (`source` None)."""
    try:
        return DATAMODULES.build(data_cfg, "data", source)
    except (TypeError, ValueError, KeyError) as e:
        if source is None:
            raise
        raise ConfigError(f"{source}: its data config does not build: {e}") from None
