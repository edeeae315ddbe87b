"""The classes a config or a checkpoint may name: networks (`model._target_`) and datamodules
(`data._target_`), each in a registry keyed by the class's dotted name (`<module>.<qualname>`,
exactly what its config's `_target_` says).

A checkpoint's `_target_` is only looked up here, never imported: a name that no registered
class has is refused. nnlab's own classes are registered by importing the fixed modules listed
below (code, not data); a user's own class by `@nnlab.register_network` or
`@nnlab.register_datamodule` in its module, which the run imports through the `plugins` config
key (or, in a config typed by the user, the `_target_` itself names it: see `lookup`).
Imports no torch."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from nnlab.core.arguments import check_options
from nnlab.core.errors import ConfigError

C = TypeVar("C", bound=type)

# Hydra's instantiation keys that a network or datamodule config may carry at its top; options
# are passed as keyword arguments, so any other `_name_` key is refused (see nnlab.tasks.loading).
TOP_KEYS = ("_target_", "_partial_")
# A dotted Python name (what a message may suggest as a module to import).
DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Where the registration API is documented (every refusal of an unregistered class names it).
DOCS = "docs/checkpoints.md"


def dotted_name(cls: type) -> str:
    """A class's registry name: `<module>.<qualname>`, the `_target_` a config gives it."""
    return f"{cls.__module__}.{cls.__qualname__}"


class ClassRegistry:
    """The classes of one kind ("network", "datamodule") that configs and checkpoints may name,
    by dotted name. `builtin`: nnlab's own modules whose import registers nnlab's classes
    (imported, once, before the first lookup); `decorator` names the registration API."""

    def __init__(self, kind: str, decorator: str, builtin: Iterable[str]) -> None:
        self.kind, self.decorator = kind, decorator
        self.builtin = tuple(builtin)
        self._classes: dict[str, type] = {}
        self._loaded = False

    def register(self, cls: C) -> C:
        """Registers `cls` under its dotted name (a class decorator: returns `cls`)."""
        if not isinstance(cls, type):
            raise TypeError(f"{self.decorator} decorates a class, got {cls!r}")
        self._classes[dotted_name(cls)] = cls
        return cls

    def _load_builtin(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.builtin:
                importlib.import_module(module)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load_builtin()
        return sorted(self._classes)

    def get(self, name: Any) -> type | None:
        """The class registered as `name`, or None. Never imports anything but nnlab's own
        modules (`builtin`)."""
        self._load_builtin()
        return self._classes.get(name) if isinstance(name, str) else None

    def lookup(self, name: Any, key: str, source: str | None = None) -> type:
        """The class registered as `name` (the value at config key `key`); ConfigError naming
        the key and how to register a class otherwise. Imports nothing but nnlab's own
        modules. `source`: where the config comes from (`ckpt_path=…`), for the message."""
        cls = self.get(name)
        if cls is not None:
            return cls
        where = f"{source}: " if source else ""
        dotted = isinstance(name, str) and DOTTED.match(name) and "." in name
        module = name.rpartition(".")[0] if dotted else "<module>"
        raise ConfigError(
            f"{where}{key}={name!r} is not a registered {self.kind}: only registered classes "
            f"are built ({', '.join(self.names())}); to add your own, decorate it with "
            f"@{self.decorator} and import its module with plugins=[{module}] (see {DOCS})"
        )

    def typed(self, name: Any, key: str) -> type:
        """`lookup` for a `_target_` in a config the user typed (the command line, a config
        file: the user's own code, never a checkpoint): its module is imported first, which
        runs its registration decorator; the class must still be registered."""
        if self.get(name) is None and isinstance(name, str) and DOTTED.match(name):
            _import_module_of(name)
        return self.lookup(name, key)

    def build(
        self, config: Mapping[str, Any], key: str, source: str | None = None, **available: Any
    ) -> Any:
        """The object a network or datamodule config (plain data) describes: its registered
        class (`lookup`) called with the config's options, checked against the constructor's
        signature, plus those of `available` (sizes known from the data) that the constructor
        names. No Hydra: nothing in the config is instantiated but its top class."""
        cls = self.lookup(config.get("_target_"), f"{key}._target_", source)
        options = {k: v for k, v in config.items() if k not in TOP_KEYS}
        check_options(options, cls, key, dotted_name(cls), tuple(available))
        return cls(**options, **{k: v for k, v in available.items() if _takes(cls, k)})


def _takes(cls: type, name: str) -> bool:
    """Whether constructing `cls` accepts the keyword argument `name`."""
    parameters = inspect.signature(cls).parameters.values()
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def _import_module_of(name: str) -> None:
    """Imports the longest importable module prefix of a dotted name typed in a config (the
    user's own code), so that its registration decorators run; failures are left to the lookup
    that follows (it names the key)."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        try:
            importlib.import_module(".".join(parts[:end]))
            return
        except ImportError:
            continue
        except Exception as e:  # the user's module itself fails on import
            raise ConfigError(f"importing {'.'.join(parts[:end])} failed: {e}") from None


NETWORKS = ClassRegistry("network", "nnlab.register_network", builtin=("nnlab.nn.networks",))
DATAMODULES = ClassRegistry(
    "datamodule",
    "nnlab.register_datamodule",
    builtin=(
        "nnlab.data.toy",
        "nnlab.data.synthetic",
        "nnlab.data.vision",
        "nnlab.data.images",
        "nnlab.data.tables",
        "nnlab.data.housing",
    ),
)


def register_network(cls: C) -> C:
    """Class decorator: makes a network (an nn.Module taking `in_features`, `out_features`,
    and, if it names it, `input_shape`) one that configs and checkpoints may name by its
    dotted name."""
    return NETWORKS.register(cls)


def register_datamodule(cls: C) -> C:
    """Class decorator: makes a datamodule (an nnlab.data.base.ArrayDataModule) one that
    configs and checkpoints may name by its dotted name."""
    return DATAMODULES.register(cls)


def import_plugins(plugins: Any) -> None:
    """Imports the modules of the `plugins` config key (the user's own packages, whose
    decorators register their classes). It is read from the config, never from a checkpoint."""
    if not plugins:
        return
    if isinstance(plugins, str) or not isinstance(plugins, Iterable):
        raise ConfigError(f"plugins must be a list of module names, got {plugins!r}")
    for module in plugins:
        if not isinstance(module, str) or not module:
            raise ConfigError(f"plugins must be a list of module names, got {module!r}")
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise ConfigError(
                f"plugins: cannot import {module} ({e}); is its package installed or on PYTHONPATH?"
            ) from None
