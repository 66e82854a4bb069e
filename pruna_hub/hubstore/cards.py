"""What the Hub derives from a commit's files: card metadata, config summary, tags, safetensors sizes.

Everything here reads untrusted repo content, so each reader caps what it reads and returns ``None`` or
an empty value on anything malformed instead of failing the request (the Hub does the same).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import yaml

from pruna_hub.hubstore.storage import Commit, Storage

_MAX_TEXT = 1 << 20  # card and config.json are read only up to 1 MiB
_CONFIG_KEYS = ("architectures", "model_type", "quantization_config", "auto_map", "tokenizer_config")


def _text(storage: Storage, commit: Commit, path: str) -> str | None:
    entry = commit.files.get(path)
    if entry is None or entry.size > _MAX_TEXT:
        return None
    try:
        return storage.blob_path(entry.sha256).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def parse_front_matter(text: str) -> dict[str, Any] | None:
    """The YAML header of a model card; ``None`` when there is none or it is not a mapping."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def card_data(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    text = _text(storage, commit, "README.md")
    return parse_front_matter(text) if text is not None else None


def config_summary(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    text = _text(storage, commit, "config.json")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in _CONFIG_KEYS if k in data}


def safetensors_summary(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    """Parameter counts by dtype read from the safetensors headers, as the Hub reports them."""
    parameters: dict[str, int] = {}
    for path, entry in commit.files.items():
        if not path.endswith(".safetensors"):
            continue
        try:
            with storage.open_blob(entry) as f:
                (length,) = struct.unpack("<Q", f.read(8))
                if length > 100 * _MAX_TEXT:
                    continue
                header = json.loads(f.read(length))
        except (OSError, ValueError, struct.error):
            continue
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            parameters[str(info.get("dtype"))] = parameters.get(str(info.get("dtype")), 0) + count
    if not parameters:
        return None
    return {"parameters": parameters, "total": sum(parameters.values())}


def derived(storage: Storage, commit: Commit) -> dict[str, Any]:
    """cardData, config, library_name, pipeline_tag, tags and safetensors for one commit."""
    card = card_data(storage, commit) or {}
    config = config_summary(storage, commit)
    library = card.get("library_name") or ("transformers" if config and config.get("architectures") else None)
    pipeline = card.get("pipeline_tag")
    if (
        pipeline is None
        and config
        and any(str(a).endswith("ForCausalLM") for a in config.get("architectures", []))
    ):
        pipeline = "text-generation"
    tags: list[str] = [str(t) for t in card.get("tags", []) or [] if isinstance(t, str | int | float)]
    tags += [t for t in (library, pipeline) if isinstance(t, str)]
    if any(p.endswith(".safetensors") for p in commit.files):
        tags.append("safetensors")
    if config and isinstance(config.get("model_type"), str):
        tags.append(config["model_type"])
    if isinstance(card.get("license"), str):
        tags.append(f"license:{card['license']}")
    base = card.get("base_model")
    for model in [base] if isinstance(base, str) else base if isinstance(base, list) else []:
        tags.append(f"base_model:{model}")
        if isinstance(card.get("base_model_relation"), str):
            tags.append(f"base_model:{card['base_model_relation']}:{model}")
    return {
        "cardData": card or None,
        "config": config,
        "library_name": library,
        "pipeline_tag": pipeline,
        "tags": list(dict.fromkeys(tags)),
        "safetensors": safetensors_summary(storage, commit),
    }
