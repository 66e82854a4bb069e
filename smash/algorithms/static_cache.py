"""static_cache: one pre-allocated KV cache sized for the longest request, so generation keeps its shapes.

The cache and the fixed-shape generation loop live in ``smash.runtime``; this algorithm only validates
the sizes and attaches the runtime, which ``PrunaModel.generate`` then uses. Nothing is saved: the cache
is re-allocated at load (REAPPLY). It runs before the compiler so that ``torch_compile`` finds the
runtime and warms its graphs up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.errors import HyperparameterError
from smash.registry import registry
from smash.runtime import RuntimeSpec, attach_runtime


@registry.register
class StaticCacheAlgorithm(Algorithm):
    name = "static_cache"
    group = Group.CACHER
    description = (
        "Pre-allocates a static KV cache of max_cache_len x batch_size and generates with fixed shapes "
        "(chunked prefill, one-token decode), so compiled graphs never recompile for a new length."
    )
    hyperparameters = (
        Hyperparameter(
            "max_cache_len",
            int,
            1024,
            "cache positions: prompt + generated tokens of the longest request",
            minimum=8,
            maximum=131072,
        ),
        Hyperparameter(
            "batch_size", int, 1, "rows the cache holds; smaller batches are padded", minimum=1, maximum=256
        ),
        Hyperparameter(
            "prefill_chunk",
            int,
            64,
            "prompt tokens per prefill call; every prompt length uses this one shape",
            minimum=1,
            maximum=8192,
        ),
    )
    runs_after = frozenset(
        {"group:quantizer", "group:pruner", "group:kernel", "group:factorizer", "group:distiller"}
    )
    runs_before = frozenset({"group:compiler"})
    save_mode = SaveMode.REAPPLY

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        chunk, length = params["prefill_chunk"], params["max_cache_len"]
        if length % chunk:
            raise HyperparameterError(
                cls.name,
                "max_cache_len",
                length,
                f"a multiple of prefill_chunk ({chunk}), so a padded prompt always fits the cache",
            )

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        config = getattr(model, "config", None)
        if config is None or not callable(getattr(model, "generate", None)):
            return "it needs a transformers generative model (with `config` and `generate`)"
        if getattr(config, "is_encoder_decoder", False):
            return "encoder-decoder models are not supported by the static-cache runtime"
        text = config.get_text_config(decoder=True)
        if not hasattr(text, "num_attention_heads") or not hasattr(text, "hidden_size"):
            return f"{type(config).__name__} does not describe attention heads"
        layer_types = set(getattr(text, "layer_types", None) or ["full_attention"])
        if layer_types != {"full_attention"}:
            return f"only full-attention layers are supported, the model has {sorted(layer_types)}"
        return None

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        spec = RuntimeSpec(params["max_cache_len"], params["batch_size"], params["prefill_chunk"])
        attach_runtime(model, spec)
        return model
