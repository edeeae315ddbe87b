"""Checks a `_target_` config against the constructor it will call, before anything is built:
keys the constructor does not take, and values of the wrong type for its annotations (plain
types, unions, literals and lists of them; a type it cannot judge, such as a class, passes)."""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab.config import ConfigError


def check_arguments(cfg: DictConfig, group: str, passed_in: tuple[str, ...] = ()) -> None:
    """Raises ConfigError naming the first key of `cfg` (the config of group `group`) that
    `cfg._target_` does not take or whose value does not fit its annotation, and what is valid.

    passed_in: arguments the code supplies itself (e.g. a model's in_features): not config keys.
    """
    from hydra.utils import get_class

    target = cfg.get("_target_")
    if not target:
        return
    parameters, hints, open_ended = _signature(get_class(target))
    values = OmegaConf.to_container(cfg, resolve=True)
    valid = [name for name in parameters if name not in passed_in]
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in parameters or key in passed_in:
            if open_ended and key not in passed_in:
                continue  # taken by **kwargs and passed on: nothing to check it against
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {group}.{close[0]}? " if close else ""
            raise ConfigError(
                f"{group}.{key} is not an option of {target}; {hint}valid: {', '.join(valid)}"
            )
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            raise ConfigError(f"{group}.{key} must be {_describe(hint)}, got {value!r}")


def _signature(cls: type) -> tuple[list[str], dict[str, Any], bool]:
    """The keyword parameters of cls(...), following **kwargs up the class hierarchy; their
    resolved annotations where they can be resolved; whether unknown keywords are accepted."""
    names: list[str] = []
    hints: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
        try:
            resolved = typing.get_type_hints(init)
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
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return True  # fixed-length tuples: not judged
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
