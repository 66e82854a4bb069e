"""What a recipe matches on: a model's family and properties, read from its config.json as data.

Recipes name model types (families) and, where it matters for the algorithms, properties of the config:
the kinds of attention layer (``full``, ``sliding``, or ``hybrid`` when both are present) and whether the
model routes through mixture-of-experts blocks. Exact class names are optional: a new checkpoint of a
known family matches without anyone listing its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ATTENTION_KINDS = ("full", "sliding", "hybrid")
# Families whose configs interleave sliding and full layers even when config.json lists no layer_types
# (transformers fills them in from the family's default pattern).
_HYBRID_BY_DEFAULT = frozenset({"gemma2", "gemma3", "gemma3_text", "cohere2", "gpt_oss"})
_EXPERT_COUNTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


@dataclass(frozen=True)
class ModelProfile:
    architectures: tuple[str, ...]
    model_type: str | None
    attention: str
    moe: bool

    def describe(self) -> str:
        moe = ", mixture of experts" if self.moe else ""
        return (
            f"architectures {list(self.architectures)} / model_type {self.model_type!r} "
            f"({self.attention} attention{moe})"
        )


def profile_of(model_config: Any) -> ModelProfile:
    """The profile of a config.json mapping or a transformers config; malformed values are ignored."""
    data = _as_mapping(model_config)
    architectures = data.get("architectures")
    model_type = data.get("model_type")
    return ModelProfile(
        architectures=tuple(a for a in architectures if isinstance(a, str))
        if isinstance(architectures, list | tuple)
        else (),
        model_type=model_type if isinstance(model_type, str) else None,
        attention=_attention(data, model_type),
        moe=any(_int(data.get(key)) > 1 for key in _EXPERT_COUNTS),
    )


def _as_mapping(model_config: Any) -> Mapping[str, Any]:
    if isinstance(model_config, Mapping):
        return model_config
    to_dict = getattr(model_config, "to_dict", None)
    data = to_dict() if callable(to_dict) else {}
    return data if isinstance(data, Mapping) else {}


def _attention(data: Mapping[str, Any], model_type: Any) -> str:
    layer_types = data.get("layer_types")
    if isinstance(layer_types, list | tuple) and layer_types:
        sliding = any(isinstance(t, str) and "sliding" in t for t in layer_types)
        full = any(isinstance(t, str) and "sliding" not in t for t in layer_types)
        return "hybrid" if sliding and full else "sliding" if sliding else "full"
    if model_type in _HYBRID_BY_DEFAULT:
        return "hybrid"
    window = data.get("sliding_window")
    if _int(window) > 0 and data.get("use_sliding_window", True) is not False:
        return "sliding"
    return "full"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
