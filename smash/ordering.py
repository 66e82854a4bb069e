"""determine_algorithm_order: the order in which a config's algorithms run, from their declarations alone.

Pure planning: no model is needed, so a recipe can be checked (and explained) before any job runs.
Constraints are edges of a DAG sorted with stdlib ``graphlib``; among algorithms that are ready together
the one of the earlier group (``Group`` declaration order), then the smaller name, runs first, so one
config always runs in one order.
"""

from __future__ import annotations

import graphlib
import heapq

from smash.algorithms.base import Algorithm, Group
from smash.config import SmashConfig
from smash.errors import IncompatibleAlgorithmsError, OrderingCycleError

_GROUP_RANK = {g: i for i, g in enumerate(Group)}


def _matches(ref: str, cls: type[Algorithm]) -> bool:
    if ref.startswith("group:"):
        return cls.group.value == ref[6:]
    return cls.name == ref


def _edges(classes: dict[str, type[Algorithm]]) -> set[tuple[str, str]]:
    """(earlier, later) pairs from both sides' declarations."""
    edges: set[tuple[str, str]] = set()
    for a, cls_a in classes.items():
        for b, cls_b in classes.items():
            if a == b:
                continue
            if any(_matches(r, cls_b) for r in cls_a.runs_before):
                edges.add((a, b))
            if any(_matches(r, cls_b) for r in cls_a.runs_after):
                edges.add((b, a))
    return edges


def check_compatibility(classes: dict[str, type[Algorithm]]) -> None:
    names = sorted(classes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if any(_matches(r, classes[b]) for r in classes[a].incompatible_with) or any(
                _matches(r, classes[a]) for r in classes[b].incompatible_with
            ):
                raise IncompatibleAlgorithmsError(a, b)


def determine_algorithm_order(config: SmashConfig) -> list[str]:
    """Names of the config's algorithms in the order they must be applied."""
    classes = {name: config.registry.get(name) for name in config}
    check_compatibility(classes)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in classes:
        sorter.add(name)
    for earlier, later in _edges(classes):
        sorter.add(later, earlier)
    try:
        sorter.prepare()
    except graphlib.CycleError as e:
        raise OrderingCycleError(list(e.args[1])) from e
    order: list[str] = []
    heap: list[tuple[int, str]] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(heap, (_GROUP_RANK[classes[name].group], name))
        _, name = heapq.heappop(heap)
        order.append(name)
        sorter.done(name)
    return order
