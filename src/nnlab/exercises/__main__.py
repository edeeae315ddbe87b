"""python -m nnlab.exercises [list]: the exercises, by notebook.
python -m nnlab.exercises teacher [--notebooks DIR] [--out DIR]: the teacher's notebooks, each
exercise's stub replaced by its solution from DIR/solutions/<notebook>.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnlab.exercises.catalogue import EXERCISES
from nnlab.exercises.teacher import TeacherError, write_teacher_notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnlab.exercises", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="the exercises, by notebook (the default)")
    teacher = commands.add_parser("teacher", help="write the teacher's notebooks")
    teacher.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    teacher.add_argument("--out", type=Path, default=Path("logs/teacher"))
    args = parser.parse_args(argv)
    if args.command == "teacher":
        notebooks = sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
        if not notebooks:
            print(f"error: no notebooks NN_*.ipynb in {args.notebooks}", file=sys.stderr)
            return 1
        try:
            written = write_teacher_notebooks(notebooks, args.notebooks / "solutions", args.out)
        except TeacherError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        for path in written:
            print(path)
        return 0
    notebook = None
    for name, exercise in EXERCISES.items():
        if exercise.notebook != notebook:
            notebook = exercise.notebook
            print(f"{notebook}.ipynb")
        print(f"  {name:20} {exercise.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
