"""A typed reader over one TOML table that turns every problem into a RecipeError naming file and field.

Recipe files are user input: each value is checked for type and range where it is read, and unknown keys
are errors that list what is allowed, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pruna_hub.errors import RecipeError

_MISSING: Any = object()


def _type_name(value: object) -> str:
    return type(value).__name__


class TableReader:
    """Reads the fields of one table; ``prefix`` is the dotted path of the table inside the file."""

    def __init__(self, path: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.path = path
        self.table = table
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str, hint: str = "Fix the recipe file.") -> RecipeError:
        return RecipeError(self.path, self.name(key) if key else self.prefix or "(file)", problem, hint)

    def check_keys(self, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        allowed = sorted(allowed)
        for key in self.table:
            if key not in allowed:
                raise self.error(str(key), "unknown field", f"Allowed fields here: {', '.join(allowed)}.")
        for key in required:
            if key not in self.table:
                raise self.error(key, "missing required field", "Add it to the recipe.")

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.table:
            return self.table[key]
        if default is _MISSING:
            raise self.error(key, "missing required field", "Add it to the recipe.")
        return default

    def integer(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None, default: Any = _MISSING
    ) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"{value!r} is a {_type_name(value)}, expected an integer")
        _check_range(self, key, value, minimum, maximum)
        return value

    def number(
        self, key: str, *, minimum: float | None = None, maximum: float | None = None, default: Any = _MISSING
    ) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"{value!r} is a {_type_name(value)}, expected a number")
        if not math.isfinite(value):
            raise self.error(key, f"{value!r} is not a finite number", "Write a plain number.")
        _check_range(self, key, value, minimum, maximum)
        return float(value)

    def boolean(self, key: str, *, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is not default and not isinstance(value, bool):
            raise self.error(key, f"{value!r} is a {_type_name(value)}, expected true or false")
        return value

    def string(
        self, key: str, *, pattern: str | None = None, choices: tuple[str, ...] = (), default: Any = _MISSING
    ) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"{value!r} is a {_type_name(value)}, expected a string")
        if choices and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.error(key, f"{value!r} does not match the pattern {pattern}")
        return value

    def string_list(self, key: str, *, pattern: str) -> tuple[str, ...]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"{value!r} is a {_type_name(value)}, expected a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not re.fullmatch(pattern, item):
                raise self.error(f"{key}[{i}]", f"{item!r} is not a string matching {pattern}")
        if len(set(value)) != len(value):
            raise self.error(key, "lists the same entry twice")
        return tuple(value)

    def int_list(self, key: str, *, minimum: int, maximum: int, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not value:
            raise self.error(key, f"{value!r} is not a non-empty list of integers")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.error(f"{key}[{i}]", f"{item!r} is a {_type_name(item)}, expected an integer")
            _check_range(self, f"{key}[{i}]", item, minimum, maximum)
        return tuple(value)

    def subtable(self, key: str, *, required: bool = True) -> TableReader:
        value = self.get(key, _MISSING if required else {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"is a {_type_name(value)}, expected a table ([{self.name(key)}])")
        return TableReader(self.path, value, self.name(key))


def _check_range(
    reader: TableReader, key: str, value: float, minimum: float | None, maximum: float | None
) -> None:
    if minimum is not None and value < minimum:
        raise reader.error(key, f"{value!r} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise reader.error(key, f"{value!r} is above the maximum {maximum}")
