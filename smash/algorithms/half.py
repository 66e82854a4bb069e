"""half: cast floating-point weights to fp16 or bf16."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.registry import registry

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@registry.register
class Half(Algorithm):
    name = "half"
    group = Group.QUANTIZER
    description = "Casts floating-point parameters and buffers to half precision (fp16 or bf16)."
    hyperparameters = (
        Hyperparameter("dtype", str, "bfloat16", "target floating-point dtype", choices=tuple(_DTYPES)),
    )
    runs_before = frozenset({"group:compiler", "group:cacher"})
    # Composes with a weight quantizer (which runs after it and quantizes the half-precision weights).
    exclusive = False
    save_mode = SaveMode.WEIGHTS

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        if not any(p.is_floating_point() for p in model.parameters()):
            return "the model has no floating-point parameters"
        return None

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        return model.to(_DTYPES[params["dtype"]])

    def restore(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        # The tensors are loaded with assign=True, so their saved dtype wins; casting first keeps
        # buffers that are not saved (rotary tables) in the dtype the smashed model used.
        return model.to(_DTYPES[params["dtype"]])
