"""Per-layer work spread over threads, one torch thread each, instead of one layer at a time on all of them.

A quantizer's work on one layer is a chain of small tensor operations (a few hundred thousand weights
each). torch parallelizes each operation across its threads, and with ``OMP_WAIT_POLICY=PASSIVE`` (which
this project sets, because spinning threads slow a shared CPU) every parallel region has to wake sleeping
threads: on SmolLM2-135M's 210 layers, hqq 4-bit on 2 cores, one layer at a time took 2.8 s on 2 torch
threads and 1.9 s on 1, and two layers at a time on 1 thread each 1.4-1.7 s (the GIL, held between
operations, is what is left). Results are in input order, whatever order the layers finish in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_layers(
    work: Callable[[Item], Result], items: Iterable[Item], *, workers: int | None = None
) -> Iterator[Result]:
    """``work`` applied to each item, ``workers`` (default: torch's thread count) at a time, in order.

    Results are yielded as soon as they and all before them are done, so a caller that replaces each
    layer as its result arrives frees the originals as it goes. torch's thread count is 1 while the
    workers run (a new thread takes the process-wide count when it first runs an operation) and is
    restored afterwards. With one worker the items run here, on the caller's thread, unchanged.
    """
    count = workers or torch.get_num_threads()
    if count <= 1:
        yield from map(work, items)
        return
    with torch_threads(1), ThreadPoolExecutor(max_workers=count, thread_name_prefix="smash-layer") as pool:
        yield from pool.map(work, items)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's (process-wide) thread count set to ``count`` for the block, then restored; None: unchanged."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
