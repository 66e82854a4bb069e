"""A steady heap for generation loops on CPU: glibc's mmap threshold held at a fixed value.

glibc's malloc serves a request above ``M_MMAP_THRESHOLD`` (128 KiB at start) with a mapping of its own.
When such a block is freed, glibc raises the threshold to that block's size, so later blocks of that
size come from the heap. A decode loop allocates the same vocabulary-sized buffers at every step
(SmolLM2's logits: 49152 x 4 bytes = 192 KiB). Anything small allocated between them that lives a little
longer (a streamer's timestamp, a mask) then pins heap space, and the heap keeps growing.

Measured on SmolLM2-135M int8 with its head + static cache 640 + compile, on a 2-core VM on 2026-11-30
(`benchmarks/compile_stability.py --full --quantizer int8-head`, lengths 16..512):
- dynamic threshold: peak RSS grew 407 MB over the sweep (0.3 MB a step), decode std 4.3 % of the
  median;
- threshold held at 128 KiB: 10.4 MB (the KV cache alone is 28.1 MB), std 1.9 %, TTFT unchanged.

Setting the threshold (``mallopt(M_MMAP_THRESHOLD, n)``) is what turns the adjustment off. The setting is
process-wide, so ``hold_mmap_threshold`` acts once, when the static-cache runtime is first attached on
CPU, and only where the C library is glibc and ``MALLOC_MMAP_THRESHOLD_`` (glibc's own variable) is not
already set. ``SMASH_MALLOC_MMAP_THRESHOLD`` is a size in bytes, or ``off`` to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading

from smash.errors import AllocatorSettingError

ENV = "SMASH_MALLOC_MMAP_THRESHOLD"
DEFAULT_THRESHOLD = 128 * 1024  # glibc's own starting value
M_MMAP_THRESHOLD = -3  # <malloc.h>
_MAX_THRESHOLD = 32 * 1024 * 1024  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
_lock = threading.Lock()
_held: int | None = None


def libc() -> ctypes.CDLL | None:
    """The C library, or None where it cannot be loaded."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def requested_threshold() -> int | None:
    """The threshold ``SMASH_MALLOC_MMAP_THRESHOLD`` asks for (default 128 KiB); None for ``off``."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in {"off", "0", "false", "no"}:
        return None
    if not value:
        return DEFAULT_THRESHOLD
    try:
        threshold = int(value)
    except ValueError:
        threshold = -1
    if not 0 < threshold <= _MAX_THRESHOLD:
        raise AllocatorSettingError(
            ENV, value, f"a size in bytes from 1 to {_MAX_THRESHOLD} (e.g. {DEFAULT_THRESHOLD}), or off"
        )
    return threshold


def hold_mmap_threshold() -> int | None:
    """Fix glibc's mmap threshold for this process (once); the value held, or None where it is not."""
    global _held
    with _lock:
        if _held is not None:
            return _held
        threshold = requested_threshold()
        if threshold is None or "MALLOC_MMAP_THRESHOLD_" in os.environ or platform.libc_ver()[0] != "glibc":
            return None
        mallopt = getattr(libc(), "mallopt", None)
        if mallopt is None or mallopt(M_MMAP_THRESHOLD, threshold) != 1:
            return None
        _held = threshold
        return threshold
