"""Options checked against the function or class they go to: keys it does not take (with the
closest valid one) and values of the wrong type for its annotations (plain types, unions,
literals and lists of them; a type this cannot judge, such as a class, passes)."""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nnlab.core.errors import ConfigError


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
        if hint is not None and not fits(value, hint):
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


def fits(value: Any, hint: Any) -> bool:
    """Whether value (plain YAML data) can be an argument annotated `hint`; True where the
    annotation is something this check does not judge."""
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(hint))
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
            return len(value) == len(args) and all(map(fits, value, args))
        return not args or all(fits(item, args[0]) for item in value)
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
