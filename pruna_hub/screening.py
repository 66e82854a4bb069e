"""Which discovered models the service smashes, and the recorded reason for every one it does not.

Pure functions over what the Hub says about a model (``huggingface_hub.ModelInfo`` with ``config``,
``siblings``, ``card_data``, ``tags``, ``safetensors``): nothing here downloads weights or runs remote code.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Files that mean "this repo ships its own modeling code": never executed, so the model is skipped.
_REMOTE_CODE_FILE = re.compile(r"^(modeling|configuration|tokenization)_.*\.py$")
_QUANTIZED_TAGS = frozenset(
    {"gguf", "gptq", "awq", "exl2", "bitsandbytes", "4-bit", "8-bit", "hqq", "quanto", "pruna-ai", "smashed"}
)
# A fine-tune is a new model in its own right and is smashed; these relations are copies of another.
_DERIVED_RELATIONS = frozenset({"quantized", "merge", "adapter"})


class SkipReason(enum.StrEnum):
    NO_RECIPE = "no_recipe"
    GATED = "gated"
    PRIVATE = "private"
    REMOTE_CODE = "remote_code"
    TOO_LARGE = "too_large"
    NO_SAFETENSORS = "no_safetensors"
    DERIVED = "derived"
    NO_CONFIG = "no_config"
    PREQUANTIZED = "prequantized"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Skip:
    reason: SkipReason
    detail: str


def _filenames(info: Any) -> list[str]:
    return [s.rfilename for s in (getattr(info, "siblings", None) or [])]


def _card(info: Any) -> Mapping[str, Any]:
    card = getattr(info, "card_data", None)
    if card is None:
        return {}
    return card.to_dict() if hasattr(card, "to_dict") else dict(card)


def remote_code_reason(info: Any) -> str | None:
    config = getattr(info, "config", None) or {}
    if config.get("auto_map"):
        return "config.json has auto_map (custom modeling code)"
    custom = sorted(f for f in _filenames(info) if _REMOTE_CODE_FILE.match(f.rsplit("/", 1)[-1]))
    if custom:
        return f"the repo ships modeling code ({', '.join(custom[:3])})"
    return None


def derived_reason(info: Any) -> str | None:
    """Why the repo is a copy of another model: its card declares the base it derives from, as a
    quantization, merge or adapter (or tags itself quantized). An original release that ships quantized
    weights of its own declares no base: that is ``prequantized_reason``, not this."""
    card = _card(info)
    base = card.get("base_model")
    if not (isinstance(base, str) and base) and not (isinstance(base, list) and base):
        return None
    relation = card.get("base_model_relation")
    if isinstance(relation, str) and relation in _DERIVED_RELATIONS:  # card data is untrusted
        return f"the card derives it from {base} (base_model_relation: {relation})"
    tags = {str(t).lower() for t in (getattr(info, "tags", None) or [])}
    quantized = sorted(tags & _QUANTIZED_TAGS)
    if quantized:
        return f"the card derives it from {base} and tags it quantized ({', '.join(quantized)})"
    return None


def prequantized_reason(info: Any) -> str | None:
    """Why the weights cannot be smashed as they are: they ship quantized (``quantization_config``)."""
    config = getattr(info, "config", None) or {}
    quantization = config.get("quantization_config")
    if not quantization:
        return None
    method = quantization.get("quant_method") if isinstance(quantization, Mapping) else None
    shown = f" ({method})" if isinstance(method, str) else ""
    return f"it ships quantized weights{shown}; the recipes start from full-precision weights"


def parameter_count(info: Any) -> int | None:
    safetensors = getattr(info, "safetensors", None)
    total = getattr(safetensors, "total", None)
    return int(total) if isinstance(total, int) else None


def screen(
    info: Any,
    *,
    readable: bool,
    has_recipe: bool,
    max_parameters: int | None,
    no_recipe_detail: str = "no recipe matches",
) -> Skip | None:
    """None when the model should be smashed, otherwise why not. Order: cheapest, most certain first."""
    if getattr(info, "gated", False) and not readable:
        return Skip(SkipReason.GATED, f"gated ({info.gated}) and not readable with the configured token")
    if getattr(info, "private", False) and not readable:
        return Skip(SkipReason.PRIVATE, "private and not readable with the configured token")
    if not getattr(info, "config", None):
        return Skip(SkipReason.NO_CONFIG, "the repo has no transformers config.json")
    reason = remote_code_reason(info)
    if reason:
        return Skip(SkipReason.REMOTE_CODE, reason)
    reason = derived_reason(info)
    if reason:
        return Skip(SkipReason.DERIVED, reason)
    reason = prequantized_reason(info)
    if reason:
        return Skip(SkipReason.PREQUANTIZED, reason)
    if not any(f.endswith(".safetensors") for f in _filenames(info)):
        return Skip(SkipReason.NO_SAFETENSORS, "no .safetensors weights (pickle weights are never loaded)")
    count = parameter_count(info)
    if max_parameters is not None and count is not None and count > max_parameters:
        return Skip(SkipReason.TOO_LARGE, f"{count:,} parameters > budget {max_parameters:,}")
    if not has_recipe:
        return Skip(SkipReason.NO_RECIPE, no_recipe_detail)
    return None


def architectures(info: Any) -> list[str]:
    config = getattr(info, "config", None) or {}
    value: Iterable[Any] = config.get("architectures") or []
    return [str(a) for a in value]
