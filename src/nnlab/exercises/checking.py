"""How a student's function is checked: run it on cases (small inputs first, then larger shapes
and edge cases), compare each result with nnlab's own, and say what is wrong (an exception,
the type, the shape, the dtype, inf/NaN, the values: by how much, on which small input, with a
hint on the pattern of the error) without printing the right answer."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

# Set to 1 (the tests and the teacher's notebooks do) to make `check` raise on anything but a
# pass, so a notebook run stops at the first wrong solution.
STRICT_VARIABLE = "NNLAB_EXERCISES_STRICT"

Status = Literal["passed", "failed", "not implemented"]


class Wrong(Exception):
    """A result differs from nnlab's: the message says how, for the student."""


class ExerciseFailed(AssertionError):
    """Raised by `check` in strict mode when the function is not right (or not written)."""


@dataclass(frozen=True)
class CheckResult:
    """What `check` found; shown in a notebook as its message."""

    name: str
    status: Status
    message: str
    cases: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = {"passed": "✓", "failed": "✗", "not implemented": "…"}[self.status]
        return f"{mark} {self.name}: {self.message}"

    __repr__ = __str__


@dataclass(frozen=True)
class Case:
    """One call: the arguments, by parameter name in the exercise's order, and what makes the
    case special (shown when it fails: "large logits")."""

    args: dict[str, Any]
    note: str = ""
    # The starting value of an output that is an update of an input (perceptron_update's w):
    # a hint then speaks of the change, e.g. "your change of w is −1 × the right one".
    starts: dict[str, Any] = field(default_factory=dict)


def fmt(value: Any) -> str:
    """A short text of a value: small tensors in full (4 significant digits), large ones as
    their shape and dtype."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 12:
            if value.dtype.is_floating_point:
                numbers = value.double().tolist()
                return _round(numbers)
            return str(value.tolist())
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)


def _round(numbers: Any) -> str:
    if isinstance(numbers, list):
        return "[" + ", ".join(_round(n) for n in numbers) + "]"
    return f"{numbers:.4g}"


def describe(case: Case) -> str:
    """The case's arguments as `name = value` pairs, and its note."""
    text = ", ".join(f"{k} = {fmt(v)}" for k, v in case.args.items())
    return f"{text} ({case.note})" if case.note else text


def _clone(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def call(fn: Callable[..., Any], case: Case) -> Any:
    """fn on copies of the case's arguments (so an in-place edit cannot change the next
    comparison); an exception becomes a Wrong naming the input."""
    try:
        return fn(*(_clone(v) for v in case.args.values()))
    except NotImplementedError:
        raise
    except Exception as error:
        raise Wrong(
            f"raised {type(error).__name__}: {error}\n  on input {describe(case)}"
        ) from None


def as_tensor(got: Any, expected: torch.Tensor, what: str, case: Case) -> torch.Tensor:
    """`got` as a tensor comparable with `expected`, or Wrong for the wrong type, shape or
    dtype."""
    if not isinstance(got, torch.Tensor):
        if expected.dim() == 0 and isinstance(got, int | float) and not isinstance(got, bool):
            return torch.tensor(float(got), dtype=torch.float64)
        raise Wrong(
            f"{what} is a {type(got).__name__}, expected a torch.Tensor"
            f"{' of shape ' + str(tuple(expected.shape)) if expected.dim() else ''}\n"
            f"  on input {describe(case)}"
        )
    if got.shape != expected.shape:
        raise Wrong(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}\n"
            f"  on input {describe(case)}"
        )
    if expected.dtype.is_floating_point and got.dtype != expected.dtype:
        raise Wrong(
            f"{what} is {str(got.dtype).removeprefix('torch.')}, expected "
            f"{str(expected.dtype).removeprefix('torch.')} (the inputs' dtype)\n"
            f"  on input {describe(case)}"
        )
    return got.detach()


def hint_for(got: torch.Tensor, expected: torch.Tensor, subject: str = "yours") -> str:
    """A pattern in the error, when there is one: a constant factor, a constant offset, the
    right numbers in another order. Says what is off, never the right formula."""
    g, e = got.double().flatten(), expected.double().flatten()
    everywhere = " everywhere" if g.numel() > 1 else ""
    nonzero = e.abs() > 1e-9
    if nonzero.any() and (g[~nonzero].abs() < 1e-9).all():
        ratio = g[nonzero] / e[nonzero]
        c = ratio[0].item()
        if (ratio - c).abs().max() < 1e-4 * max(1.0, abs(c)):
            if abs(c + 1) < 1e-4:
                return f"{subject} has the wrong sign{everywhere}: −1 × the right one"
            if abs(c) < 1e-9:
                return f"{subject} is 0 where it should not be"
            return f"{subject} is {c:.4g} × the right {'one everywhere' if everywhere else 'value'}"
    diff = g - e
    if g.numel() > 1 and (diff - diff[0]).abs().max() < 1e-5:
        return f"{subject} is off by the same {diff[0].item():+.4g} everywhere"
    if g.numel() > 1 and torch.allclose(1 - g, e, atol=1e-6):
        return f"{subject} is 1 − the right one everywhere"
    sorted_got, sorted_expected = got.double().sort(-1).values, expected.double().sort(-1).values
    if got.dim() >= 1 and got.shape[-1] > 1 and torch.allclose(sorted_got, sorted_expected):
        return f"{subject} holds the right numbers in another order"
    return ""


def compare(got: Any, expected: Any, what: str, case: Case, rtol: float, atol: float) -> None:
    """Wrong unless `got` matches nnlab's `expected` (a tensor, a number, or a tuple of
    them named by `what`)."""
    if isinstance(expected, tuple):
        names = what.split(", ")
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            raise Wrong(
                f"returned {fmt(got) if not isinstance(got, tuple | list) else len(got)}"
                f"{' values' if isinstance(got, tuple | list) else ''}, expected {len(expected)}"
                f" values ({what})\n  on input {describe(case)}"
            )
        for g, e, name in zip(got, expected, names, strict=True):
            compare(g, e, name, case, rtol, atol)
        return
    expected = torch.as_tensor(expected)
    tensor = as_tensor(got, expected, what, case)
    if not expected.dtype.is_floating_point:
        if tensor.dtype.is_floating_point and not torch.equal(tensor, tensor.round()):
            raise Wrong(
                f"{what} holds fractions, expected whole numbers\n  on input {describe(case)}"
            )
        if not torch.equal(tensor.long(), expected.long()):
            if expected.dim():
                bad = tuple((tensor.long() != expected.long()).nonzero()[0].tolist())
                where = f" at index {bad[0] if len(bad) == 1 else bad}"
            else:
                where = f", off by {int(tensor.long() - expected.long()):+d}"
            raise Wrong(
                f"{what} is wrong{where}: yours is {fmt(tensor)}\n  on input {describe(case)}"
            )
        return
    finite = torch.isfinite(expected)
    broken = finite & ~torch.isfinite(tensor)
    if broken.any():
        bad = tensor[broken].flatten()[0].item()
        raise Wrong(
            f"{what} holds {bad} where the right values are finite\n  on input {describe(case)}"
        )
    error = (tensor.double() - expected.double()).abs()
    tolerance = atol + rtol * expected.double().abs()
    if (error > tolerance).any():
        if what in case.starts:
            start = torch.as_tensor(case.starts[what], dtype=expected.dtype)
            hint = hint_for(tensor - start, expected - start, f"your change of {what}")
        else:
            hint = hint_for(tensor, expected)
        raise Wrong(
            f"{what} is off by up to {error.max().item():.4g}"
            f"{': ' + hint if hint else ''}\n  yours: {fmt(tensor)}\n  on input {describe(case)}"
        )


def run_cases(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    what: str,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> int:
    """Checks fn against nnlab's reference on every case, in order; returns how many passed
    (all of them) or raises Wrong for the first that did not."""
    for case in cases:
        expected = reference(*case.args.values())
        compare(call(fn, case), expected, what, case, rtol, atol)
    return len(cases)


def strict() -> bool:
    """Whether `check` raises (NNLAB_EXERCISES_STRICT=1)."""
    return os.environ.get(STRICT_VARIABLE) == "1"
