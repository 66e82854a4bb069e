"""Prometheus metrics of the service, each named once in ``SPECS``, and a collector over the catalogue.

Two kinds, kept apart on purpose:

- what a process measures as it works (step durations, Hub errors, finished jobs, discovery passes) lives
  in this module's ``REGISTRY``; the sync service and workers call the small functions below, and expose
  the registry with ``start_metrics_server`` (or any server that renders ``REGISTRY``);
- what the catalogue knows (jobs by state, the last discovery pass) is read at scrape time by
  ``CatalogueCollector``, so any process holding the catalogue (the web UI, a worker) reports the same
  numbers without counting anything itself.

Where the service calls them:

| call | where |
|---|---|
| ``time_step("discover")`` | around one discovery pass (``sync/discovery.py``), then ``discovery_pass()`` |
| ``time_step(step)``, step smash, evaluate, publish or verify | around each step of ``sync/job.py`` |
| ``hub_error(error)`` | wherever a ``pruna_hub.errors.HubError`` is raised or caught (``hub_client.py``) |
| ``job_finished(state)`` | after ``complete_job`` / ``fail_job`` / ``skip_job`` commit (``sync/job.py``) |
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STEPS = ("discover", "smash", "evaluate", "publish", "verify")
# Seconds: a discovery pass or a small publish takes seconds; smashing and evaluating a model minutes.
_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "pruna_hub_step_duration_seconds",
        "histogram",
        "Wall time of one step of the pipeline (discover, smash, evaluate, publish, verify)",
        ("step", "outcome"),
    ),
    MetricSpec("pruna_hub_hub_errors_total", "counter", "Errors from the Hub, by kind", ("kind",)),
    MetricSpec(
        "pruna_hub_jobs_finished_total", "counter", "Jobs this process finished, by state", ("state",)
    ),
    MetricSpec("pruna_hub_discovery_passes_total", "counter", "Discovery passes this process completed"),
    MetricSpec(
        "pruna_hub_discovery_last_pass_timestamp_seconds",
        "gauge",
        "Unix time of the last discovery pass this process completed",
    ),
)
# Read from the catalogue at scrape time by CatalogueCollector.
CATALOGUE_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "pruna_hub_catalogue_up", "gauge", "1 when the catalogue answered and is at the code's schema"
    ),
    MetricSpec("pruna_hub_jobs", "gauge", "Jobs in the catalogue, by state", ("state",)),
    MetricSpec(
        "pruna_hub_catalogue_last_discovery_timestamp_seconds",
        "gauge",
        "Unix time of the last discovery pass recorded in the catalogue (newest base model check)",
    ),
)

REGISTRY = CollectorRegistry()
_KINDS: dict[str, type[Any]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def _build(spec: MetricSpec) -> Any:
    extra: dict[str, Any] = {"buckets": _DURATION_BUCKETS} if spec.kind == "histogram" else {}
    return _KINDS[spec.kind](spec.name, spec.help, spec.labels, registry=REGISTRY, **extra)


_METRICS: dict[str, Any] = {spec.name: _build(spec) for spec in SPECS}


def observe_step(step: str, seconds: float, *, outcome: str = "ok") -> None:
    """Record how long one step took; ``outcome`` is ok or error."""
    if step not in STEPS:
        raise ValueError(f"step {step!r} is not one of {', '.join(STEPS)}; add it to STEPS first")
    _METRICS["pruna_hub_step_duration_seconds"].labels(step=step, outcome=outcome).observe(seconds)


@contextlib.contextmanager
def time_step(step: str) -> Iterator[None]:
    """Time the block as ``step``; an exception is recorded as outcome=error and raised again."""
    start = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        observe_step(step, time.perf_counter() - start, outcome=outcome)


def error_kind(error: BaseException | str) -> str:
    """``HubRateLimitedError`` -> ``rate_limited``; a string is taken as the kind itself."""
    if isinstance(error, str):
        return error
    name = type(error).__name__.removeprefix("Hub").removesuffix("Error") or type(error).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def hub_error(error: BaseException | str) -> None:
    _METRICS["pruna_hub_hub_errors_total"].labels(kind=error_kind(error)).inc()


def job_finished(state: str) -> None:
    _METRICS["pruna_hub_jobs_finished_total"].labels(state=state).inc()


def discovery_pass(at: datetime | None = None) -> None:
    """A discovery pass finished (at ``at``, default now)."""
    _METRICS["pruna_hub_discovery_passes_total"].inc()
    _METRICS["pruna_hub_discovery_last_pass_timestamp_seconds"].set(at.timestamp() if at else time.time())


def start_metrics_server(port: int, *, addr: str = "127.0.0.1") -> None:
    """Serve ``REGISTRY`` on http://addr:port/metrics from a daemon thread (for the watcher and workers)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


@dataclass(frozen=True)
class CatalogueSnapshot:
    jobs_by_state: dict[str, int]
    last_discovery_at: datetime | None


class CatalogueCollector(Collector):
    """Reads the catalogue at each scrape; a catalogue that does not answer reports up=0, not a 500."""

    def __init__(self, read: Callable[[], CatalogueSnapshot]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        up, jobs, last = CATALOGUE_SPECS
        try:
            snapshot = self._read()
        except Exception:  # the scrape reports the outage; /healthz says why
            yield GaugeMetricFamily(up.name, up.help, value=0)
            return
        yield GaugeMetricFamily(up.name, up.help, value=1)
        family = GaugeMetricFamily(jobs.name, jobs.help, labels=list(jobs.labels))
        for state, count in sorted(snapshot.jobs_by_state.items()):
            family.add_metric([state], count)
        yield family
        if snapshot.last_discovery_at is not None:
            yield GaugeMetricFamily(last.name, last.help, value=snapshot.last_discovery_at.timestamp())


class _Forward(Collector):
    """Another registry's metrics, so one scrape shows the process metrics beside the catalogue's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def scrape_registry(read: Callable[[], CatalogueSnapshot]) -> CollectorRegistry:
    """A registry with the catalogue's metrics and this process's ``REGISTRY``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogueCollector(read))
    registry.register(_Forward(REGISTRY))
    return registry
