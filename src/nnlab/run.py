"""Pieces train.py and eval.py share: building the Trainer's parts from configs, seeding, and
writing results where a sweep report can find them."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table


def setup_console() -> None:
    """One clean console: `import lightning` gives its logger a handler of its own, but under
    Hydra the root logger already prints (and writes the run's log file), so every line would
    show twice; known-harmless warnings are silenced, and Lightning's advertisement for its
    cloud logger (printed by every Trainer) is left out."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, NoAdvertisement) for f in rank_zero.filters):
        rank_zero.addFilter(NoAdvertisement())
    silence_known_warnings()


class NoAdvertisement(logging.Filter):
    """Drops Lightning's "💡 Tip: … try installing litlogger" line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def silence_known_warnings() -> None:
    """Warnings that say nothing about the user's run, printed once per batch otherwise."""
    # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; harmless.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # In-memory loaders need no worker processes: the hint is for DataLoaders.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # nnlab logs per epoch, never per step, so an epoch shorter than log_every_n_steps loses
    # nothing (Lightning warns on every small data set).
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")


def seed_everything(seed: int | None) -> None:
    """Seeds python, numpy and torch (and workers); None leaves them unseeded. 0 is a seed."""
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiates every entry of a group such as callbacks or logger (a dict of configs)."""
    if not cfg:
        return []
    return [instantiate(c, _convert_="all") for c in cfg.values() if c and "_target_" in c]


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Logged metrics as plain floats, sorted by name."""
    out = {}
    for k, v in sorted(metrics.items()):
        value = v.item() if isinstance(v, torch.Tensor) else v
        if isinstance(value, int | float):
            out[k] = float(value)
    return out


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@rank_zero_only
def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """Writes results.json atomically: a reader never sees a half-written file."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "results.json"
    fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=".results.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(_finite(results), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


@rank_zero_only
def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """Metrics as a two-column table under `title` (kept on one line)."""
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


def hydra_choices() -> dict[str, str]:
    """The option picked in each config group (data=digits, model=mlp, ...), if under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
    except ValueError:
        return {}
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}
