"""smash.parallel: layers quantized two at a time give the same model as one at a time, in order."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from smash import smash
from smash.parallel import map_layers, torch_threads


def test_results_come_in_input_order_from_several_threads_each_on_one_torch_thread() -> None:
    seen: dict[int, tuple[str, int]] = {}

    def work(index: int) -> int:
        seen[index] = (threading.current_thread().name, torch.get_num_threads())
        torch.ones(1 << 16).sum()  # a real op, so the thread's torch state is initialised
        return index * index

    with torch_threads(2):
        assert list(map_layers(work, range(40))) == [i * i for i in range(40)]
        assert torch.get_num_threads() == 2  # restored
    assert {threads for _, threads in seen.values()} == {1}
    assert all(name.startswith("smash-layer") for name, _ in seen.values())


def test_one_worker_runs_on_the_callers_thread() -> None:
    names = list(map_layers(lambda _: threading.current_thread().name, range(3), workers=1))
    assert names == [threading.current_thread().name] * 3


def test_an_error_in_one_item_reaches_the_caller_and_restores_the_thread_count() -> None:
    def work(index: int) -> int:
        if index == 5:
            raise ValueError("layer 5")
        return index

    with torch_threads(2):
        with pytest.raises(ValueError, match="layer 5"):
            list(map_layers(work, range(10)))
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("config", [{"hqq": {"weight_bits": 4}}, {"hqq": {"weight_bits": 3, "axis": 0}}])
def test_hqq_on_two_threads_writes_the_same_tensors_as_on_one(tiny_llama: nn.Module, config: dict) -> None:
    with torch_threads(1):
        one = smash(tiny_llama, config).model.state_dict()
    with torch_threads(2):
        two = smash(tiny_llama, config).model.state_dict()
    assert one.keys() == two.keys()
    assert all(torch.equal(one[key], two[key]) for key in one)
