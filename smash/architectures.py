"""Resolve the model class named in a config.json without importing anything the config names.

``config.architectures`` comes from untrusted files, so it is only looked up among the classes that
transformers' own auto mappings list for the config's model type; ``auto_map`` (remote code) is refused.
"""

from __future__ import annotations

from typing import Any

from smash.errors import ArtifactError


def _known_classes(model_type: str) -> set[str]:
    from transformers.models.auto import modeling_auto

    names: set[str] = set()
    for attr in dir(modeling_auto):
        if attr.startswith("MODEL_") and attr.endswith("_MAPPING_NAMES"):
            value = getattr(modeling_auto, attr).get(model_type)
            if isinstance(value, str):
                names.add(value)
            elif isinstance(value, tuple | list):
                names.update(v for v in value if isinstance(v, str))
    return names


def architecture_class(config: Any, *, location: str) -> type[Any]:
    import transformers

    if getattr(config, "auto_map", None):
        raise ArtifactError(
            location,
            "config.json asks for remote code (auto_map)",
            "Models that need remote code are not loaded.",
        )
    architectures = getattr(config, "architectures", None) or []
    model_type = getattr(config, "model_type", "")
    known = _known_classes(model_type)
    for name in architectures:
        if isinstance(name, str) and name in known:
            return getattr(transformers, name)
    raise ArtifactError(
        location,
        f"architectures {architectures!r} are not transformers classes for model_type {model_type!r}",
        "Only architectures that transformers ships are supported.",
    )
