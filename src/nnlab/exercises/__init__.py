"""Exercises that check themselves: in each notebook a student writes a small function (the
perceptron's update, Xavier's std, a stable log-softmax, one SGD step, ...) and runs

    from nnlab.exercises import check
    check("perceptron_update", perceptron_update)

which runs it on several inputs (small ones first, other shapes, edge cases such as large
logits), compares each result with nnlab's own, and says what is wrong (an error, the shape,
the dtype, inf/NaN, by how much the values are off and on which input) without giving the
answer away. An unwritten stub (`raise NotImplementedError`) is reported as not implemented
yet. `EXERCISES` lists them all; `python -m nnlab.exercises` prints the list and writes the
teacher's notebooks (the solutions filled in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnlab.exercises.catalogue import EXERCISES, Exercise
from nnlab.exercises.checking import STRICT_VARIABLE, CheckResult, ExerciseFailed, Wrong, strict

__all__ = ["EXERCISES", "STRICT_VARIABLE", "CheckResult", "Exercise", "ExerciseFailed", "check"]


def check(name: str, fn: Callable[..., Any]) -> CheckResult:
    """Checks the student's `fn` for the exercise `name`; the result shows as one message.

    It never raises for a wrong or unwritten function, so a notebook runs on (set
    NNLAB_EXERCISES_STRICT=1 to raise ExerciseFailed instead); an unknown name is a ValueError
    naming the valid ones."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; valid: {', '.join(EXERCISES)}")
    exercise = EXERCISES[name]
    if not callable(fn):
        result = CheckResult(name, "failed", f"expects your function, got {type(fn).__name__}")
    else:
        try:
            count = exercise.run(fn)
        except NotImplementedError:
            result = CheckResult(
                name,
                "not implemented",
                "not implemented yet: write the function in the cell above (in place of "
                "`raise NotImplementedError`), run that cell, then this one again.",
            )
        except Wrong as wrong:
            result = CheckResult(name, "failed", str(wrong))
        else:
            result = CheckResult(name, "passed", f"right on all {count} inputs.", count)
    if strict() and not result.passed:
        raise ExerciseFailed(str(result))
    return result
