"""The group-wise (hqq) weight-quantized linear layer, whose whole state is plain tensors, so safetensors
can hold it; the packing of its integer values.

hqq's own ``HQQLinear`` keeps its metadata in a Python dict and, on CPU, dequantizes every weight on every
call. This layer keeps the quantized weights, scales and zero points in registered buffers (the saved
form) and builds, from them, the layout of torch's int4 matmul kernel (the run form, never
saved: it is rebuilt after loading or moving, because the packed layout is private to the kernel and
may differ between torch builds and CPUs; rebuilding takes a few seconds for a 135M model).

Why the hqq layout maps exactly onto the int4 kernel (``smash.int4_kernel``, CPU and CUDA): it computes
``w = (q - 8) * s + z'`` per group along K, and hqq stores ``w = (q - z) * s`` with the same groups when
``axis=1``; so ``z' = (8 - z) * s``. 2- and 3-bit values fit in 4 bits and use the same kernel. An 8-bit
value ``q = 16 * hi + lo`` is split into two nibbles: ``hi`` rows with scale ``16 s`` and ``lo`` rows with
scale ``s`` are stacked along N and the two output halves summed, which is exact as well. The kernel is
only fast with bfloat16 activations on this torch's CPU (fp32/fp16 take a slow reference path) and runs
bfloat16 only on CUDA, so the kernel path runs when the compute dtype is bfloat16; otherwise, and on a
device or shape the kernel does not take, the layer dequantizes (hqq's own computation).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smash import int4_kernel

# From this many rows (tokens) on, an 8-bit layer dequantizes instead of running the split int4 kernel.
PREFILL_ROWS = 32
# The off-CPU kernel check's bound on the relative error norm (see QuantizedLinear._check_kernel).
KERNEL_CHECK_TOLERANCE = 0.1
DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}


# --- bit packing ---------------------------------------------------------------------------------------


def packed_length(numel: int, nbits: int) -> int:
    """Bytes needed for ``numel`` values of ``nbits`` bits (packed in blocks of 8 values)."""
    return -(-numel // 8) * nbits


def pack_bits(values: torch.Tensor, nbits: int) -> torch.Tensor:
    """Pack unsigned integers < 2**nbits into a flat uint8 tensor: 8 values -> ``nbits`` bytes.

    One scheme for 2, 3, 4 and 8 bits keeps the saved format free of per-width special cases
    (hqq packs 3-bit values into int32 words with its own padding rules): the 8 values form one
    little-endian word, value ``i`` at bit ``i * nbits``. For 2 and 4 bits a word's bytes hold whole
    values, so those widths are packed byte by byte (same bytes, ~10x faster than building words).
    """
    flat = F.pad(values.reshape(-1).to(torch.uint8), (0, (-values.numel()) % 8))
    if nbits == 8:
        return flat
    if 8 % nbits:
        return _pack_words(flat, nbits)
    per_byte = flat.view(-1, 8 // nbits)
    packed = per_byte[:, 0].clone()
    for i in range(1, 8 // nbits):
        packed |= per_byte[:, i] << (i * nbits)
    return packed


def unpack_bits(packed: torch.Tensor, nbits: int, numel: int) -> torch.Tensor:
    """Inverse of ``pack_bits``: a flat uint8 tensor of ``numel`` values."""
    if nbits == 8:
        return packed[:numel]
    if 8 % nbits:
        return _unpack_words(packed, nbits)[:numel]
    mask = (1 << nbits) - 1
    values = [(packed >> (i * nbits)) & mask for i in range(8 // nbits)]
    return torch.stack(values, dim=1).reshape(-1)[:numel]


def _pack_words(flat: torch.Tensor, nbits: int) -> torch.Tensor:
    """``pack_bits`` for any width: each 8 values as one word of ``8 * nbits`` bits, little-endian."""
    groups = flat.view(-1, 8).to(torch.int64)
    shifts = torch.arange(8, device=flat.device) * nbits
    words = (groups << shifts).sum(dim=1)
    byte_shifts = torch.arange(nbits, device=flat.device) * 8
    return ((words[:, None] >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)


def _unpack_words(packed: torch.Tensor, nbits: int) -> torch.Tensor:
    chunks = packed.view(-1, nbits).to(torch.int64)
    byte_shifts = torch.arange(nbits, device=packed.device) * 8
    words = (chunks << byte_shifts).sum(dim=1)
    shifts = torch.arange(8, device=packed.device) * nbits
    values = (words[:, None] >> shifts) & ((1 << nbits) - 1)
    return values.reshape(-1).to(torch.uint8)


class ComputeDtype:
    """``compute_dtype`` stored by name.

    torch 2.13's precompile pickler (``smash.precompiled``) replaces every plain attribute of a module
    by a placeholder, keyed by object identity. A ``torch.dtype`` is a process-wide singleton, so a dtype
    attribute erased that dtype from every tensor in the saved guards and no graph of a quantized model
    could be loaded again. Strings are pickled by value and are safe.
    """

    _compute_dtype_name: str

    @property
    def compute_dtype(self) -> torch.dtype:
        dtype = getattr(torch, self._compute_dtype_name)
        assert isinstance(dtype, torch.dtype)
        return dtype

    @compute_dtype.setter
    def compute_dtype(self, dtype: torch.dtype) -> None:
        self._compute_dtype_name = str(dtype).removeprefix("torch.")


# --- group-wise (hqq) layer ----------------------------------------------------------------------------


class QuantizedLinear(ComputeDtype, nn.Module):
    """A linear layer with group-wise asymmetric quantized weights: ``w = (q - zero) * scale``.

    Saved buffers: ``qweight`` (uint8, ``pack_bits`` format), ``scale`` and ``zero`` (one value per group,
    flat, hqq's group order for ``axis``), optional ``bias``. Everything else is derived.
    """

    qweight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    _kernel_weight: torch.Tensor | None
    _kernel_scale_zeros: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        nbits: int,
        group_size: int,
        axis: int = 1,
        bias: bool = False,
        compute_dtype: torch.dtype = torch.bfloat16,
        use_kernel: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.nbits, self.group_size, self.axis = nbits, group_size, axis
        self.compute_dtype = compute_dtype
        self.use_kernel = use_kernel
        numel = in_features * out_features
        groups = numel // group_size
        packed = torch.zeros(packed_length(numel, nbits), dtype=torch.uint8, device=device)
        self.register_buffer("qweight", packed)
        self.register_buffer("scale", torch.ones(groups, dtype=compute_dtype, device=device))
        self.register_buffer("zero", torch.zeros(groups, dtype=compute_dtype, device=device))
        self.bias: torch.Tensor | None
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=compute_dtype, device=device))
        else:
            self.bias = None
        self.register_buffer("_kernel_weight", None, persistent=False)
        self.register_buffer("_kernel_scale_zeros", None, persistent=False)

    @classmethod
    def from_quantized(
        cls,
        q: torch.Tensor,
        scale: torch.Tensor,
        zero: torch.Tensor,
        *,
        shape: tuple[int, int],
        nbits: int,
        group_size: int,
        axis: int,
        bias: torch.Tensor | None,
        compute_dtype: torch.dtype,
        use_kernel: bool = True,
    ) -> QuantizedLinear:
        """Build from hqq's unpacked result: integer values ``q`` and per-group ``scale``/``zero``."""
        out_features, in_features = shape
        layer = cls(
            in_features,
            out_features,
            nbits=nbits,
            group_size=group_size,
            axis=axis,
            bias=bias is not None,
            compute_dtype=compute_dtype,
            use_kernel=use_kernel,
            device=q.device,
        )
        values = q.round().to(torch.uint8)
        layer.qweight = pack_bits(values, nbits)
        layer.scale = scale.reshape(-1).to(compute_dtype).contiguous()
        layer.zero = zero.reshape(-1).to(compute_dtype).contiguous()
        if bias is not None:
            layer.bias = bias.detach().to(compute_dtype).clone()
        layer.refresh(values.view(out_features, in_features))
        return layer

    # --- derived forms -------------------------------------------------------------------------------

    def int_values(self) -> torch.Tensor:
        """The integer weights as uint8, shaped ``[out_features, in_features]``."""
        numel = self.in_features * self.out_features
        return unpack_bits(self.qweight, self.nbits, numel).view(self.out_features, self.in_features)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """hqq's dequantization, ``(q - zero) * scale`` in hqq's group layout, in ``dtype``."""
        dtype = dtype or self.compute_dtype
        q = self.int_values().to(dtype)
        scale, zero = self.scale.to(dtype), self.zero.to(dtype)
        if self.axis == 1:
            grouped = (q.view(-1, self.group_size) - zero[:, None]) * scale[:, None]
        else:
            grouped = (q.view(self.group_size, -1) - zero[None, :]) * scale[None, :]
        return grouped.view(self.out_features, self.in_features)

    def kernel_unsupported(self) -> str | None:
        """Why torch's int4 kernel cannot compute exactly this layer's dequantized weights (None: it can)."""
        if not self.use_kernel:
            return "use_kernel is off"
        if self.compute_dtype != torch.bfloat16:
            return f"the kernel runs bfloat16, not {self.compute_dtype}"
        if self.axis != 1:
            return "groups along axis 0 do not map onto the kernel's groups along K"
        rows = self.out_features * (2 if self.nbits == 8 else 1)
        return int4_kernel.unsupported(self.qweight.device, self.in_features, rows, self.group_size)

    def kernel_applies(self) -> bool:
        return self.kernel_unsupported() is None

    def refresh(self, values: torch.Tensor | None = None) -> None:
        """(Re)build the kernel layout from the saved buffers; called after quantizing, loading, moving.

        ``values``: ``int_values()`` when the caller has them already (the quantizer), saving an unpack.
        """
        self._kernel_weight = None
        self._kernel_scale_zeros = None
        if not self.kernel_applies():
            return
        q = (self.int_values() if values is None else values).to(torch.int32)
        groups = self.in_features // self.group_size
        scale = self.scale.float().view(self.out_features, groups)
        zero = self.zero.float().view(self.out_features, groups)
        if self.nbits == 8:
            q = torch.cat([q >> 4, q & 15])
            kscale = torch.cat([16 * scale, scale])
            kzero = torch.cat([(136 - zero) * scale, torch.zeros_like(scale)])
        else:
            kscale, kzero = scale, (8 - zero) * scale
        scale_zeros = torch.stack([kscale, kzero], dim=-1).transpose(0, 1).contiguous()
        self._kernel_weight = int4_kernel.convert(q)
        self._kernel_scale_zeros = scale_zeros.to(self.compute_dtype)
        if self.qweight.device.type != "cpu":
            self._check_kernel()

    def _check_kernel(self) -> None:
        """Off the CPU (which the tests cover), compare the kernel with the dequantized weights once.

        A few random rows through both paths, compared by relative error norm: bfloat16 rounding keeps a
        right layout under 0.015 (2 bits) and 0.006 (3-8 bits) on the CPU kernel, while a layout the
        kernel reads differently (swapped nibbles, swapped scale and offset) is off by 0.6 or more. On a
        mismatch the layer warns and dequantizes instead, so a wrong kernel costs speed, never results.
        """
        generator = torch.Generator(device=self.qweight.device).manual_seed(0)
        x = torch.randn(8, self.in_features, device=self.qweight.device, generator=generator)
        exact = x @ self.dequantize(torch.float32).T
        through_kernel = self._kernel_matmul(x.to(self.compute_dtype)).float()
        error = float((through_kernel - exact).norm() / exact.norm().clamp_min(1e-30))
        if not error <= KERNEL_CHECK_TOLERANCE:
            self._kernel_weight = None
            self._kernel_scale_zeros = None
            warnings.warn(
                f"torch's int4 kernel on {self.qweight.device} disagrees with this layer's weights "
                f"(relative error {error:.3g}, at most {KERNEL_CHECK_TOLERANCE} expected); the layer "
                "dequantizes instead. Please report this with your torch version and GPU.",
                RuntimeWarning,
                stacklevel=2,
            )

    def _kernel_matmul(self, flat: torch.Tensor) -> torch.Tensor:
        assert self._kernel_weight is not None and self._kernel_scale_zeros is not None
        y = int4_kernel.matmul(flat, self._kernel_weight, self.group_size, self._kernel_scale_zeros)
        if self.nbits == 8:
            y = y[:, : self.out_features] + y[:, self.out_features :]
        return y

    # --- nn.Module hooks -----------------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.refresh()

    def _apply(self, fn: Any, recurse: bool = True) -> QuantizedLinear:
        before = (self.qweight.data_ptr(), self.scale.data_ptr(), self.qweight.device)
        super()._apply(fn, recurse)
        self.compute_dtype = self.scale.dtype  # `.to(dtype)` casts scale/zero: follow it
        if (self.qweight.data_ptr(), self.scale.data_ptr(), self.qweight.device) != before:
            self.refresh()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self._kernel_weight is not None and not self._dequantizes_at(flat.shape[0]):
            y = self._kernel_matmul(flat.to(self.compute_dtype))
        elif self._kernel_weight is not None and flat.device.type == "cpu":
            y = F.linear(flat.float(), self.dequantize(torch.float32))
        else:
            y = F.linear(flat.to(self.compute_dtype), self.dequantize())
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def _dequantizes_at(self, rows: int) -> bool:
        """Whether a kernel layer dequantizes once for a call of ``rows`` rows (a prefill) instead.

        CPU, 8 bits: the split kernel costs two int4 matmuls per row, while the uint8 values need no
        unpacking, so dequantizing and running fp32 BLAS is ~2x faster at 128 rows (and exact). CUDA: the
        int4 kernel is built for a few rows (decode) and falls behind cuBLAS on a dequantized bf16
        weight as rows grow; the same threshold is used there, not yet timed on a GPU.
        """
        if rows < PREFILL_ROWS:
            return False
        return self.nbits == 8 or self.qweight.device.type != "cpu"

    def extra_repr(self) -> str:
        path = "int4 kernel" if self._kernel_weight is not None else "dequantize"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, nbits={self.nbits}, "
            f"group_size={self.group_size}, axis={self.axis}, compute_dtype={self.compute_dtype}, {path}"
        )
