"""Peak memory of one run, isolated from model construction and from earlier runs.

CUDA: the caching allocator's own statistics. ``torch.cuda.reset_peak_memory_stats`` at run start, then
``max_memory_allocated`` minus ``memory_allocated`` at run start is what the run added on top of what was
already resident (weights, both models' if both are on the GPU).

CPU: the kernel's resident-set accounting for this process (Linux ``/proc``). The run's increase is its
peak resident size minus the resident size at run start. Three things keep earlier activity out:
1. ``gc.collect()`` and glibc ``malloc_trim(0)`` before the run hand memory freed by earlier runs back
   to the kernel; otherwise a run could reuse it without its RSS growing and look free.
2. The high-water mark ``VmHWM`` is reset to the current RSS by writing ``5`` to
   ``/proc/self/clear_refs`` (Linux >= 4.0), so it records the peak of this run only; it is read from
   ``/proc/self/status`` at the end. This catches peaks between any two samples.
3. Where clear_refs is not writable, a background thread samples ``/proc/self/statm`` every millisecond
   instead (it can miss peaks shorter than the interval; the report names the method used).
The increase is attributed to the model under test: the report's peak memory is the model's weight bytes
plus this increase, which on CUDA and CPU alike leaves out the other model and the Python runtime.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
import threading
import time
from types import TracebackType

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATUS = "/proc/self/status"


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()


def release_freed_memory() -> None:
    """Collect garbage and return freed heap pages to the kernel (glibc only; a no-op elsewhere)."""
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def high_water_mark() -> int | None:
    """This process's peak RSS in bytes since it started or since ``reset_high_water_mark`` (VmHWM)."""
    return _status_kib("VmHWM")


def reset_high_water_mark() -> bool:
    """Reset VmHWM to the current RSS; False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = high_water_mark(), current_rss()
    return hwm is not None and rss is not None and hwm <= rss + 64 * _PAGE


def cpu_method() -> str:
    """The CPU method this machine supports, checked once per process."""
    global _CPU_METHOD
    if _CPU_METHOD is None:
        if reset_high_water_mark():
            _CPU_METHOD = "rss_hwm"
        elif current_rss() is not None:
            _CPU_METHOD = "rss_sampling"
        else:
            _CPU_METHOD = "unavailable"
    return _CPU_METHOD


_CPU_METHOD: str | None = None


class _Sampler(threading.Thread):
    def __init__(self, interval_s: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peak = current_rss() or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, current_rss() or 0)
            time.sleep(self.interval_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, current_rss() or 0)


class PeakMemoryMeter:
    """Context manager: ``increase_bytes`` is the run's peak minus what was resident at its start."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "cuda_allocator" if device.type == "cuda" else cpu_method()
        self.baseline: int | None = None
        self.peak: int | None = None
        self._sampler: _Sampler | None = None

    @property
    def increase_bytes(self) -> int | None:
        if self.peak is None or self.baseline is None:
            return None
        return max(0, self.peak - self.baseline)

    def __enter__(self) -> PeakMemoryMeter:
        release_freed_memory()
        if self.method == "cuda_allocator":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        elif self.method == "rss_hwm":
            reset_high_water_mark()
            self.baseline = current_rss()
        elif self.method == "rss_sampling":
            self.baseline = current_rss()
            self._sampler = _Sampler()
            self._sampler.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.method == "cuda_allocator":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "rss_hwm":
            self.peak = high_water_mark()
        elif self._sampler is not None:
            self.peak = self._sampler.stop()
