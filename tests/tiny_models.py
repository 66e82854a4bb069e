"""The tiny random Llama every test package builds (2 layers, hidden 64): one definition."""

from __future__ import annotations

from typing import Any

import torch

TINY_LLAMA: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
    "architectures": ["LlamaForCausalLM"],
}


def tiny_llama_config() -> Any:
    """A new ``LlamaConfig`` of the tiny Llama."""
    from transformers import LlamaConfig

    return LlamaConfig(**TINY_LLAMA)


def build_tiny_llama(seed: int = 0, config: Any = None) -> torch.nn.Module:
    """A tiny ``LlamaForCausalLM`` (of ``config``, default ``tiny_llama_config()``) seeded by ``seed``, in
    eval mode."""
    from transformers import LlamaForCausalLM

    config = tiny_llama_config() if config is None else config
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()
