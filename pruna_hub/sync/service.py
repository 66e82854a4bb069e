"""The sync service: schedule (discover and queue) and work (claim and run jobs), once or on an interval."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pruna_hub.errors import GateFailedError, JobsFailedError, QualityGateError
from pruna_hub.hub_client import HubClient, RetryPolicy
from pruna_hub.recipes import load_recipes
from pruna_hub.settings import Settings
from pruna_hub.sync.context import SyncContext, stderr_reporter
from pruna_hub.sync.discovery import Decision, discover
from pruna_hub.sync.job import JobOutcome

if TYPE_CHECKING:
    from pruna_hub.sync.executors import Executor


@dataclass
class SyncSummary:
    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[JobOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in [d.action for d in self.decisions] + [f"job_{o.state}" for o in self.outcomes]:
            counts[item] = counts.get(item, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "decisions": [d.to_dict() for d in self.decisions],
            "jobs": [o.to_dict() for o in self.outcomes],
        }


def open_dry_run(
    settings: Settings,
    *,
    report: Callable[[str], None] = stderr_reporter,
    retry: RetryPolicy | None = None,
) -> SyncContext:
    """A context for `sync --dry-run`, which changes nothing: the catalogue is read as it is (never created
    or migrated; a database behind the code is refused as usual), or, where there is none yet, an empty
    one in memory stands in, so every model is new."""
    from registry_db import Catalogue
    from registry_db.errors import CatalogueMissingError

    try:
        catalogue = Catalogue.open(settings.database_url, namespace=settings.namespace, read_only=True)
    except CatalogueMissingError:
        catalogue = Catalogue.open("sqlite://", namespace=settings.namespace)
    try:
        hub = HubClient(endpoint=settings.hub_endpoint, token=settings.token, retry=retry)
        book = load_recipes(settings.recipe_dirs)
        return SyncContext(settings, hub, catalogue, book, settings.resolved_device(), report=report)
    except BaseException:
        catalogue.dispose()
        raise


def failures(outcomes: list[JobOutcome]) -> JobsFailedError | None:
    """The error a run with failed jobs ends with (``GateFailedError`` when each failed on its quality
    gate), or None. A gate failure that handed its base to the next recipe of a tie is not one: the
    base is still being served."""

    def gate(outcome: JobOutcome) -> bool:
        return (outcome.error or "").startswith(f"{QualityGateError.__name__}:")

    failed = [o for o in outcomes if o.state == "failed"]
    counted = [o for o in failed if not (gate(o) and o.next_job_id is not None)]
    if not counted:
        return None
    ids = [o.job_id for o in counted]
    return GateFailedError(ids) if all(gate(o) for o in counted) else JobsFailedError(ids)


def sync_once(
    ctx: SyncContext,
    *,
    dry_run: bool = False,
    schedule: bool = True,
    run: bool = True,
    executor: Executor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SyncSummary:
    """One pass: discover and queue (``schedule``), then drain the runnable jobs (``run``)."""
    summary = SyncSummary()
    if schedule:
        summary.decisions = discover(ctx, dry_run=dry_run)
        for decision in summary.decisions:
            ctx.report(_describe(decision))
    if run and not dry_run:
        if executor is None:
            from pruna_hub.sync.executors import InProcessExecutor

            executor = InProcessExecutor()
        summary.outcomes = executor.drain(ctx, should_stop=should_stop)
    return summary


def watch(
    ctx: SyncContext,
    *,
    interval_s: float,
    should_stop: Callable[[], bool],
    schedule: bool = True,
    run: bool = True,
    executor: Executor | None = None,
) -> SyncSummary:
    """A pass every ``interval_s`` seconds until ``should_stop``; returns everything done.

    With ``schedule=False`` this is a worker: it only drains jobs that schedulers queued.
    """
    total = SyncSummary()
    while not should_stop():
        once = sync_once(ctx, schedule=schedule, run=run, executor=executor, should_stop=should_stop)
        total.decisions += once.decisions
        total.outcomes += once.outcomes
        deadline = time.monotonic() + interval_s
        while time.monotonic() < deadline and not should_stop():
            time.sleep(min(1.0, interval_s))
    return total


def _describe(decision: Decision) -> str:
    text = f"{decision.repo_id}@{decision.revision[:12]}: {decision.action}"
    if decision.recipe:
        text += f" with {decision.recipe}"
    if decision.reason:
        text += f" ({decision.reason}: {decision.detail})"
    elif decision.detail:
        text += f" ({decision.detail})"
    return text
