"""`python -m nnlab` (also the `nnlab` console script): the version, and the entry points as
sub-commands: `nnlab train model=mlp`, `nnlab eval ckpt_path=...`, `nnlab predict ...`; what
follows the sub-command goes to Hydra unchanged (`nnlab train --help`, `nnlab train -m ...`)."""

from __future__ import annotations

import os
import sys

from nnlab import __version__

COMMANDS = ("train", "eval", "predict")
COMMAND_ENV = "NNLAB_COMMAND"
USAGE = f"""usage: nnlab [--version] {{{",".join(COMMANDS)}}} [hydra arguments ...]

  train    fit and test a model            (same as python train.py, or nnlab-train)
  eval     test a checkpoint               (same as python eval.py, or nnlab-eval)
  predict  predict with a checkpoint       (same as python predict.py, or nnlab-predict)

Configs: see README.md; `nnlab train --help` lists every group and option."""


def main(argv: list[str] | None = None) -> int:
    """Dispatches to a sub-command; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"nnlab {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS and os.environ.get(COMMAND_ENV) in COMMANDS:
        # A DDP rank that Lightning started again with our arguments minus the sub-command.
        command, rest = os.environ[COMMAND_ENV], args
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from nnlab import entry

    os.environ[COMMAND_ENV] = command  # inherited by the processes of other DDP ranks
    sys.argv = [sys.argv[0], *rest]  # Hydra reads its arguments from sys.argv
    entry.APPS[command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
