"""The bottom layer: what every other part of nnlab may import (errors, small helpers, Hydra
glue, the registry mechanism, argument checks). It imports nothing else of nnlab, and no torch."""

from nnlab.core.errors import ConfigError, DataUnavailableError, Diverged, is_int

__all__ = ["ConfigError", "DataUnavailableError", "Diverged", "is_int"]
