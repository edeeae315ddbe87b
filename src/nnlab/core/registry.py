"""One registry mechanism for what a config picks by name: activations, initializers, losses
(the file names of configs/activation/, configs/init/, configs/loss/).

A config is a plain string (`tanh`) or a mapping `{name: tanh, **options}`. The registry maps
the name to an entry: a factory plus the names of the arguments the code passes in (a layer's
width, in_features/out_features, a gain, a class count). Every other parameter of the factory
is an option, so the options a config may set, their types and their defaults are read from
one place, the factory's signature. Adding a component is one factory and one entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nnlab.core.arguments import check_options
from nnlab.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A registered name: `factory(**options, **passed_in)` builds it."""

    name: str
    factory: Callable[..., Any]
    # The factory's arguments that the code supplies: not config options.
    passed_in: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        """The options a config may set, with their defaults (inspect.Parameter.empty where
        there is none)."""
        parameters = inspect.signature(self.factory).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {
            p.name: p.default
            for p in parameters
            if p.kind in kinds and p.name not in self.passed_in
        }

    def with_defaults(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """`options` completed with the factory's defaults for those a config leaves out."""
        unset = {k: v for k, v in self.defaults().items() if v is not inspect.Parameter.empty}
        return {**unset, **options}

    def build(self, options: Mapping[str, Any], **available: Any) -> Any:
        """factory(**options), plus the arguments of `available` (what the code can pass in)
        that this entry takes."""
        missing = [k for k in self.passed_in if k not in available]
        if missing:
            raise TypeError(f"{self.name} needs {', '.join(missing)} passed in")
        return self.factory(**options, **{k: available[k] for k in self.passed_in})


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Entries by name, for the config group `group`; a config that names none (None, {}) is
    `default`. `shared`: options every entry takes besides its factory's own, read by the
    registry's owner (init's `bias`): they are left out of the signature check."""

    def __init__(
        self, group: str, entries: Iterable[E], default: str, shared: tuple[str, ...] = ()
    ) -> None:
        self.group, self.default, self.shared = group, default, shared
        self._entries = {entry.name: entry for entry in entries}
        if default not in self._entries:
            raise ValueError(f"the {group} registry has no default entry {default!r}")

    def register(self, entry: E) -> E:
        """Adds `entry`: a user's own activation, initializer or loss, registered by a module of
        their package that the run imports (the `plugins` config key; docs/extend.md). A name
        that another entry has is refused; the same factory registered again (its module
        imported anew) replaces its entry."""
        old = self._entries.get(entry.name)
        if old is not None and _qualified(old.factory) != _qualified(entry.factory):
            raise ValueError(
                f"{self.group} {entry.name!r} is registered already; give yours another name"
            )
        self._entries[entry.name] = entry
        return entry

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> E:
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def parse(self, cfg: str | Mapping[str, Any] | None) -> tuple[E, dict[str, Any]]:
        """A config as (entry, options). ConfigError for a name that is not registered,
        listing those that are."""
        if cfg is None or isinstance(cfg, str):
            name, options = cfg or self.default, {}
        elif isinstance(cfg, Mapping):
            options = dict(cfg)
            if "name" not in options and len(options) == 1 and None in options.values():
                # An option file holding a plain string (`tanh`): Hydra loads it as {tanh: None}.
                name, options = next(iter(options)), {}
            else:
                name = options.pop("name", self.default)
        else:
            raise ConfigError(f"{self.group} must be a name or a mapping with a name, got {cfg!r}")
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(
                f"unknown {self.group} {name!r}; valid: {', '.join(self._entries)} (a "
                f"{self.group} of your own: register it in a module that plugins=[<module>] "
                "imports, see docs/extend.md)"
            )
        return self._entries[name], options

    def check(self, cfg: str | Mapping[str, Any] | None) -> tuple[E, dict[str, Any]]:
        """parse(cfg), with the options checked against the entry's factory: names and,
        where annotated, types (nnlab.core.arguments.check_options)."""
        entry, options = self.parse(cfg)
        own = {k: v for k, v in options.items() if k not in self.shared}
        if own and not entry.defaults():
            raise ConfigError(f"{self.group}={entry.name} takes no options, got {', '.join(own)}")
        check_options(own, entry.factory, self.group, entry.name, entry.passed_in)
        return entry, options

    def build(self, cfg: str | Mapping[str, Any] | None, **available: Any) -> Any:
        """The component a config names, built with its own options (the shared ones are the
        owner's) and what the code passes in (each entry takes those of `available` it
        declares)."""
        entry, options = self.parse(cfg)
        return entry.build({k: v for k, v in options.items() if k not in self.shared}, **available)


def _qualified(factory: Callable[..., Any]) -> str:
    """A factory's dotted name (a lambda's names its module and the enclosing scope)."""
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', '')}"
