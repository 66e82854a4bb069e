"""SmashConfig: defaults, validation and the JSON round trip, for every registered algorithm."""

from __future__ import annotations

import json

import pytest
from _tiny import ALGORITHMS, tiny_params

from smash import SmashConfig, registry
from smash.config import FORMAT_VERSION


@pytest.mark.parametrize("name", ALGORITHMS)
def test_defaults_are_filled_in(name: str) -> None:
    config = SmashConfig({name: {}})
    assert dict(config[name]) == registry.get(name).defaults()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_json_round_trip(name: str) -> None:
    config = SmashConfig({name: tiny_params(name)})
    text = config.to_json()
    again = SmashConfig.from_json(text)
    assert again == config
    assert again.to_json() == text
    assert json.loads(text)["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_hyperparameter_is_documented_and_its_default_valid(name: str) -> None:
    cls = registry.get(name)
    assert cls.description, f"{name} has no description"
    for hp in cls.hyperparameters:
        assert hp.doc.strip(), f"{name}.{hp.name} has no doc"
        assert hp.validate(name, hp.default) == hp.default


def test_explicit_values_override_defaults_and_ints_widen_to_floats() -> None:
    config = SmashConfig({"hqq": {"weight_bits": 8, "group_size": 32}, "magnitude_pruning": {"sparsity": 0}})
    assert config["hqq"]["weight_bits"] == 8
    assert config["hqq"]["group_size"] == 32
    assert config["hqq"]["axis"] == 1
    sparsity = config["magnitude_pruning"]["sparsity"]
    assert sparsity == 0.0 and isinstance(sparsity, float)


def test_config_is_immutable_and_hashable() -> None:
    config = SmashConfig({"hqq": {}})
    with pytest.raises(TypeError):
        config["hqq"]["weight_bits"] = 2  # type: ignore[index]
    assert hash(config) == hash(SmashConfig({"hqq": {"weight_bits": 4}}))
    assert config != SmashConfig({"hqq": {"weight_bits": 8}})


def test_serialized_form_is_sorted_so_equal_configs_serialize_identically() -> None:
    one = SmashConfig({"magnitude_pruning": {}, "half": {}})
    two = SmashConfig({"half": {}, "magnitude_pruning": {}})
    assert one.to_json() == two.to_json()
    assert list(one) == ["half", "magnitude_pruning"]


def test_half_composes_with_a_weight_quantizer() -> None:
    config = SmashConfig({"half": {"dtype": "bfloat16"}, "hqq": {"compute_dtype": "bfloat16"}})
    assert set(config) == {"half", "hqq"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_hyperparameter_must_be_finite(value: float) -> None:
    """NaN compares false with every bound, so a range check alone let it through."""
    from smash.errors import HyperparameterError

    with pytest.raises(HyperparameterError, match=r"magnitude_pruning\.sparsity.*finite"):
        SmashConfig({"magnitude_pruning": {"sparsity": value}})
