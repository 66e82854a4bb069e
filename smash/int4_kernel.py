"""torch's int4 weight-only matmul ("tinygemm") on CPU and CUDA, fed hqq's group layout exactly.

Both devices compute ``w = (q - 8) * s + z'`` per group of ``group_size`` along K from a packed layout
private to the device's kernel, with bfloat16 activations and a ``[K / group_size, N, 2]`` table of
(scale, offset) pairs. hqq stores ``w = (q - z) * s`` with the same groups when ``axis=1``, so the
integer values pass through unchanged and ``z' = (8 - z) * s`` (``smash.quantized_linear`` builds the
table; 8-bit values are split into two nibble matrices there). Only the conversion op, its input format
and the matmul op differ between devices:

- CPU: ``_convert_weight_to_int4pack_for_cpu`` takes int32 ``[N, K]``; ``_weight_int4pack_mm_for_cpu``.
- CUDA: ``_convert_weight_to_int4pack`` takes uint8 ``[N, K / 2]`` (two values a byte, the even column
  in the high nibble) and an ``inner_k_tiles`` of 2, 4 or 8 that must divide ``K / 16``;
  ``_weight_int4pack_mm``. This is the kernel of hqq's own fastest torch-native CUDA backend
  (``hqq.backends.torchao``, "torchao_int4"), which re-derives the integers through a bf16 round trip;
  here they are passed through as they are. It needs bfloat16 tensor cores (compute capability 8.0+).

CUDA is not covered by CI (no GPU there): the layer checks the converted layout against its dequantized
weights once when it is built on a CUDA device (``smash.quantized_linear``) and falls back to
dequantizing if they disagree, and the kernel tests in ``tests/smash/test_algorithms.py`` run on CUDA
too wherever one is present.
"""

from __future__ import annotations

import torch

GROUP_SIZES = (32, 64, 128, 256)
CUDA_INNER_K_TILES = (8, 4, 2)  # the largest that fits is the fastest
CUDA_MIN_CAPABILITY = (8, 0)


def unsupported(device: torch.device, in_features: int, rows: int, group_size: int) -> str | None:
    """Why the kernel cannot run this layer on ``device`` (None: it can). ``rows``: N after any split."""
    if group_size not in GROUP_SIZES:
        return f"group_size {group_size} is not one of {GROUP_SIZES}"
    if in_features % group_size:
        return f"in_features {in_features} is not a multiple of group_size {group_size}"
    if rows % 16:
        return f"{rows} kernel rows are not a multiple of 16"
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        return f"no int4 kernel on {device.type}"
    if torch.cuda.get_device_capability(device) < CUDA_MIN_CAPABILITY:
        return "the CUDA int4 kernel needs compute capability 8.0 or newer"
    if _inner_k_tiles(in_features) is None:
        return f"in_features {in_features} is not a multiple of 32"
    return None


def convert(values: torch.Tensor) -> torch.Tensor:
    """The device's packed layout of unsigned 4-bit values, int32 ``[N, K]`` on the target device."""
    if values.device.type == "cpu":
        return torch.ops.aten._convert_weight_to_int4pack_for_cpu(values.contiguous(), 2)
    tiles = _inner_k_tiles(values.shape[1])
    assert tiles is not None, "checked by unsupported()"
    two_per_byte = (values[:, ::2] << 4 | values[:, 1::2]).to(torch.uint8).contiguous()
    return torch.ops.aten._convert_weight_to_int4pack(two_per_byte, tiles)


def matmul(
    x: torch.Tensor, packed: torch.Tensor, group_size: int, scale_offsets: torch.Tensor
) -> torch.Tensor:
    """``x @ w.T`` for ``x`` bfloat16 ``[M, K]``, through the kernel of ``packed``'s device."""
    if packed.device.type == "cpu":
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, scale_offsets)
    return torch.ops.aten._weight_int4pack_mm(x.contiguous(), packed, group_size, scale_offsets)


def _inner_k_tiles(in_features: int) -> int | None:
    return next((t for t in CUDA_INNER_K_TILES if in_features % (16 * t) == 0), None)
