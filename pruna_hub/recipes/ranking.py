"""Deciding a ``rank_by`` tie by measuring each recipe on the host that runs the sync.

Recipes tied at one priority, each with ``rank_by = "decode_latency"``, are all acceptable to their
author. Each keeps its own quality gate. Which one decodes fastest depends on the CPU. On SmolLM2-135M,
``benchmarks/article_table.py`` measured (2-core VMs, compiled decode medians):
- llama-cpu-hqq8 24.8 ms against 34.5 ms for llama-cpu-int8 on one host;
- 58.6 against 44.2 ms on an AVX2-only host, where torch's int4 kernel, which 8-bit hqq runs on, was
  2.5x slower than the int8 kernel on the same layer.
So no fixed priority is right everywhere.

What is measured: each candidate recipe exactly as written (its whole SmashConfig, ``torch_compile``
included), applied to a model of the new model's architecture. The model is built from its config.json
with random weights: decode speed depends on shapes, dtypes and kernels, not on weight values. So only
config.json is downloaded at discovery, and the fine-tunes of one base share one measurement. The timed
quantity is the median decode-step latency over a few generations (``smash.evaluation.measure_efficiency``),
the candidates timed in turns after all are smashed, so a machine that drifts during the smashes slows
each of them alike (``ModelSteps.time_decode``).

Measurements are kept in a JSON file, keyed by three things:
- the host: ``smash.evaluation``'s environment (CPU model, cores, threads, OMP_WAIT_POLICY, library
  versions, CUDA device) plus the CPU's instruction-set flags;
- the model's shape: its config without names and token ids;
- the recipe's content hash.
A change to any of them measures again. ``pruna-hub recipes rank --fresh`` measures again on demand.

Choice: the fastest. Candidates within ``TIE_MARGIN`` of it count as equally fast, and the first of
those by name wins, so run-to-run noise does not flip a decision. A candidate that cannot be smashed for
this model (an algorithm does not apply, the config cannot be built) is left out, with its reason
recorded. If none can be measured, the tie is broken by name, and the job reports the error.

Speed is measured on random weights, quality only on the real ones: when the chosen recipe fails its
quality gate on a model, its job fails with the numbers, and the next recipe of the tie, ranked the same
way among those not tried yet, is queued for the same base revision (``pruna_hub.sync.fallback``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from pruna_hub.errors import RankingError
from pruna_hub.recipes.recipe import Recipe
from pruna_hub.settings import data_dir

logger = logging.getLogger(__name__)

TIE_MARGIN = 0.03
STORE_FORMAT = 1
# Config keys that name or tokenize but never change the computation.
_IDENTITY_KEYS = frozenset(
    {"_name_or_path", "name_or_path", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id"}
)
_ISA_FLAG = re.compile(r"^(avx|amx|fma|f16c|sse4|vnni)")

# (model config, recipes) -> (median decode-step seconds by recipe name, why a recipe could not be timed
# by name); raises RankingError when no recipe can be timed on this config.
Measure = Callable[[Mapping[str, Any], Sequence[Recipe]], tuple[Mapping[str, float], Mapping[str, str]]]


@dataclass(frozen=True)
class RecipeTiming:
    """One candidate's measurement: ``decode_ms``, or ``error`` when it could not be smashed and timed."""

    recipe: str
    decode_ms: float | None
    measured_at: str
    error: str | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_store_path() -> Path:
    return data_dir() / "recipe-timings.json"


def host_description(device: str) -> dict[str, Any]:
    """What decode speed depends on besides the model and recipe: the evaluation's own environment
    (processor, cores, threads, OMP_WAIT_POLICY, library versions, CUDA device) plus the CPU's
    instruction sets and torch's CPU capability."""
    import torch

    from smash.evaluation import Settings
    from smash.evaluation.evaluate import environment

    return {
        **environment(Settings(device=device)),
        "isa": _isa_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
    }


def _isa_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return sorted(flag for flag in value.split() if _ISA_FLAG.match(flag))
    except OSError:
        pass
    return []


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shape_key(model_config: Mapping[str, Any]) -> str:
    """The same for every model whose config differs only in names and token ids."""
    return _digest({k: v for k, v in model_config.items() if k not in _IDENTITY_KEYS})


class TimingStore:
    """The measurements of one or more hosts in a JSON file, shared safely by processes on this host."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_store_path()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            # A cache: what it held is measured again, and the next write replaces the file.
            logger.warning("the recipe timing store %s cannot be read (%s); measuring again", self.path, e)
            return {}
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            return {}  # another format: measured again, then rewritten
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, keys: Sequence[str]) -> dict[str, RecipeTiming]:
        """The stored timings of those ``keys`` that have one (one read of the file)."""
        entries = self._read()
        found = {}
        for key in keys:
            entry = entries.get(key)
            if not isinstance(entry, dict):
                continue
            try:
                found[key] = RecipeTiming(**{k: v for k, v in entry.items() if k != "host"}, cached=True)
            except TypeError:  # an entry of another shape: measured again
                continue
        return found

    def put(self, timings: Mapping[str, RecipeTiming], *, host: Mapping[str, Any]) -> None:
        """Store timings by key in one write; a store that cannot be written is logged, not raised (the
        decision stands, and the next sync measures again)."""
        new = {
            key: {k: v for k, v in timing.to_dict().items() if k != "cached"} | {"host": dict(host)}
            for key, timing in timings.items()
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path) + ".lock"):
                entries = self._read() | new
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text(json.dumps({"format": STORE_FORMAT, "entries": entries}, indent=1))
                temporary.replace(self.path)
        except OSError as e:
            logger.warning("the recipe timing store %s cannot be written (%s); not kept", self.path, e)


def rank(
    recipes: Sequence[Recipe],
    model_config: Mapping[str, Any],
    *,
    measure: Measure,
    store: TimingStore,
    device: str,
    fresh: bool = False,
) -> list[RecipeTiming]:
    """Each recipe's timing on this host, in the order given: from the store unless ``fresh``, the rest
    measured together (in turns) and stored."""
    host = host_description(device)
    prefix = f"{_digest(host)}/{shape_key(model_config)}"
    keys = {r.name: f"{prefix}/{r.content_hash}" for r in recipes}
    stored = {} if fresh else store.get(list(keys.values()))
    timings = {name: stored[key] for name, key in keys.items() if key in stored}
    missing = [r for r in recipes if r.name not in timings]
    if missing:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            seconds, errors = measure(model_config, missing)
        except RankingError as e:
            seconds, errors = {}, {r.name: f"{type(e).__name__}: {e}" for r in missing}
        for recipe in missing:
            ms = seconds.get(recipe.name)
            error = errors.get(recipe.name, "not timed") if ms is None else None
            timings[recipe.name] = RecipeTiming(
                recipe.name, None if ms is None else round(ms * 1e3, 3), now, error
            )
        store.put({keys[r.name]: timings[r.name] for r in missing}, host=host)
    return [timings[r.name] for r in recipes]


def choose(recipes: Sequence[Recipe], timings: Sequence[RecipeTiming]) -> Recipe:
    """The fastest measured recipe; within ``TIE_MARGIN`` of it, the first by name; none measured: the
    first by name."""
    by_name = sorted(recipes, key=lambda r: r.name)
    measured = {t.recipe: t.decode_ms for t in timings if t.decode_ms is not None}
    if not measured:
        return by_name[0]
    fastest = min(measured.values())
    return next(r for r in by_name if r.name in measured and measured[r.name] <= fastest * (1 + TIE_MARGIN))


def describe(chosen: Recipe, timings: Sequence[RecipeTiming]) -> str:
    """One line for the sync's report and the discovery decision."""
    parts = [
        f"{t.recipe} {t.decode_ms:.1f} ms" if t.decode_ms is not None else f"{t.recipe} failed ({t.error})"
        for t in timings
    ]
    return f"{chosen.name} by decode latency on this host: {', '.join(parts)}"


def untimed(recipes: Sequence[Recipe]) -> tuple[Recipe, str]:
    """What a dry run says of a tie instead of timing it (nothing smashed, compiled or stored): the first
    recipe by name, which ``choose`` also falls back to, and "would time A against B"."""
    by_name = sorted(recipes, key=lambda r: r.name)
    names = [r.name for r in by_name]
    return by_name[
        0
    ], f"would time {', '.join(names[:-1])} against {names[-1]} by decode latency on this host"
