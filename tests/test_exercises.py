"""The exercises that check themselves (nnlab.exercises): every check passes on the solution
(notebooks/solutions/), reports an unwritten stub as not implemented yet, and fails a typical
mistake with a message that says what is wrong; each notebook holds its exercises' stubs and
check lines, and its exercise section runs as the student gets it (polite "not implemented
yet") and as the teacher's version (every check passes, strict)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from nnlab.exercises import EXERCISES, STRICT_VARIABLE, ExerciseFailed, check
from nnlab.exercises.teacher import is_stub, solutions_of, teacher_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
STEMS = sorted(path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def solution(name: str) -> Callable[..., Any]:
    path = SOLUTIONS / f"{EXERCISES[name].notebook}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", path)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def stub(*args: Any) -> Any:
    raise NotImplementedError


def _huber_without_half(p: torch.Tensor, t: torch.Tensor, d: float) -> torch.Tensor:
    r = (p - t).abs()
    return torch.where(r <= d, r**2, d * (r - d / 2)).mean()


def _ascent(w: Any, b: Any, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[Any, Any]:
    residual = x @ w + b - y
    return w + lr * 2 * x.T @ residual / len(y), b + lr * 2 * residual.mean()


def _naive_bce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(z)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def _naive_softmax(z: torch.Tensor) -> torch.Tensor:
    return z.exp() / z.exp().sum(-1, keepdim=True)


def _wrong_sign_update(w: Any, b: Any, x: torch.Tensor, y: int) -> tuple[Any, Any]:
    error = y - float(x @ w + b >= 0)
    return w - error * x, b - error


# A typical mistake per exercise, and what its message must say (fragments, in order).
MISTAKES: dict[str, tuple[Callable[..., Any], list[str]]] = {
    "perceptron_predict": (
        lambda x, w, b: (x @ w + b > 0).long(),  # > instead of ≥
        ["wrong at index 0", "a score of 0"],
    ),
    "perceptron_update": (
        _wrong_sign_update,
        ["w is off by", "your change of w has the wrong sign", "a mistake on class 1"],
    ),
    "affine": (
        lambda x, w, b: x @ w + b,  # W, not Wᵀ
        ["raised RuntimeError", "on input X = "],
    ),
    "flatten_batch": (
        lambda images: images.permute(0, 2, 3, 1).reshape(len(images), -1),  # channels last
        ["the right numbers in another order", "3 colour channels"],
    ),
    "count_parameters": (
        lambda d, h, k: sum(a * c for a, c in zip([d, *h], [*h, k], strict=True)),  # no biases
        ["off by -1", "yours is 3"],
    ),
    "sigmoid": (
        lambda z: 1 / (1 + torch.exp(z)),  # σ(−z)
        ["off by up to", "yours is 1 − the right one everywhere", "on input z = [-2, -1, 0, 1, 2]"],
    ),
    "softmax": (_naive_softmax, ["holds nan where the right values are finite", "large logits"]),
    "least_squares": (
        lambda x, y: (torch.linalg.lstsq(x, y[:, None]).solution[:, 0], 0.0),  # no bias
        ["w is off by", "yours: ", "through the origin"],
    ),
    "bce_with_logits": (
        _naive_bce,
        ["holds inf where the right values are finite", "a large logit, the wrong class"],
    ),
    "log_softmax": (
        lambda z: torch.log(_naive_softmax(z)),
        ["holds nan", "large logits"],
    ),
    "cross_entropy": (
        lambda logits, t: -torch.log_softmax(logits, -1)[torch.arange(len(t)), t].sum(),  # sum
        ["yours is 5 × the right value", "5 samples"],
    ),
    "huber": (_huber_without_half, ["yours is 2 × the right value", "|r| ≤ delta"]),
    "leaky_relu": (
        lambda x, slope: torch.relu(x),  # the slope forgotten
        ["yours is 0 where it should not be", "negative inputs"],
    ),
    "tanh_derivative": (
        lambda x: 1 - torch.tanh(x),  # not squared
        ["off by up to", "on input x = [-1, 0.5, 2]"],
    ),
    "sigmoid_derivative": (
        lambda x: torch.sigmoid(x) * (1 - x),  # 1 − x for 1 − σ(x)
        ["yours is 2 × the right value", "at 0"],
    ),
    "xavier_std": (
        lambda fan_in, fan_out: math.sqrt(1 / fan_in),  # LeCun's
        ["yours is 0.7416 × the right value", "fan_in = 100, fan_out = 10"],
    ),
    "kaiming_std": (
        lambda fan_in: math.sqrt(1 / fan_in),  # no ReLU gain
        ["yours is 0.7071 × the right value", "fan_in = 256"],
    ),
    "sgd_step": (_ascent, ["your change of w has the wrong sign", "a batch of 4"]),
    "max_stable_lr": (
        lambda x: 2 / torch.linalg.eigvalsh(2 * x.T @ x / len(x)).max(),  # the bias forgotten
        ["the result is off by", "× the right value", "one feature"],
    ),
}


def test_every_exercise_has_a_typical_mistake_and_two_to_four_per_notebook() -> None:
    assert set(MISTAKES) == set(EXERCISES)
    counts = {stem: 0 for stem in STEMS}
    for exercise in EXERCISES.values():
        counts[exercise.notebook] += 1
    assert all(2 <= n <= 4 for n in counts.values()), counts


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_passes_the_solution(name: str) -> None:
    result = check(name, solution(name))
    assert result.passed, result
    assert str(result).startswith(f"✓ {name}: right on all")
    assert result.cases >= 3


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_reports_the_stub_as_not_implemented_without_raising(name: str) -> None:
    result = check(name, stub)
    assert not result.passed
    assert result.status == "not implemented"
    assert "not implemented yet" in str(result)


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_fails_a_typical_mistake_saying_what_is_wrong(name: str) -> None:
    mistake, fragments = MISTAKES[name]
    result = check(name, mistake)
    assert result.status == "failed", result
    message = str(result)
    position = 0
    for fragment in fragments:
        found = message.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in {message!r}"
        position = found
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("name", "right"),
    [
        ("xavier_std", f"{math.sqrt(2 / 110):.4g}"),
        ("kaiming_std", f"{math.sqrt(2 / 256):.4g}"),
        ("tanh_derivative", f"{1 - math.tanh(0.5) ** 2:.4g}"),
    ],
)
def test_the_message_shows_yours_not_the_right_value(name: str, right: str) -> None:
    """A failure prints the student's values, the input and how far off, not nnlab's value."""
    message = str(check(name, MISTAKES[name][0]))
    assert "yours: " in message
    assert right not in message, message


def test_wrong_shape_dtype_and_type_are_named() -> None:
    shape = check("affine", lambda x, w, b: (x @ w.T + b).T)
    assert "Y has shape (2, 2)" not in str(shape)  # square in the first case: values are off
    assert "Y is off by" in str(shape)
    wide = check("flatten_batch", lambda images: images.reshape(-1))
    assert "has shape (8,), expected (2, 4)" in str(wide)
    dtype = check("sigmoid", lambda z: torch.sigmoid(z).double())
    assert "is float64, expected float32 (the inputs' dtype)" in str(dtype)
    kind = check("softmax", lambda z: torch.softmax(z, -1).tolist())
    assert "is a list, expected a torch.Tensor of shape (1, 3)" in str(kind)
    pair = check("sgd_step", lambda w, b, x, y, lr: w)
    assert "expected 2 values (w, b)" in str(pair)
    assert check("xavier_std", 0.1).status == "failed"


def test_an_error_in_the_students_function_is_reported_with_its_input() -> None:
    def broken(z: torch.Tensor) -> torch.Tensor:
        raise KeyError("oops")

    message = str(check("sigmoid", broken))
    assert message.startswith("✗ sigmoid: raised KeyError: 'oops'")
    assert "on input z = [-2, -1, 0, 1, 2]" in message


def test_strict_mode_raises_and_unknown_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_VARIABLE, "1")
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        check("huber", stub)
    with pytest.raises(ExerciseFailed, match="× the right value"):
        check("huber", MISTAKES["huber"][0])
    assert check("huber", solution("huber")).passed
    with pytest.raises(ValueError, match="unknown exercise 'hubber'; valid: perceptron_predict"):
        check("hubber", stub)


def _notebook(stem: str) -> dict[str, Any]:
    return json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_has_stub_and_check_line_per_exercise_and_a_predict_then_run(stem: str) -> None:
    cells = _notebook(stem)["cells"]
    sources = [_source(cell) for cell in cells]
    names = [name for name, exercise in EXERCISES.items() if exercise.notebook == stem]
    for name in names:
        (i,) = [i for i, cell in enumerate(cells) if is_stub(cell, name)]
        assert sources[i + 1].strip() == f'check("{name}", {name})'
    predicts = [i for i, s in enumerate(sources) if s.startswith("**Predict, then run.**")]
    assert predicts and all(cells[i + 1]["cell_type"] == "code" for i in predicts)
    first_code = next(cell for cell in cells if cell["cell_type"] == "code")
    assert 'if "google.colab" in sys.modules:' in _source(first_code)
    assert set(solutions_of(SOLUTIONS / f"{stem}.py")) == set(names)


def _section(stem: str, teacher: bool) -> list[dict[str, Any]]:
    """The notebook's exercise section, as the student or as the teacher gets it."""
    nb = _notebook(stem)
    if teacher:
        nb = teacher_notebook(nb, solutions_of(SOLUTIONS / f"{stem}.py"), stem)
    return [cell for cell in nb["cells"] if "exercises" in cell["metadata"].get("tags", [])]


def _strict_cell(on: bool) -> dict[str, Any]:
    source = f'import os\n\nos.environ["{STRICT_VARIABLE}"] = "{int(on)}"'
    cell = {"cell_type": "code", "metadata": {}, "source": source, "outputs": []}
    return {**cell, "id": f"strict-{int(on)}", "execution_count": None}


@pytest.mark.parametrize("stem", STEMS)
def test_exercise_section_runs_as_the_student_and_as_the_teachers_version(
    stem: str, tmp_path: Path
) -> None:
    """One kernel: the notebook's first cell; the section as stored (every check says "not
    implemented yet", politely, and the run goes on); then the teacher's version, strict (a
    wrong solution stops the run), whose every check passes."""
    nb = _notebook(stem)
    first = next(cell for cell in nb["cells"] if cell["cell_type"] == "code")
    student, teacher = _section(stem, teacher=False), _section(stem, teacher=True)
    teacher = [{**cell, "id": f"teacher-{cell['id']}"} for cell in teacher]  # ids are unique
    cells = [first, _strict_cell(False), *student, _strict_cell(True), *teacher]
    run = nbformat.reads(json.dumps({**nb, "cells": cells}), as_version=4)
    NotebookClient(
        run, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    shown = []
    for cell in run.cells:
        if cell.cell_type == "code" and cell.source.startswith("check("):
            (output,) = cell.outputs
            shown.append(output["data"]["text/plain"])
    count = sum(exercise.notebook == stem for exercise in EXERCISES.values())
    assert len(shown) == 2 * count
    assert all("not implemented yet" in text for text in shown[:count]), shown
    assert all(text.startswith("✓") for text in shown[count:]), shown
    predictions = [c for c in run.cells[2 : 2 + len(student)] if "print(" in c.source]
    assert predictions and all(c.outputs for c in predictions)  # predict-then-run answers


def test_command_lists_exercises_and_writes_teacher_notebooks_once(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nnlab.exercises", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    listing = run()
    assert listing.returncode == 0
    assert all(f"  {name} " in listing.stdout for name in EXERCISES)
    out = tmp_path / "teacher"
    written = run("teacher", "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert sorted(p.stem for p in out.glob("*.ipynb")) == STEMS
    teacher = json.loads((out / "06_initialization.ipynb").read_text(encoding="utf-8"))
    assert not any(is_stub(cell, "xavier_std") for cell in teacher["cells"])
    assert any("def xavier_std(" in _source(cell) for cell in teacher["cells"])
    before = (out / "06_initialization.ipynb").read_bytes()
    again = run("teacher", "--out", str(out))
    assert again.returncode == 1
    assert again.stderr.startswith("error: ") and "exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert (out / "06_initialization.ipynb").read_bytes() == before
    missing = run("teacher", "--notebooks", str(tmp_path / "nowhere"), "--out", str(out))
    assert missing.returncode == 1 and missing.stderr.startswith("error: no notebooks")
