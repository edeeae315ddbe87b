"""What the root entry points share: a user's mistake ends with one `error: …` line, not a
traceback. Importing this module does not import torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from nnlab.core import ConfigError, DataUnavailableError

T = TypeVar("T")


def run(main: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Calls main(cfg), turning mistakes a user can fix into a one-line exit."""
    try:
        return main(cfg)
    # A user's mistake, or data that cannot be had offline: the message, not a traceback.
    except (ConfigError, DataUnavailableError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    except MissingMandatoryValue as e:  # a `???` in a config that the command line did not set
        raise SystemExit(f"error: {e.full_key} must be set, e.g. {e.full_key}=...") from None
    except InstantiationException as e:  # Hydra wraps what a constructor raises
        if isinstance(e.__cause__, ConfigError):
            raise SystemExit(f"error: {e.__cause__}") from None
        raise
