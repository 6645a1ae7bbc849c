"""Name -> implementation tables (backends, attention kernels) that import lazily.

A table maps a name to ``"package.module:Class"`` (or to a class registered at run time),
so that the config can list and check the names without importing torch, and a
runtime's module is imported only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Dict, Tuple, Type, Union

from person_search.core.errors import ConfigError


class Registry:
    """Names of one kind of plug-in and where each lives.

    Args:
        what: the config key the names are chosen by, for error messages (e.g. "encoder.backend").
        entries: name -> ``"module:Class"``.
    """

    def __init__(self, what: str, entries: Dict[str, str]):
        self.what = what
        self._entries: Dict[str, Union[str, Type]] = dict(entries)

    def register(self, name: str, target: Union[str, Type]) -> None:
        """Add (or replace) ``name``; ``target`` is a class or a ``"module:Class"`` string."""
        if not name:
            raise ValueError(f"{self.what}: empty name")
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in registered at run time, e.g. by a test)."""
        self._entries.pop(name, None)

    def names(self) -> Tuple[str, ...]:
        """Return the registered names in registration order."""
        return tuple(self._entries)

    def check(self, name: str) -> None:
        """Raise ConfigError (one line, naming the choices) when ``name`` is not registered."""
        if name not in self._entries:
            raise ConfigError(f"{self.what} must be one of {', '.join(self._entries)}, not {name!r}")

    def get(self, name: str) -> Type:
        """Return the class registered as ``name`` (imported on first use)."""
        self.check(name)
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target
