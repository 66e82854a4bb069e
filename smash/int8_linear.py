"""Weight-only int8 linear layer: per-output-channel symmetric scales, run on torch's int8 matmul kernel."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smash.quantized_linear import ComputeDtype


class Int8Linear(ComputeDtype, nn.Module):
    """Weight-only symmetric int8 with one scale per output channel: ``w = q * scale``.

    Saved buffers: ``qweight`` (int8, ``[out, in]``), ``scale`` (float32, ``[out]``), optional ``bias``.
    Runs on ``_weight_int8pack_mm`` with bfloat16 activations (its fast path on CPU), else dequantizes.
    """

    qweight: torch.Tensor
    scale: torch.Tensor
    _kernel_scale: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = False,
        compute_dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        qweight = torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias: torch.Tensor | None
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None
        self.register_buffer("_kernel_scale", None, persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, compute_dtype: torch.dtype) -> Int8Linear:
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=compute_dtype,
            device=weight.device,
        )
        layer.qweight = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        layer.scale = scale
        if linear.bias is not None:
            layer.bias = linear.bias.detach().float().clone()
        layer.refresh()
        return layer

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.qweight.to(dtype) * self.scale.to(dtype)[:, None]

    def refresh(self) -> None:
        on_kernel = self.compute_dtype == torch.bfloat16 and self.qweight.device.type == "cpu"
        if on_kernel and self.qweight.data_ptr() % 64:
            # Tensors read from safetensors can sit at any byte offset; the int8 kernel's vector loads
            # segfault on a misaligned weight, so give it a freshly allocated (64-byte aligned) copy.
            self.qweight = self.qweight.clone()
        self._kernel_scale = self.scale.to(self.compute_dtype) if on_kernel else None

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.refresh()

    def _apply(self, fn: Any, recurse: bool = True) -> Int8Linear:
        super()._apply(fn, recurse)
        self.refresh()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype)
        if self._kernel_scale is not None:
            y = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, self._kernel_scale)
        else:
            y = F.linear(flat, self.dequantize(self.compute_dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        path = "int8 kernel" if self._kernel_scale is not None else "dequantize"
        return f"in_features={self.in_features}, out_features={self.out_features}, {path}"
