"""Shared helpers of the smash tests: hyperparameters that suit the tiny random Llama, fixed inputs."""

from __future__ import annotations

from typing import Any

import torch

from smash import registry

# Algorithms whose defaults do not suit a 2-layer, 256-token test model, or would cost minutes here.
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "torch_compile": {"backend": "eager"},
    "static_cache": {"max_cache_len": 64},
    "magnitude_pruning": {"sparsity": 0.3},
}


def tiny_params(name: str) -> dict[str, Any]:
    return dict(TINY_PARAMS.get(name, {}))


def input_ids(seed: int = 0, length: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, length), generator=generator)


def logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


ALGORITHMS = registry.names()
