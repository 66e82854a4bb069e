"""SmashConfig: which algorithms run, with which hyperparameters. Data, validated on construction.

The JSON form is ``{"format_version": 1, "algorithms": {name: {hyperparameter: value}}}``. It is read from
Hub repos, so it is untrusted input: names are looked up in the registry only (nothing named in it is ever
imported), unknown fields are errors, and every value goes through the algorithm's hyperparameter specs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from smash.errors import ConfigFormatError, GroupConflictError, UnknownAlgorithmError
from smash.registry import Registry

FORMAT_VERSION = 1
_TOP_LEVEL_KEYS = frozenset({"format_version", "algorithms"})


def _default_registry() -> Registry:
    from smash import registry  # the populated global registry (built-ins and plugins loaded)

    return registry


class SmashConfig(Mapping[str, Mapping[str, Any]]):
    """An immutable mapping algorithm name -> resolved hyperparameters (defaults filled in).

    >>> SmashConfig({"hqq": {"weight_bits": 4, "group_size": 64}, "torch_compile": {}})
    """

    def __init__(
        self,
        algorithms: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        registry: Registry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else _default_registry()
        if algorithms is None:
            algorithms = {}
        if not isinstance(algorithms, Mapping):
            raise ConfigFormatError(
                f"a SmashConfig is a mapping of algorithm name to hyperparameters, got "
                f"{type(algorithms).__name__}",
                value=algorithms,
            )
        resolved: dict[str, Mapping[str, Any]] = {}
        for name, params in algorithms.items():
            resolved[name] = MappingProxyType(self._resolve(name, params))
        self._algorithms = dict(sorted(resolved.items()))
        self._check_groups()

    def _resolve(self, name: object, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if not isinstance(name, str) or name not in self.registry:
            raise UnknownAlgorithmError(name, self.registry.names())
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ConfigFormatError(
                f"hyperparameters of {name!r} must be a mapping, got {type(params).__name__}", value=params
            )
        return self.registry.get(name).validate_params(params)

    def _check_groups(self) -> None:
        by_group: dict[str, list[str]] = {}
        for name in self._algorithms:
            cls = self.registry.get(name)
            by_group.setdefault(cls.group.value, []).append(name)
        for group, names in by_group.items():
            # Non-exclusive algorithms (``half``) compose with their group peers; two exclusive ones clash.
            exclusive = [n for n in names if self.registry.get(n).exclusive]
            if len(exclusive) > 1:
                raise GroupConflictError(group, exclusive)

    # --- Mapping ------------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        return self._algorithms[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._algorithms)

    def __len__(self) -> int:
        return len(self._algorithms)

    def __repr__(self) -> str:
        return f"SmashConfig({self.to_dict()['algorithms']!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SmashConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    # --- serialization ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "algorithms": {name: dict(params) for name, params in self._algorithms.items()},
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, *, registry: Registry | None = None) -> SmashConfig:
        if not isinstance(data, Mapping):
            raise ConfigFormatError(
                f"a serialized SmashConfig is a JSON object, got {type(data).__name__}", value=data
            )
        extra = sorted(str(k) for k in set(data) - _TOP_LEVEL_KEYS)
        if extra:
            raise ConfigFormatError(
                f"unexpected field(s) {', '.join(extra)} in SmashConfig; allowed: format_version, algorithms",
                value=extra,
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ConfigFormatError(
                f"SmashConfig format_version {version!r} is not supported; this smash reads version "
                f"{FORMAT_VERSION}. Upgrade smash, or re-create the config.",
                value=version,
            )
        return cls(data.get("algorithms", {}), registry=registry)

    @classmethod
    def from_json(cls, text: str | bytes, *, registry: Registry | None = None) -> SmashConfig:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ConfigFormatError(f"SmashConfig is not valid JSON: {e}") from e
        return cls.from_dict(data, registry=registry)
