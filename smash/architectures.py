"""Resolve the model class named in a config.json without importing anything the config names, and load
a Hub-style folder as data only.

``config.architectures`` comes from untrusted files, so it is only looked up among the classes that
transformers' own auto mappings list for the config's model type; ``auto_map`` (remote code) is refused.
Weights are read from safetensors only (``use_safetensors=True``: a ``pytorch_model.bin`` beside them is
never unpickled) and tokenizers never run remote code.
"""

from __future__ import annotations

from pathlib import Path
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


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def load_pretrained(path: Path, *, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer or None) from a Hub-style folder: transformers' own classes, safetensors only."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model_cls = architecture_class(config, location=str(path))
    model = model_cls.from_pretrained(path, trust_remote_code=False, use_safetensors=True)
    return model.eval().to(device), load_tokenizer(path)


def load_tokenizer(path: Path) -> Any:
    """The folder's tokenizer, or None when it has none; never remote code."""
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
