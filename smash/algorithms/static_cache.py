"""static_cache: one pre-allocated KV cache sized for the longest request, so generation keeps its shapes.

The cache and the fixed-shape generation loop live in ``smash.runtime``; this algorithm only validates
the sizes and attaches the runtime, which ``PrunaModel.generate`` then uses. Nothing is saved: the cache
is re-allocated at load (REAPPLY). It runs before the compiler so that ``torch_compile`` finds the
runtime and warms its graphs up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.errors import HyperparameterError, UnsupportedLayerTypesError
from smash.registry import registry
from smash.runtime import (
    AUTO_THREADS,
    SUPPORTED_LAYER_TYPES,
    RuntimeSpec,
    StaticGenerationRuntime,
    attach_runtime,
    thread_candidates,
    unsupported_layer_types,
)

# Decode thread choice (fractions of the fastest eager step): the fewest threads within
# FEWER_THREADS_MARGIN of it; at load, the recorded count unless another is more than KEEP_MARGIN faster.
FEWER_THREADS_MARGIN = 0.10
KEEP_MARGIN = 0.15


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
        Hyperparameter(
            "decode_threads",
            int,
            AUTO_THREADS,
            "CPU threads of each decode step: 0 times the candidates (1, 2, 4, ... up to the process's "
            "torch thread count) on the model when it is smashed and when it is loaded, and keeps the "
            "fewest within 10% of the fastest; null: the process's count. One step is many small "
            "matrix-vector products, for which waking sleeping threads can cost more than they add",
            minimum=0,
            maximum=1024,
            nullable=True,
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
        unsupported = unsupported_layer_types(config)
        if unsupported:  # the typed error, not a reason string: callers can read the layer types
            raise UnsupportedLayerTypesError(self.name, unsupported, SUPPORTED_LAYER_TYPES)
        return None

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        threads = params["decode_threads"]
        spec = RuntimeSpec(params["max_cache_len"], params["batch_size"], params["prefill_chunk"])
        runtime = attach_runtime(model, spec)
        if threads == AUTO_THREADS:
            threads = _choose_decode_threads(runtime, ctx)
        runtime.spec = replace(spec, decode_threads=threads)
        return model


def _choose_decode_threads(runtime: StaticGenerationRuntime, ctx: SmashContext) -> int | None:
    """A fast decode thread count on this machine, recorded in the metadata with the timings.

    The fewest threads within ``FEWER_THREADS_MARGIN`` of the fastest count: timed eagerly, a step
    carries Python overhead that compiling removes, so close timings say little (hqq 8-bit SmolLM2 timed
    70 ms on 1 thread and 66 ms on 2 eagerly, then decoded at 37 and 57 ms compiled), and fewer threads
    leave cores to other work. At load, the count recorded at smash time is kept unless another is more
    than ``KEEP_MARGIN`` faster here: the saved compiled graphs are specialized on it, and timing noise
    should not cost a recompile.
    """
    if runtime.device.type != "cpu":
        return None
    candidates = thread_candidates(torch.get_num_threads())
    if len(candidates) == 1:
        return candidates[0]
    timings = runtime.time_decode_threads(candidates)
    fastest = min(timings.values())
    chosen = min(n for n, t in timings.items() if t <= fastest * (1 + FEWER_THREADS_MARGIN))
    recorded = ctx.metadata.get("decode_threads")  # untrusted JSON
    if type(recorded) is int and timings.get(recorded, float("inf")) <= fastest * (1 + KEEP_MARGIN):
        chosen = recorded
    ctx.metadata["decode_threads"] = chosen
    ctx.metadata["decode_step_ms_by_threads"] = {str(n): round(t * 1e3, 3) for n, t in timings.items()}
    return chosen
