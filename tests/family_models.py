"""Tiny random-weight causal LMs of many transformers families (hidden 64, vocab 256): one definition.

``tiny_families()`` maps a family name to a builder ``(seed) -> model`` in eval mode. The sliding-window
families use a window of ``SLIDING_WINDOW`` tokens, smaller than the prompts plus generations the tests
use, so that the window changes the output; the hybrid ones mix sliding and full-attention layers.
``refused_families()`` does the same for families whose layer types the static-cache runtime refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tiny_models import TINY_LLAMA

SLIDING_WINDOW = 16
VOCAB = 256

# What every family shares: tiny sizes, and special tokens inside the vocabulary (the defaults of some
# configs, e.g. Mistral's 32000, point past it). The pad token is the EOS token: a distinct one that a
# random prompt contains makes transformers' generate mask it out as padding.
_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}
_HYBRID = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]

# family -> (transformers config class name, overrides of _COMMON)
_FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {k: v for k, v in TINY_LLAMA.items() if k != "architectures"}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "qwen3_sliding": (
        "Qwen3Config",
        {
            "head_dim": 16,
            "num_hidden_layers": 4,
            "use_sliding_window": True,
            "sliding_window": SLIDING_WINDOW,
            "max_window_layers": 2,
            "layer_types": _HYBRID,
        },
    ),
    "mistral": ("MistralConfig", {"sliding_window": SLIDING_WINDOW}),
    "phi3": ("Phi3Config", {"sliding_window": SLIDING_WINDOW}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "num_hidden_layers": 4, "sliding_window": SLIDING_WINDOW}),
    "gemma3_text": (
        "Gemma3TextConfig",
        {"head_dim": 16, "num_hidden_layers": 4, "sliding_window": SLIDING_WINDOW, "layer_types": _HYBRID},
    ),
    "gpt2": ("GPT2Config", {}),
    "granite": ("GraniteConfig", {}),
    "olmo2": ("Olmo2Config", {}),
    "smollm3": ("SmolLM3Config", {}),
}
# Families static_cache refuses, and the layer type it names.
_REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    "llama4_text": (  # chunked attention on 3 layers of 4
        "Llama4TextConfig",
        {"head_dim": 16, "num_hidden_layers": 4, "intermediate_size_mlp": 128, "num_local_experts": 2,
         "attention_chunk_size": 8},
    ),
}  # fmt: skip
REFUSED_LAYER_TYPES = {"llama4_text": "chunked_attention"}


def _gpt2_overrides() -> dict[str, Any]:
    return {"vocab_size": VOCAB, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}  # fmt: skip


def family_config(family: str) -> Any:
    """A new transformers config of the tiny ``family`` model."""
    import transformers

    class_name, overrides = {**_FAMILIES, **_REFUSED}[family]
    values = _gpt2_overrides() if family == "gpt2" else {**_COMMON, **overrides}
    return getattr(transformers, class_name)(**values)


def build_family_model(family: str, seed: int = 0) -> torch.nn.Module:
    """The tiny ``family`` causal LM with weights seeded by ``seed``, in eval mode."""
    from transformers import AutoModelForCausalLM

    config = family_config(family)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def _builder(family: str) -> Callable[[int], torch.nn.Module]:
    return lambda seed=0: build_family_model(family, seed)


def tiny_families() -> dict[str, Callable[[int], torch.nn.Module]]:
    """family name -> builder of its tiny seeded model (``builder(seed)``), for the families the
    static-cache runtime serves."""
    return {family: _builder(family) for family in _FAMILIES}


def refused_families() -> dict[str, Callable[[int], torch.nn.Module]]:
    """The same for families the static-cache runtime refuses (``REFUSED_LAYER_TYPES`` says why)."""
    return {family: _builder(family) for family in _REFUSED}
