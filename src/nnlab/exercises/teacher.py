"""The teacher's notebooks: a student notebook with each exercise's stub cell (the cell that
defines the exercise's function and raises NotImplementedError) replaced by its solution, read
from a solutions file beside the notebooks (notebooks/solutions/<notebook>.py).

Both files are data: the notebook is read as JSON and the solutions file is parsed (ast), never
imported or run."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nnlab.exercises.catalogue import EXERCISES


class TeacherError(ValueError):
    """A notebook or solutions file that cannot make a teacher's notebook; the message says
    which and why."""


def cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_stub(cell: dict[str, Any], name: str) -> bool:
    """Whether `cell` is the student's stub for the exercise `name`."""
    source = cell_source(cell)
    return (
        cell.get("cell_type") == "code"
        and f"def {name}(" in source
        and "raise NotImplementedError" in source
    )


def solutions_of(path: Path) -> dict[str, str]:
    """Each function of a solutions file as the source of a notebook cell: the file's imports,
    then the function."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as error:
        raise TeacherError(f"{path}: not a readable Python file ({error})") from None
    imports = [
        ast.get_source_segment(text, node)
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    header = "\n".join(segment for segment in imports if segment)
    return {
        node.name: (header + "\n\n\n" if header else "") + ast.get_source_segment(text, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def teacher_notebook(notebook: dict[str, Any], solutions: dict[str, str], stem: str) -> dict:
    """A copy of `notebook` (its JSON) with the stub of every exercise of notebook `stem`
    replaced by its solution; TeacherError for an exercise without its stub or solution."""
    names = [name for name, exercise in EXERCISES.items() if exercise.notebook == stem]
    cells = [dict(cell) for cell in notebook.get("cells", [])]
    for name in names:
        stubs = [i for i, cell in enumerate(cells) if is_stub(cell, name)]
        if len(stubs) != 1:
            raise TeacherError(f"{stem}: expected one stub cell for {name}, found {len(stubs)}")
        if name not in solutions:
            raise TeacherError(f"{stem}: the solutions file has no function {name}")
        cells[stubs[0]]["source"] = solutions[name]
    return {**notebook, "cells": cells}


def write_teacher_notebooks(
    notebooks: Iterable[Path], solutions_dir: Path, out: Path
) -> list[Path]:
    """Writes the teacher's version of each notebook into `out` (created), from
    `solutions_dir`/<stem>.py; refuses, before writing anything, a notebook without its
    solutions file and an `out` that already holds a notebook of the same name."""
    plans = []
    for path in notebooks:
        solutions = solutions_dir / f"{path.stem}.py"
        if not solutions.is_file():
            raise TeacherError(f"{path.name}: no solutions file {solutions}")
        target = out / path.name
        if target.exists():
            raise TeacherError(f"{target} exists; pick an empty --out folder (nothing written)")
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TeacherError(f"{path}: not a readable notebook ({error})") from None
        plans.append((target, teacher_notebook(notebook, solutions_of(solutions), path.stem)))
    out.mkdir(parents=True, exist_ok=True)
    for target, notebook in plans:
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        target.write_text(text, encoding="utf-8")
    return [target for target, _ in plans]
