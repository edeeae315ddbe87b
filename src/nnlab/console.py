"""One clean console for a run: Lightning's duplicate handler, its advertisement and
known-harmless warnings removed; the composed config shown as a tree."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from nnlab.core.hydra import hydra_choices


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
    keep_log_file_on_rank_zero()


def keep_log_file_on_rank_zero() -> None:
    """Under torchrun or SLURM every process runs in the same run folder: only global rank 0
    writes the run's log file (the others still print). Processes Lightning starts itself log
    to files of their own (train_ddp_process_<n>.log) and keep them."""
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    if rank == "0":
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


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


@rank_zero_only  # DDP's other ranks run the same script
def print_config_tree(cfg: DictConfig, save_dir: str | Path | None = None) -> None:
    """Prints the composed config as a tree, one branch per config group labelled with the option
    picked (`optimizer: adam`), values resolved; saves the same text as `config_tree.txt` in
    `save_dir`. Hydra's .hydra/config.yaml stays the machine-readable copy."""
    choices = hydra_choices()
    tree = Tree("config", guide_style="dim")
    scalars = {k: v for k, v in cfg.items() if not isinstance(v, DictConfig)}
    groups = [k for k, v in cfg.items() if isinstance(v, DictConfig)]
    for key in groups:
        label = f"{key}: {choices[key]}" if key in choices else str(key)
        yaml = OmegaConf.to_yaml(cfg[key], resolve=True).rstrip() or "{}"
        tree.add(label, style="bold").add(Syntax(yaml, "yaml", theme="ansi_dark"))
    if scalars:
        yaml = OmegaConf.to_yaml(OmegaConf.create(scalars), resolve=True).rstrip()
        tree.add("run", style="bold").add(Syntax(yaml, "yaml", theme="ansi_dark"))
    Console().print(tree)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(save_dir) / "config_tree.txt", "w", encoding="utf-8") as f:
            Console(file=f, width=100, no_color=True, color_system=None).print(tree)
