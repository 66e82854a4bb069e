"""hqq: Half-Quadratic Quantization of ``nn.Linear`` weights (2, 3, 4 or 8 bits, group-wise).

The quantizer is hqq's: its min/max initialisation and its half-quadratic proximal optimizer
(``optimize_weights_proximal_legacy``), the latter restated in ``smash.proximal`` so that it runs from
the CPU's caches, with the iteration count exposed as a lever, because on CPU the optimizer dominates
smash time. transformers' ``HqqConfig`` path raises NotImplementedError in
5.x, and hqq's ``HQQLinear`` keeps metadata in Python dicts and dequantizes on every call on CPU, so the
result goes into ``smash.quantized_linear.QuantizedLinear``: plain buffers (saved as safetensors) and
torch's int4 kernel (``smash.int4_kernel``, CPU and CUDA) at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.module_tree import (
    linear_layers,
    recorded_layers,
    set_submodule,
    shape_record,
    tied_to_input_embeddings,
    untie_output_embeddings,
)
from smash.parallel import map_layers
from smash.proximal import optimize_zero
from smash.quantized_linear import DTYPES, QuantizedLinear
from smash.registry import registry


def hqq_quantize(
    weight: torch.Tensor, *, nbits: int, group_size: int, axis: int, iterations: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer values (float tensor, hqq's group layout), dequantization scale and zero, as hqq computes.

    hqq's ``Quantizer.quantize`` initialisation (min/max per group) and its proximal solver for the zero
    points, run by ``smash.proximal`` (the same iteration, made cache-friendly; see there for the one
    difference), with the iteration count as a lever.
    """
    w = weight.detach().float()
    w = w.reshape(-1, group_size) if axis == 1 else w.reshape(group_size, -1)
    w_min = w.min(dim=axis, keepdim=True)[0]
    w_max = w.max(dim=axis, keepdim=True)[0]
    max_v = 2**nbits - 1
    denom = w_max - w_min
    scale = max_v / denom
    scale = torch.where(denom.abs() <= 1e-4, torch.ones_like(scale), scale).clamp(max=2e4)
    zero = -w_min * scale
    if iterations > 0:
        if axis == 1:
            zero = optimize_zero(w, scale, zero, max_v, iterations)
        else:  # groups along columns: the solver wants them as rows
            zero = optimize_zero(w.T.contiguous(), scale.T, zero.T, max_v, iterations).T
    q = (w * scale + zero).round_().clamp_(0, max_v)
    return q, 1.0 / scale, zero


@registry.register
class HQQ(Algorithm):
    name = "hqq"
    group = Group.QUANTIZER
    description = (
        "Half-Quadratic Quantization (hqq package) of nn.Linear weights, group-wise with zero points; "
        "runs on torch's int4 kernel (CPU, or CUDA from compute capability 8.0) with bfloat16 compute, else "
        "dequantizes per call."
    )
    hyperparameters = (
        Hyperparameter("weight_bits", int, 4, "bits per weight", choices=(2, 3, 4, 8)),
        Hyperparameter(
            "group_size", int, 64, "weights sharing one scale and zero point", choices=(16, 32, 64, 128, 256)
        ),
        Hyperparameter(
            "axis",
            int,
            1,
            "hqq grouping axis; 1 (along the input dimension) is the one the kernel runs",
            choices=(0, 1),
        ),
        Hyperparameter(
            "compute_dtype",
            str,
            "bfloat16",
            "dtype of scales, zeros and the matmul; bfloat16 uses the int4 kernel on CPU",
            choices=tuple(DTYPES),
        ),
        Hyperparameter(
            "optimizer_iterations",
            int,
            20,
            "half-quadratic optimizer iterations (hqq's default 20; 0 = plain min/max rounding)",
            minimum=0,
            maximum=200,
        ),
        Hyperparameter(
            "skip_modules",
            str,
            "lm_head",
            "comma-separated module names (or name parts) left unquantized; a tied lm_head that is not "
            "listed is untied: quantized, while the input embeddings keep full precision",
        ),
        Hyperparameter("use_kernel", bool, True, "use torch's int4 kernel (CPU or CUDA) where it applies"),
    )
    runs_after = frozenset({"group:pruner", "half"})
    runs_before = frozenset({"group:compiler", "group:cacher"})
    save_mode = SaveMode.WEIGHTS

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        if next(_targets(model, params), None) is None:
            return (
                f"no nn.Linear layer whose weight count is divisible by group_size={params['group_size']} "
                f"outside skip_modules={params['skip_modules']!r}"
            )
        return None

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        targets = list(_targets(model, params))
        if any(tied_to_input_embeddings(model, linear) for _, linear in targets):
            untie_output_embeddings(model)
        layers: dict[str, dict[str, Any]] = {}
        quantized = map_layers(lambda target: _quantize(target[1], params), targets)
        for (name, linear), layer in zip(targets, quantized, strict=True):
            set_submodule(model, name, layer)
            layers[name] = shape_record(linear)
        ctx.metadata["layers"] = layers
        return model

    def restore(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        """Put empty QuantizedLinear modules where ``apply`` put them; the saved buffers fill them."""
        for name, shape in list(recorded_layers(model, ctx.metadata, self.name)):
            layer = QuantizedLinear(
                shape["in"],
                shape["out"],
                nbits=params["weight_bits"],
                group_size=params["group_size"],
                axis=params["axis"],
                bias=shape["bias"],
                compute_dtype=DTYPES[params["compute_dtype"]],
                use_kernel=params["use_kernel"],
            )
            set_submodule(model, name, layer)
        return model


def _quantize(linear: nn.Linear, params: Mapping[str, Any]) -> QuantizedLinear:
    q, scale, zero = hqq_quantize(
        linear.weight,
        nbits=params["weight_bits"],
        group_size=params["group_size"],
        axis=params["axis"],
        iterations=params["optimizer_iterations"],
    )
    return QuantizedLinear.from_quantized(
        q,
        scale,
        zero,
        shape=(linear.out_features, linear.in_features),
        nbits=params["weight_bits"],
        group_size=params["group_size"],
        axis=params["axis"],
        bias=linear.bias,
        compute_dtype=DTYPES[params["compute_dtype"]],
        use_kernel=params["use_kernel"],
    )


def _targets(model: nn.Module, params: Mapping[str, Any]) -> Iterator[tuple[str, nn.Linear]]:
    """Linear layers hqq can group: their weight count must be a multiple of the group size."""
    for name, linear in linear_layers(model, params["skip_modules"], include_tied=True):
        if linear.weight.numel() % params["group_size"] == 0:
            yield name, linear
