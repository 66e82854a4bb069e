"""The algorithm registry: a strict name -> class table.

Built-in algorithms register through the same decorator as third-party ones; plugins are found through
the ``smash.algorithms`` entry-point group. A duplicate name is an error, a miss lists what exists, and a
plugin that fails to import is reported, never swallowed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import TypeVar

from smash.algorithms.base import Algorithm, Group, Hyperparameter
from smash.errors import (
    AlgorithmDefinitionError,
    DuplicateAlgorithmError,
    PluginLoadError,
    UnknownAlgorithmError,
)

ENTRY_POINT_GROUP = "smash.algorithms"

A = TypeVar("A", bound=type[Algorithm])


class Registry:
    """Holds algorithm classes by name. ``Registry()`` is empty; ``registry`` holds the built-ins."""

    def __init__(self) -> None:
        self._algorithms: dict[str, type[Algorithm]] = {}

    def register(self, cls: A) -> A:
        """Class decorator: validates the declarations and adds the class under its ``name``."""
        _check_definition(cls)
        existing = self._algorithms.get(cls.name)
        if existing is not None and existing is not cls:
            raise DuplicateAlgorithmError(cls.name, existing, cls)
        self._algorithms[cls.name] = cls
        return cls

    def get(self, name: str) -> type[Algorithm]:
        try:
            return self._algorithms[name]
        except (KeyError, TypeError):
            raise UnknownAlgorithmError(name, self._algorithms) from None

    def create(self, name: str) -> Algorithm:
        return self.get(name)()

    def names(self) -> list[str]:
        return sorted(self._algorithms)

    def in_group(self, group: Group) -> list[str]:
        return sorted(n for n, cls in self._algorithms.items() if cls.group is group)

    def __contains__(self, name: object) -> bool:
        return name in self._algorithms

    def __iter__(self) -> Iterator[type[Algorithm]]:
        return iter(self._algorithms[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._algorithms)


def _check_definition(cls: type[Algorithm]) -> None:
    where = f"{cls.__module__}.{cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise AlgorithmDefinitionError(f"{where}: `name` must be an identifier, got {name!r}")
    if not isinstance(getattr(cls, "group", None), Group):
        raise AlgorithmDefinitionError(f"{where}: `group` must be a smash Group, got {cls.group!r}")
    seen: set[str] = set()
    for hp in cls.hyperparameters:
        if not isinstance(hp, Hyperparameter) or hp.name in seen:
            raise AlgorithmDefinitionError(f"{where}: bad or repeated hyperparameter {hp!r}")
        seen.add(hp.name)
        hp.validate(name, hp.default)  # a default must satisfy its own spec
    for ref in cls.runs_before | cls.runs_after | cls.incompatible_with:
        if ref.startswith("group:") and ref[6:] not in {g.value for g in Group}:
            raise AlgorithmDefinitionError(f"{where}: constraint names unknown group {ref!r}")


def load_builtins() -> None:
    """Import every module of ``smash.algorithms``; each registers itself. Import errors propagate."""
    import smash.algorithms as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def load_plugins() -> None:
    """Import every ``smash.algorithms`` entry point; each registers itself with the decorator."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # reported with the entry point named, never swallowed
            raise PluginLoadError(f"{ep.name} = {ep.value}", e) from e


registry = Registry()
