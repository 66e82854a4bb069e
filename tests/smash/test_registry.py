"""The algorithm registry: strict names, declarations checked at registration, misses that list names."""

from __future__ import annotations

from typing import ClassVar

import pytest

from smash import Registry, registry
from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode
from smash.errors import AlgorithmDefinitionError, DuplicateAlgorithmError, UnknownAlgorithmError

REQUIRED = {"half", "hqq", "int8_weight", "magnitude_pruning"}


def test_builtins_are_registered_sorted() -> None:
    names = registry.names()
    assert set(names) >= REQUIRED
    assert names == sorted(names)
    assert len(registry) == len(names)


@pytest.mark.parametrize("name", registry.names())
def test_each_algorithm_declares_what_the_engine_needs(name: str) -> None:
    cls = registry.get(name)
    assert cls.name == name
    assert isinstance(cls.group, Group)
    assert isinstance(cls.save_mode, SaveMode)
    assert cls.devices and cls.devices <= {"cpu", "cuda", "mps"}


def test_quantizers_are_in_the_quantizer_group() -> None:
    assert {"half", "hqq", "int8_weight"} <= set(registry.in_group(Group.QUANTIZER))
    assert registry.get("magnitude_pruning").group is Group.PRUNER


def test_a_miss_lists_what_is_registered() -> None:
    with pytest.raises(UnknownAlgorithmError) as info:
        registry.get("hqq_typo")
    message = str(info.value)
    assert "'hqq_typo'" in message
    for name in registry.names():
        assert name in message
    assert isinstance(info.value, LookupError) and isinstance(info.value, ValueError)


def _algorithm(algo_name: str, algo_group: Group = Group.PRUNER) -> type[Algorithm]:
    class TestOnly(Algorithm):
        name = algo_name
        group = algo_group

    return TestOnly


def test_duplicate_registration_is_rejected_naming_both_classes() -> None:
    fresh = Registry()
    fresh.register(_algorithm("alpha"))
    with pytest.raises(DuplicateAlgorithmError, match=r"'alpha' is already registered by .*TestOnly"):
        fresh.register(_algorithm("alpha"))
    assert fresh.names() == ["alpha"]


def test_registering_the_same_class_twice_is_idempotent() -> None:
    fresh = Registry()
    cls = _algorithm("alpha")
    fresh.register(cls)
    fresh.register(cls)
    assert len(fresh) == 1


def test_a_fresh_registry_is_empty_and_separate_from_the_global_one() -> None:
    fresh = Registry()
    fresh.register(_algorithm("only_here"))
    assert "only_here" in fresh
    assert "only_here" not in registry
    assert "hqq" not in fresh


def test_bad_declarations_are_rejected_at_registration() -> None:
    class BadGroup(Algorithm):
        name = "bad_group"
        group = "pruner"  # type: ignore[assignment]

    class BadDefault(Algorithm):
        name = "bad_default"
        group = Group.PRUNER
        hyperparameters: ClassVar = (Hyperparameter("bits", int, 9, "bits", choices=(4, 8)),)

    class BadRef(Algorithm):
        name = "bad_ref"
        group = Group.PRUNER
        runs_before = frozenset({"group:nonsense"})

    fresh = Registry()
    with pytest.raises(AlgorithmDefinitionError, match="group"):
        fresh.register(BadGroup)
    with pytest.raises(ValueError, match=r"bad_default\.bits = 9"):
        fresh.register(BadDefault)
    with pytest.raises(AlgorithmDefinitionError, match="group:nonsense"):
        fresh.register(BadRef)
    assert len(fresh) == 0
