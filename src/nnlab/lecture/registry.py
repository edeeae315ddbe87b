"""The claims by name, in the course's order, and how to run them: one (`run_claim`) or all
of them with a report page (`run_all`). The CLI, the tests and notebooks all go through here."""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnlab.core import ConfigError
from nnlab.lecture import (
    activations,
    dead_units,
    estimation,
    gradients,
    init_variance,
    layers,
    losses,
    optimization,
    optimizers,
    perceptron,
    regression,
)
from nnlab.lecture.fitting import one_thread
from nnlab.lecture.study import Claim, Run, default_root, write_report

# name → study(run, **options) → Claim
CLAIMS: dict[str, Callable[..., Claim]] = {
    "perceptron": perceptron.study,
    "feedforward": layers.feedforward,
    "linear_collapse": layers.linear_collapse,
    "activations": activations.study,
    "init_variance": init_variance.study,
    "dead_relu": dead_units.study,
    "losses": losses.study,
    "learning_rate": optimization.learning_rate,
    "gd_regimes": optimization.gd_regimes,
    "mle_consistency": regression.mle_consistency,
    "mle_conditions": estimation.mle_conditions,
    "mle_efficiency": estimation.mle_efficiency,
    "gradient_flow": gradients.study,
    "optimizers": optimizers.study,
}


def options_of(name: str) -> dict[str, Any]:
    """The options a claim's study takes besides its run, with their defaults."""
    parameters = list(inspect.signature(CLAIMS[name]).parameters.values())[1:]
    return {p.name: p.default for p in parameters}


def check_option(key: str, value: Any, hint: Any) -> None:
    """Refuses an option value that is not of its study's type (`hint`: int, float, a list or
    tuple of them, or None where the study picks): sizes, counts and learning rates are > 0."""
    if not _fits(value, hint):
        raise ConfigError(f"-o {key}={value!r} must be {_describe(hint)}")


def _describe(hint: Any, plural: bool = False) -> str:
    """A type hint in words: "an int > 0 or null", "a list of numbers > 0"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg, plural) for arg in args)
    if origin is tuple and Ellipsis not in args:
        return f"a list of {len(args)} {_describe(args[0], plural=True)}"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0], plural=True)}"
    words = {int: ("an int > 0", "ints > 0"), float: ("a number > 0", "numbers > 0")}
    if hint is type(None):
        return "null"
    return words[hint][plural] if hint in words else getattr(hint, "__name__", str(hint))


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and Ellipsis not in args:
            return len(value) == len(args) and all(map(_fits, value, args))
        return bool(value) and all(_fits(v, args[0] if args else Any) for v in value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value) and value > 0
    return isinstance(value, hint) if isinstance(hint, type) else True


def run_claim(
    name: str,
    fast: bool = False,
    seed: int = 0,
    out: str | Path | None = None,
    **options: Any,
) -> Claim:
    """Runs one claim's study; its files go to <out>/<name>/ (out: a fresh
    logs/lecture/<timestamp>/ by default). `fast` shrinks it to seconds (what the tests run);
    `options` are the study's own (see `options_of`, e.g. width and depth for init_variance).

    From a notebook: `result = run_claim("init_variance", fast=True)`, then `result.verdict`,
    `result.numbers`, `result.plots["std_by_layer"]`, `result.frames[...]`.
    """
    if name not in CLAIMS:
        raise ConfigError(f"unknown claim {name!r}; valid: {', '.join(CLAIMS)}, all")
    unknown = set(options) - set(options_of(name))
    if unknown:
        valid = ", ".join(options_of(name)) or "none"
        raise ConfigError(f"{name} has no option {', '.join(sorted(unknown))}; valid: {valid}")
    hints = typing.get_type_hints(CLAIMS[name])
    for key, value in options.items():
        check_option(key, value, hints.get(key, Any))
    root = Path(out) if out is not None else default_root()
    run = Run(name, root / name, fast=fast, seed=seed)
    with one_thread():
        return CLAIMS[name](run, **options)


def run_all(
    fast: bool = False,
    seed: int = 0,
    out: str | Path | None = None,
    progress: Callable[[Claim], None] | None = None,
) -> tuple[list[Claim], Path]:
    """Runs every claim into one run folder and writes its report.md; returns the claims and
    the report's path. `progress` is called with each claim as it is done."""
    root = Path(out) if out is not None else default_root()
    claims = []
    for name in CLAIMS:
        claims.append(run_claim(name, fast=fast, seed=seed, out=root))
        if progress is not None:
            progress(claims[-1])
    settings = f"seed {seed}, {'fast' if fast else 'full'} mode"
    return claims, write_report(root, claims, settings)
