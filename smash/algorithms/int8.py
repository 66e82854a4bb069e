"""int8_weight: weight-only int8 quantization of ``nn.Linear`` layers, one symmetric scale per output channel.

Weight-only and per-channel on purpose: per-tensor dynamic int8 (``torch.ao`` dynamic quantization, which
also quantizes activations) kept only 0.44 top-1 agreement on SmolLM2-135M. The layers run on torch's
``_weight_int8pack_mm`` CPU kernel with bfloat16 activations (its fast path) or dequantize otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.int8_linear import Int8Linear
from smash.module_tree import (
    linear_layers,
    no_linear_reason,
    recorded_layers,
    set_submodule,
    shape_record,
    tied_to_input_embeddings,
    untie_output_embeddings,
)
from smash.quantized_linear import DTYPES
from smash.registry import registry


@registry.register
class Int8Weight(Algorithm):
    name = "int8_weight"
    group = Group.QUANTIZER
    description = "Weight-only int8 quantization of nn.Linear layers with per-output-channel scales."
    hyperparameters = (
        Hyperparameter(
            "compute_dtype",
            str,
            "bfloat16",
            "activation dtype of the matmul; bfloat16 uses the int8 CPU kernel",
            choices=tuple(DTYPES),
        ),
        Hyperparameter(
            "skip_modules",
            str,
            "lm_head",
            "comma-separated module names (or name parts) left unquantized; a tied lm_head that is not "
            "listed is untied: quantized, while the input embeddings keep full precision",
        ),
    )
    runs_after = frozenset({"group:pruner", "half"})
    runs_before = frozenset({"group:compiler", "group:cacher"})
    save_mode = SaveMode.WEIGHTS

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        return no_linear_reason(model, params["skip_modules"], include_tied=True)

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        layers: dict[str, dict[str, Any]] = {}
        dtype = DTYPES[params["compute_dtype"]]
        for name, linear in list(linear_layers(model, params["skip_modules"], include_tied=True)):
            if tied_to_input_embeddings(model, linear):
                untie_output_embeddings(model)
            set_submodule(model, name, Int8Linear.from_linear(linear, compute_dtype=dtype))
            layers[name] = shape_record(linear)
        ctx.metadata["layers"] = layers
        return model

    def restore(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        """Put empty Int8Linear modules where ``apply`` put them; the saved buffers fill them."""
        dtype = DTYPES[params["compute_dtype"]]
        for name, shape in list(recorded_layers(model, ctx.metadata, self.name)):
            layer = Int8Linear(shape["in"], shape["out"], bias=shape["bias"], compute_dtype=dtype)
            set_submodule(model, name, layer)
        return model
