"""Summary statistics with stated definitions, so that a number in a report means one exact thing.

- ``std`` is the population standard deviation (divide by n): the runs measured are the whole sample
  the report talks about, and n = 1 gives 0 rather than undefined.
- ``p99`` is the linearly interpolated percentile between closest ranks (numpy's default ``linear``
  method): rank = 0.99 * (n - 1) in the sorted values.
- ``median`` interpolates the two middle values for even n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Stats:
    count: int
    mean: float
    median: float
    std: float
    min: float
    max: float
    p99: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stats:
        return cls(**{k: data[k] for k in ("count", "mean", "median", "std", "min", "max", "p99")})

    def scaled(self, factor: float) -> Stats:
        """The same statistics in another unit (seconds -> ms: 1000)."""
        return Stats(
            self.count, *(getattr(self, k) * factor for k in ("mean", "median", "std", "min", "max", "p99"))
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks; ``q`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> Stats | None:
    """Stats of ``values``; None for an empty sequence (nothing was measured)."""
    if not values:
        return None
    n = len(values)
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / n
    return Stats(
        count=n,
        mean=mean,
        median=percentile(values, 50),
        std=math.sqrt(variance),
        min=min(values),
        max=max(values),
        p99=percentile(values, 99),
    )


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys against xs (both at least two points, xs not all equal)."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("a slope needs at least two distinct x values")
    mx = math.fsum(xs) / len(xs)
    my = math.fsum(ys) / len(ys)
    num = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    den = math.fsum((x - mx) ** 2 for x in xs)
    return num / den
