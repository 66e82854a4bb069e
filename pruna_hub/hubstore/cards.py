"""What the Hub derives from a commit's files: card metadata, config summary, tags, safetensors sizes.

Everything here reads untrusted repo content, so each reader caps what it reads and returns ``None`` or
an empty value on anything malformed instead of failing the request (the Hub does the same).
"""

from __future__ import annotations

import datetime
import json
import struct
from typing import Any

import yaml

from pruna_hub.hubstore.storage import Commit, FileEntry, Storage

_MAX_TEXT = 1 << 20  # card and config.json are read only up to 1 MiB
_MAX_VALUES = 100_000
_MAX_INT_BITS = 10_000  # about 3,000 digits, under Python's 4,300-digit limit on int to str
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
    """The YAML header of a model card as JSON data; ``None`` when there is none or it is not a mapping
    the Hub would accept (the upload's validate-yaml refuses it, a listing leaves cardData out)."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        data = _plain(yaml.safe_load(text[3:end]), [0])
    except (yaml.YAMLError, RecursionError, _TooLarge):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("tags"), list | str | None):
        return None  # huggingface_hub's ModelCardData iterates ``tags``: a number there breaks the client
    return data


class _TooLarge(Exception):
    pass


def _plain(value: Any, seen: list[int]) -> Any:
    """YAML data as JSON data: dates and other scalars become strings, keys strings, ints JSON-sized.

    YAML aliases let a 1 KiB card expand into billions of values when serialised: past ``_MAX_VALUES``
    (counted in ``seen``) the card is refused.
    """
    seen[0] += 1
    if seen[0] > _MAX_VALUES:
        raise _TooLarge
    if isinstance(value, dict):
        return {str(k): _plain(v, seen) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, seen) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _MAX_INT_BITS else None  # json.dumps refuses longer ones
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def card_data(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    text = _text(storage, commit, "README.md")
    return parse_front_matter(text) if text is not None else None


def config_summary(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    text = _text(storage, commit, "config.json")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in _CONFIG_KEYS if k in data}


_MAX_HEADER = 100 * _MAX_TEXT
_MAX_COUNT = 2**63  # more elements than any tensor could hold: the header is not describing real tensors


def _header(storage: Storage, entry: FileEntry) -> Any:
    """The parsed JSON header of one safetensors file, or ``None`` when it cannot be read."""
    try:
        with storage.open_blob(entry) as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER:
                return None
            return json.loads(f.read(length))
    except (OSError, ValueError, struct.error, RecursionError):
        return None


def _elements(shape: Any) -> int | None:
    """The element count of a shape of non-negative integers, or ``None`` for anything else."""
    if not isinstance(shape, list):
        return None
    count = 1
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= _MAX_COUNT:
            return None
        count *= dim
        if count > _MAX_COUNT:
            return None
    return count


def _counts_by_dtype(header: Any) -> dict[str, int] | None:
    """Elements per dtype of one header; ``None`` unless every entry is ``{dtype: str, shape: [int]}``."""
    if not isinstance(header, dict):
        return None
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        elements = _elements(info.get("shape")) if isinstance(info, dict) else None
        if not isinstance(dtype, str) or elements is None:
            return None
        counts[dtype] = counts.get(dtype, 0) + elements
    return counts


def safetensors_summary(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    """Parameter counts by dtype read from the safetensors headers, as the Hub reports them.

    ``None`` when there are none or any header cannot be read: a count that left a shard out would be
    wrong, and the repo is listed without a summary rather than failing the listing.
    """
    parameters: dict[str, int] = {}
    for path, entry in sorted(commit.files.items()):
        if not path.endswith(".safetensors"):
            continue
        counts = _counts_by_dtype(_header(storage, entry))
        if counts is None:
            return None
        for dtype, elements in counts.items():
            parameters[dtype] = parameters.get(dtype, 0) + elements
    if not parameters:
        return None
    return {"parameters": parameters, "total": sum(parameters.values())}


def _tags(card: dict[str, Any], config: dict[str, Any] | None, commit: Commit, *extra: Any) -> list[str]:
    raw = card.get("tags")
    raw = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    tags: list[str] = [str(t) for t in raw if isinstance(t, str | int | float)]
    tags += [t for t in extra if isinstance(t, str)]
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
    return list(dict.fromkeys(tags))


def derived(storage: Storage, commit: Commit) -> dict[str, Any]:
    """cardData, config, library_name, pipeline_tag, tags and safetensors for one commit."""
    card = card_data(storage, commit) or {}
    config = config_summary(storage, commit)
    architectures = config.get("architectures") if config else None
    architectures = architectures if isinstance(architectures, list) else []
    library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
    library = library or ("transformers" if architectures else None)
    pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
    if pipeline is None and any(str(a).endswith("ForCausalLM") for a in architectures):
        pipeline = "text-generation"
    return {
        "cardData": card or None,
        "config": config,
        "library_name": library,
        "pipeline_tag": pipeline,
        "tags": _tags(card, config, commit, library, pipeline),
        "safetensors": safetensors_summary(storage, commit),
    }
