"""The ``[evaluation]`` table of a recipe: keyword arguments of ``smash.evaluation.Settings``.

Checked by the evaluation module's own Settings (so a recipe cannot name a setting the evaluation does not
know, and a renamed setting fails at load, not inside a job), except ``device``, which always comes from the
recipe's own ``device``. The stored form is ``Settings.to_dict()``: defaults filled in, so a changed default
changes the recipe's content hash just as a changed hyperparameter default does.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pruna_hub.recipes._reader import TableReader


def check_evaluation_table(table: TableReader, *, device: str) -> Mapping[str, Any]:
    from smash.errors import EvaluationSettingsError
    from smash.evaluation.settings import Settings

    if "device" in table.table:
        raise table.error(
            "device", "is set by the recipe's top-level `device`", "Remove it from [evaluation]."
        )
    try:
        settings = Settings.from_dict({**table.table, "device": device})
    except EvaluationSettingsError as e:
        raise table.error(e.field, f"{e.value!r} is not valid: {e.allowed}") from e
    except TypeError as e:  # a value of a shape Settings does not check (e.g. a table where a number goes)
        raise table.error("", f"has a value of the wrong type ({e})") from e
    return MappingProxyType(_frozen(settings.to_dict()))


def _frozen(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in sorted(data.items())}
