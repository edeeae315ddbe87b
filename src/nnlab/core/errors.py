"""The error a user's mistake raises, and the int check that messages about it rely on."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A composed config asks for something that cannot work; the entry points print its
    message as one `error: …` line."""


class DataUnavailableError(RuntimeError):
    """Files a data set needs are not on disk and could not be downloaded; the entry points
    print its message (the files, where to put them, the URLs tried) as one `error: …` line."""


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Diverged(RuntimeError):
    """Training met a non-finite loss or parameter and stopped. Raised after results.json has
    recorded `status: diverged`; its message is the one line the entry points print."""
