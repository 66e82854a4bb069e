"""Bad input: every typed error the engine raises for it, with its message checked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from _tiny import input_ids, logits
from torch import nn

from smash import Registry, SmashConfig, registry, smash
from smash.algorithms.base import Algorithm, Group, SmashContext
from smash.errors import (
    AlgorithmFailedError,
    ConfigFormatError,
    GroupConflictError,
    HyperparameterError,
    NotApplicableError,
    UnknownAlgorithmError,
)


def test_unknown_algorithm_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownAlgorithmError) as info:
        SmashConfig({"hqq": {}, "turbo": {}})
    assert str(info.value) == (
        f"unknown algorithm 'turbo'; registered algorithms are: {', '.join(registry.names())}. "
        "Use one of those names, or register a plugin under the 'smash.algorithms' entry point."
    )
    assert isinstance(info.value, ValueError)


def test_unknown_hyperparameter_lists_the_known_ones() -> None:
    with pytest.raises(HyperparameterError) as info:
        SmashConfig({"hqq": {"bits": 4}})
    known = ", ".join(sorted(h.name for h in registry.get("hqq").hyperparameters))
    assert str(info.value) == f"hqq.bits = 4 is not valid: known hyperparameters are {known}."
    assert (info.value.algorithm, info.value.field, info.value.value) == ("hqq", "bits", 4)


@pytest.mark.parametrize(
    ("algorithm", "field", "value", "allowed"),
    [
        ("hqq", "weight_bits", "4", "one of 2, 3, 4, 8"),
        ("hqq", "weight_bits", 5, "one of 2, 3, 4, 8"),
        ("hqq", "optimizer_iterations", True, "an integer in [0, 200]"),
        ("hqq", "optimizer_iterations", 201, "an integer in [0, 200]"),
        ("hqq", "use_kernel", 1, "a boolean"),
        ("magnitude_pruning", "sparsity", "half", "a number in [0.0, 0.99]"),
        ("magnitude_pruning", "sparsity", 1.5, "a number in [0.0, 0.99]"),
        ("magnitude_pruning", "sparsity", None, "a number in [0.0, 0.99]"),
        ("half", "dtype", "float8", "one of 'float16', 'bfloat16'"),
    ],
)
def test_wrong_type_and_out_of_range_values(algorithm: str, field: str, value: Any, allowed: str) -> None:
    with pytest.raises(HyperparameterError) as info:
        SmashConfig({algorithm: {field: value}})
    assert str(info.value) == f"{algorithm}.{field} = {value!r} is not valid: {allowed}."
    assert info.value.allowed == allowed


def test_two_algorithms_of_one_exclusive_group() -> None:
    expected = r"^at most one quantizer may run, but the config asks for hqq, int8_weight"
    with pytest.raises(GroupConflictError, match=expected):
        SmashConfig({"int8_weight": {}, "hqq": {"weight_bits": 8}})


def test_hyperparameters_must_be_a_mapping() -> None:
    with pytest.raises(ConfigFormatError, match=r"hyperparameters of 'hqq' must be a mapping, got list"):
        SmashConfig({"hqq": [4, 64]})  # type: ignore[dict-item]


def test_wrong_format_version() -> None:
    text = json.dumps({"format_version": 2, "algorithms": {"hqq": {}}})
    with pytest.raises(ConfigFormatError) as info:
        SmashConfig.from_json(text)
    assert str(info.value) == (
        "SmashConfig format_version 2 is not supported; this smash reads version 1. "
        "Upgrade smash, or re-create the config."
    )


def test_missing_format_version_is_refused_too() -> None:
    with pytest.raises(ConfigFormatError, match="format_version None is not supported"):
        SmashConfig.from_dict({"algorithms": {}})


def test_unexpected_field() -> None:
    data = {"format_version": 1, "algorithms": {}, "module": "os.system"}
    with pytest.raises(ConfigFormatError) as info:
        SmashConfig.from_dict(data)
    assert str(info.value) == "unexpected field(s) module in SmashConfig; allowed: format_version, algorithms"


def test_not_json_at_all() -> None:
    with pytest.raises(ConfigFormatError, match="SmashConfig is not valid JSON"):
        SmashConfig.from_json("{algorithms: hqq")


def test_algorithm_that_does_not_apply_says_why() -> None:
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(NotApplicableError) as info:
        smash(model, {"hqq": {}})
    assert str(info.value).startswith("algorithm 'hqq' does not apply: no nn.Linear layer whose weight count")
    assert info.value.algorithm == "hqq"


# --- an algorithm failing midway ----------------------------------------------------------------------------


class DoubleWeights(Algorithm):
    """Modifies the model, so that a failure after it would leave a half-smashed model behind."""

    name = "double_weights"
    group = Group.PRUNER

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(2)
        return model


class Explode(Algorithm):
    name = "explode"
    group = Group.QUANTIZER
    runs_after = frozenset({"double_weights"})

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        raise RuntimeError("kernel not available")


class CudaOnly(Algorithm):
    name = "cuda_only"
    group = Group.KERNEL
    devices = frozenset({"cuda"})


def _failing_config() -> SmashConfig:
    fresh = Registry()
    for cls in (DoubleWeights, Explode, CudaOnly):
        fresh.register(cls)
    return SmashConfig({"explode": {}, "double_weights": {}}, registry=fresh)


def test_failure_midway_leaves_the_input_usable_by_default(tiny_llama: nn.Module) -> None:
    ids = input_ids()
    before = logits(tiny_llama, ids)
    with pytest.raises(AlgorithmFailedError) as info:
        smash(tiny_llama, _failing_config())
    assert str(info.value) == (
        "algorithm 'explode' failed: RuntimeError('kernel not available'); the input model is unchanged."
    )
    assert info.value.input_modified is False
    assert isinstance(info.value.__cause__, RuntimeError)
    assert torch.equal(logits(tiny_llama, ids), before)


def test_failure_midway_in_place_says_the_input_was_modified(tiny_llama: nn.Module) -> None:
    ids = input_ids()
    before = logits(tiny_llama, ids)
    with pytest.raises(AlgorithmFailedError) as info:
        smash(tiny_llama, _failing_config(), inplace=True)
    assert info.value.input_modified is True
    warning = "the input model was smashed in place and is now partially modified: reload it before reuse"
    assert warning in str(info.value)
    assert not torch.equal(logits(tiny_llama, ids), before)  # what the error warned about really happened


def test_an_algorithm_for_another_device_is_refused_before_anything_runs(tiny_llama: nn.Module) -> None:
    config = SmashConfig({"cuda_only": {}, "double_weights": {}}, registry=_failing_config().registry)
    weight = tiny_llama.model.layers[0].mlp.up_proj.weight.detach().clone()
    expected = r"^algorithm 'cuda_only' does not apply: it runs on cuda, not on cpu"
    with pytest.raises(NotApplicableError, match=expected):
        smash(tiny_llama, config, inplace=True)
    assert torch.equal(tiny_llama.model.layers[0].mlp.up_proj.weight, weight)
