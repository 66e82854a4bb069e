"""How far decoding is from the memory-bandwidth bound.

Decoding one token of a small model at batch 1 reads every weight once and does little arithmetic per
byte, so its floor on a CPU is ``weight bytes read per token / read bandwidth``. Both are measured here
rather than assumed:

- ``weight_bytes_read_per_token``: one eager forward of a single token under a dispatch mode that records
  which of the model's parameter and buffer storages the operators actually take as inputs. Counting
  what runs, not what is resident, matters for quantized layers: they keep a packed copy for saving and a
  kernel layout for computing, and only the second is read. An embedding lookup reads one row, so its
  table is not counted (a tied output head reads the same storage in full, and is counted there).
- ``read_bandwidth``: the median rate of summing a buffer far larger than the CPU caches, with the
  threads torch is set to use, which is what the decode kernels get.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from smash.evaluation.timing import unwrap

_ROW_READS = frozenset({torch.ops.aten.embedding.default})


class _StorageReads(TorchDispatchMode):
    def __init__(self, watched: dict[int, int]) -> None:
        super().__init__()
        self.watched = watched
        self.read: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        leaves = tree_leaves((args, kwargs or {}))
        if func in _ROW_READS:
            leaves = leaves[1:]  # the table itself: only the looked-up rows are read
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                pointer = _storage_pointer(leaf)
                if pointer in self.watched:
                    self.read.add(pointer)
        return func(*args, **(kwargs or {}))


def _storage_pointer(tensor: torch.Tensor) -> int | None:
    try:
        return int(tensor.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # tensor subclasses without a plain storage
        return None


def weight_bytes_read_per_token(model: Any, token_id: int = 0) -> int:
    """Bytes of the model's parameters and buffers that one single-token forward reads (see module doc)."""
    module = unwrap(model)
    watched: dict[int, int] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        pointer = _storage_pointer(tensor)
        if pointer is not None and tensor.numel():
            watched[pointer] = tensor.untyped_storage().nbytes()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    ids = torch.full((1, 1), token_id, dtype=torch.long, device=device)
    recorder = _StorageReads(watched)
    with torch.no_grad(), recorder:
        type(module).forward(module, input_ids=ids, use_cache=False)  # the class's forward: eager, uncompiled
    return sum(watched[p] for p in recorder.read)


def read_bandwidth(megabytes: int = 512, repeats: int = 7) -> float:
    """Bytes per second a ``sum`` over a ``megabytes`` buffer reads, median of ``repeats`` timed passes."""
    buffer = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    buffer.sum()  # first touch: page faults are not bandwidth
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sum()
        seconds.append(time.perf_counter() - start)
    return buffer.numel() * 4 / statistics.median(seconds)
