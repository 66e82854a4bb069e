"""determine_algorithm_order: declared constraints, typed errors naming the algorithms, determinism."""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
from _tiny import tiny_params

from smash import Registry, SmashConfig, determine_algorithm_order, registry
from smash.algorithms.base import Algorithm, Group
from smash.errors import GroupConflictError, IncompatibleAlgorithmsError, OrderingCycleError

# (earlier, later): pairs whose order the algorithms declare. Pairs with an unregistered member are skipped.
KNOWN_PAIRS = [
    ("magnitude_pruning", "hqq"),
    ("magnitude_pruning", "int8_weight"),
    ("half", "hqq"),
    ("half", "int8_weight"),
    ("hqq", "torch_compile"),
    ("int8_weight", "torch_compile"),
    ("half", "torch_compile"),
    ("magnitude_pruning", "torch_compile"),
    ("hqq", "static_cache"),
    ("static_cache", "torch_compile"),
]


def _config(*names: str) -> SmashConfig:
    return SmashConfig({n: tiny_params(n) for n in names})


@pytest.mark.parametrize(("earlier", "later"), KNOWN_PAIRS)
def test_known_pairs_come_out_in_order(earlier: str, later: str) -> None:
    if earlier not in registry or later not in registry:
        pytest.skip(f"{earlier} or {later} is not registered")
    assert determine_algorithm_order(_config(later, earlier)) == [earlier, later]


def test_a_full_recipe_orders_pruner_then_casts_then_quantizer() -> None:
    order = determine_algorithm_order(_config("hqq", "half", "magnitude_pruning"))
    assert order == ["magnitude_pruning", "half", "hqq"]


def test_order_is_the_same_whatever_the_insertion_order() -> None:
    optional = [n for n in ("torch_compile", "static_cache") if n in registry]
    names = ["hqq", "half", "magnitude_pruning", *optional]
    orders = {tuple(determine_algorithm_order(_config(*perm))) for perm in itertools.permutations(names)}
    assert len(orders) == 1


def test_two_quantizers_of_the_exclusive_group_conflict() -> None:
    with pytest.raises(GroupConflictError) as info:
        SmashConfig({"hqq": {}, "int8_weight": {}})
    assert str(info.value) == (
        "at most one quantizer may run, but the config asks for hqq, int8_weight; keep one of them."
    )
    assert info.value.algorithms == ("hqq", "int8_weight")


# --- test-only algorithms in a fresh registry ------------------------------------------------------------


def _make(name: str, group: Group, **declared: frozenset[str]) -> type[Algorithm]:
    attrs: dict[str, object] = {"name": name, "group": group, **declared}
    return type(f"Algo_{name}", (Algorithm,), attrs)


def _fresh(*classes: type[Algorithm]) -> Registry:
    fresh = Registry()
    for cls in classes:
        fresh.register(cls)
    return fresh


def test_an_incompatible_pair_is_rejected_naming_both() -> None:
    fresh = _fresh(
        _make("pruner_a", Group.PRUNER, incompatible_with=frozenset({"kernel_b"})),
        _make("kernel_b", Group.KERNEL),
        _make("cacher_c", Group.CACHER),
    )
    config = SmashConfig({"kernel_b": {}, "pruner_a": {}}, registry=fresh)
    with pytest.raises(IncompatibleAlgorithmsError) as info:
        determine_algorithm_order(config)
    assert "'kernel_b' and 'pruner_a' are incompatible" in str(info.value)
    assert set(info.value.algorithms) == {"pruner_a", "kernel_b"}
    assert determine_algorithm_order(SmashConfig({"pruner_a": {}, "cacher_c": {}}, registry=fresh))


def test_incompatibility_with_a_whole_group_is_declared_once() -> None:
    fresh = _fresh(
        _make("solo", Group.KERNEL, incompatible_with=frozenset({"group:compiler"})),
        _make("compiler_x", Group.COMPILER),
    )
    with pytest.raises(IncompatibleAlgorithmsError, match="compiler_x"):
        determine_algorithm_order(SmashConfig({"solo": {}, "compiler_x": {}}, registry=fresh))


def test_a_cycle_is_rejected_naming_its_members() -> None:
    fresh = _fresh(
        _make("a", Group.PRUNER, runs_before=frozenset({"b"})),
        _make("b", Group.QUANTIZER, runs_before=frozenset({"c"})),
        _make("c", Group.KERNEL, runs_before=frozenset({"a"})),
    )
    with pytest.raises(OrderingCycleError) as info:
        determine_algorithm_order(SmashConfig({"a": {}, "b": {}, "c": {}}, registry=fresh))
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert "the ordering constraints form a cycle" in str(info.value)
    for name in "abc":
        assert name in str(info.value)


def test_a_cycle_through_runs_after_is_found_too() -> None:
    fresh = _fresh(
        _make("x", Group.PRUNER, runs_after=frozenset({"group:kernel"})),
        _make("y", Group.KERNEL, runs_after=frozenset({"x"})),
    )
    with pytest.raises(OrderingCycleError, match=r"x|y"):
        determine_algorithm_order(SmashConfig({"x": {}, "y": {}}, registry=fresh))


def test_ties_break_by_group_then_name() -> None:
    classes: list[type[Algorithm]] = [
        _make("zeta", Group.PRUNER),
        _make("alpha", Group.COMPILER),
        _make("beta", Group.QUANTIZER),
        _make("gamma", Group.KERNEL),
    ]
    fresh = _fresh(*classes)
    config = SmashConfig({c.name: {} for c in classes}, registry=fresh)
    assert determine_algorithm_order(config) == ["zeta", "beta", "gamma", "alpha"]


def test_non_exclusive_members_compose_but_two_exclusive_ones_do_not() -> None:
    class Shared(Algorithm):
        name = "shared"
        group = Group.KERNEL
        exclusive: ClassVar[bool] = False

    fresh = _fresh(Shared, _make("k1", Group.KERNEL), _make("k2", Group.KERNEL))
    order = determine_algorithm_order(SmashConfig({"shared": {}, "k1": {}}, registry=fresh))
    assert order == ["k1", "shared"]
    with pytest.raises(GroupConflictError, match="k1, k2"):
        SmashConfig({"k1": {}, "k2": {}, "shared": {}}, registry=fresh)
