"""Per-machine settings from a `.env` file in the launch folder (python-dotenv): API keys and
paths such as WANDB_API_KEY, MLFLOW_TRACKING_URI and NNLAB_DATA_DIR, kept out of the configs
and out of git (.env.example lists them). A variable already set in the environment wins over
the file. Imports no torch."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ENV_FILE = ".env"


def load_env_file(folder: str | Path | None = None) -> list[str]:
    """Sets the variables of `folder`/.env (default: the current folder) that the environment
    does not set yet; returns their names (none without a file). Nothing in the file is run:
    values are plain text (`${VAR}` expands to another variable)."""
    path = Path.cwd() if folder is None else Path(folder)
    path = path / ENV_FILE
    if not path.is_file():
        return []
    from dotenv import dotenv_values

    values = dotenv_values(path)
    names = [k for k, v in values.items() if v is not None and k not in os.environ]
    for name in names:
        os.environ[name] = values[name]
    return names
