"""The ``[smash]`` table of a recipe, checked by the engine itself: registry, hyperparameters, devices, order.

The engine's typed errors are translated into RecipeErrors that name the recipe file and the dotted field
(``smash.hqq.weight_bits``), chaining the original error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pruna_hub.errors import RecipeError
from pruna_hub.recipes._reader import TableReader


def check_smash_table(
    table: TableReader, *, device: str
) -> tuple[Mapping[str, Mapping[str, Any]], tuple[str, ...]]:
    """Resolved hyperparameters (defaults filled in) and the planned order, or a RecipeError."""
    from smash import SmashConfig, determine_algorithm_order, registry
    from smash.errors import HyperparameterError, SmashConfigError, UnknownAlgorithmError

    if not table.table:
        raise table.error("", "names no algorithm", "Add at least one [smash.<algorithm>] table.")
    for name, params in table.table.items():
        if not isinstance(params, Mapping):
            raise table.error(str(name), f"is a {type(params).__name__}, expected a table of hyperparameters")
    try:
        config = SmashConfig(dict(table.table))
        order = determine_algorithm_order(config)
    except UnknownAlgorithmError as e:
        raise table.error(
            str(e.name),
            f"algorithm {e.name!r} is not registered (registered: {', '.join(e.known) or 'none'})",
            "Install the plugin that provides it, or use a registered algorithm.",
        ) from e
    except HyperparameterError as e:
        raise table.error(f"{e.algorithm}.{e.field}", f"{e.value!r} is not valid: {e.allowed}") from e
    except SmashConfigError as e:
        raise RecipeError(table.path, table.prefix, str(e), "Change the algorithms the recipe names.") from e
    for name in order:
        devices = registry.get(name).devices
        if device not in devices:
            raise table.error(
                name,
                f"algorithm {name!r} does not run on {device!r} (it runs on {', '.join(sorted(devices))})",
                "Remove it, or target a device it supports.",
            )
    resolved = {name: MappingProxyType(dict(config[name])) for name in config}
    return MappingProxyType(resolved), tuple(order)
