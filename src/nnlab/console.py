"""One clean console for a run: Lightning's duplicate handler, its advertisement and
known-harmless warnings removed."""

from __future__ import annotations

import logging
import warnings


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
