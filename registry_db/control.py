"""Job control by hand (``pruna-hub jobs``): look at jobs, retry, requeue or cancel them, with an audit log.

What each action may do, and why:

- **retry**: ``failed -> queued`` with a new attempt budget (``attempts`` more tries from now: the job's
  ``max_attempts`` becomes its attempts so far plus that). The last error stays on the row until the next
  attempt replaces it, and in the log.
- **requeue**: ``skipped`` or ``discovered -> queued``: overrule a screening decision or undo a cancel. The
  skip reason is cleared (it stays in the log) and the job gets a new attempt budget like a retry.
- **cancel**: any job not finished (``discovered``, ``queued`` or leased) ``-> skipped``, reason
  ``cancelled by WHO: WHY``. A leased job's lease is cleared in the same UPDATE, so its worker loses the
  lease at its next transition (``LeaseLostError``: after smashing, after evaluating) and stops without
  publishing; once it has started publishing, the upload itself is not interrupted.

Every change is one compare-and-set UPDATE on (job id, the state read) plus one ``job_events`` row naming
who, when, why, the states before and after and the new budget; a job changed by someone else in between
is reported, not overwritten. Functions never commit: run them inside ``catalogue.session()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry_db.errors import CatalogueValueError, JobActionError, NotFoundError
from registry_db.jobs import DEFAULT_MAX_ATTEMPTS, parse_state
from registry_db.models import LEASED_STATES, BaseModel, Job, JobAction, JobEvent, JobState, Recipe, utcnow

MAX_LIMIT = 10_000
# action -> the states it may start from, and the state it leads to.
ALLOWED_FROM: dict[JobAction, frozenset[JobState]] = {
    JobAction.RETRY: frozenset({JobState.FAILED}),
    JobAction.REQUEUE: frozenset({JobState.SKIPPED, JobState.DISCOVERED}),
    JobAction.CANCEL: frozenset({JobState.DISCOVERED, JobState.QUEUED, *LEASED_STATES}),
}
LEADS_TO: dict[JobAction, JobState] = {
    JobAction.RETRY: JobState.QUEUED,
    JobAction.REQUEUE: JobState.QUEUED,
    JobAction.CANCEL: JobState.SKIPPED,
}


@dataclass(frozen=True)
class JobSelector:
    """Which jobs a command means: ``ids``, or every job of a base repo and/or in a state (at least one)."""

    namespace: str
    ids: tuple[int, ...] = ()
    base_repo: str | None = None
    state: str | None = None

    def describe(self) -> str:
        if self.ids:
            return "job " + ", ".join(str(i) for i in self.ids)
        parts = [
            f"state {self.state}" if self.state else "",
            f"base {self.base_repo}" if self.base_repo else "",
        ]
        return "jobs with " + " and ".join(p for p in parts if p)


@dataclass(frozen=True)
class EventRecord:
    job_id: int
    action: str
    from_state: str
    to_state: str
    actor: str
    reason: str
    max_attempts: int | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class JobRecord:
    """One job as `jobs list` and `jobs show` print it."""

    id: int
    state: str
    base_repo_id: str
    revision: str
    recipe: str
    recipe_hash: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime
    last_error_type: str | None
    last_error_message: str | None
    skip_reason: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    events: tuple[EventRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["events"] = [e.to_dict() for e in self.events]
        return data


def _record(job: Job, base: BaseModel, recipe: Recipe, events: Sequence[JobEvent] = ()) -> JobRecord:
    return JobRecord(
        job.id,
        job.state,
        base.repo_id,
        base.revision,
        recipe.name,
        recipe.content_hash,
        job.attempts,
        job.max_attempts,
        job.lease_owner,
        job.lease_expires_at,
        job.next_attempt_at,
        job.last_error_type,
        job.last_error_message,
        job.skip_reason,
        job.created_at,
        job.updated_at,
        job.finished_at,
        tuple(_event(e) for e in events),
    )


def _event(e: JobEvent) -> EventRecord:
    return EventRecord(
        e.job_id, e.action, e.from_state, e.to_state, e.actor, e.reason, e.max_attempts, e.created_at
    )


def _query(selector: JobSelector) -> Any:
    query = (
        select(Job, BaseModel, Recipe)
        .join(BaseModel, Job.base_model_id == BaseModel.id)
        .join(Recipe, Job.recipe_id == Recipe.id)
        .where(Job.namespace == selector.namespace)
    )
    if selector.ids:
        query = query.where(Job.id.in_(selector.ids))
    if selector.base_repo:
        query = query.where(BaseModel.repo_id == selector.base_repo)
    if selector.state:
        query = query.where(Job.state == parse_state(selector.state).value)
    return query


def list_jobs(session: Session, selector: JobSelector, *, limit: int = 50) -> list[JobRecord]:
    """Jobs matching ``selector``, newest first (no filter at all: the newest ``limit`` jobs)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise CatalogueValueError("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
    rows = session.execute(_query(selector).order_by(Job.id.desc()).limit(limit)).all()
    return [_record(job, base, recipe) for job, base, recipe in rows]


def show_job(session: Session, job_id: int, *, namespace: str) -> JobRecord:
    """One job with its whole manual-change log, oldest first."""
    row = session.execute(_query(JobSelector(namespace, ids=(job_id,)))).first()
    if row is None:
        raise NotFoundError("job", job_id, "List jobs with `pruna-hub jobs list`.")
    events = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.created_at, JobEvent.id)
    ).all()
    return _record(row.Job, row.BaseModel, row.Recipe, events)


def control_jobs(
    session: Session,
    action: JobAction | str,
    selector: JobSelector,
    *,
    actor: str,
    reason: str,
    attempts: int = DEFAULT_MAX_ATTEMPTS,
    now: datetime | None = None,
) -> list[EventRecord]:
    """Apply ``action`` to the selected jobs; returns one event per job changed.

    Named by id, every job must allow the action (else ``JobActionError``, and nothing is changed: the
    caller's transaction rolls back). Selected by base repo or state, only the jobs that allow it are
    changed. Nothing matched at all: ``NotFoundError``.
    """
    action = _parse_action(action)
    _check_inputs(selector, actor, reason, attempts)
    rows = session.execute(_query(selector).order_by(Job.id)).all()
    allowed = ALLOWED_FROM[action]
    if selector.ids:
        _check_named(selector, rows, action)
    jobs = [row.Job for row in rows if parse_state(row.Job.state) in allowed]
    if not jobs:
        states = ", ".join(sorted(s.value for s in allowed))
        raise NotFoundError(
            f"{states} job",
            selector.describe(),
            f"Only {states} jobs can be {_past(action)}; list them with `pruna-hub jobs list --state STATE`.",
        )
    now = now or utcnow()
    return [
        _apply(session, job, action, actor=actor, reason=reason, attempts=attempts, now=now) for job in jobs
    ]


def _parse_action(action: JobAction | str) -> JobAction:
    try:
        return JobAction(action)
    except ValueError:
        raise CatalogueValueError("action", action, [a.value for a in JobAction]) from None


def _check_inputs(selector: JobSelector, actor: str, reason: str, attempts: int) -> None:
    if not (selector.ids or selector.base_repo or selector.state):
        raise CatalogueValueError("selector", "nothing", "job ids, a base repo id or a state")
    if not actor.strip():
        raise CatalogueValueError("actor", actor, "who makes the change (a non-empty name)")
    if not reason.strip():
        raise CatalogueValueError("reason", reason, "why the change is made (a non-empty text)")
    if attempts < 1:
        raise CatalogueValueError("attempts", attempts, "an integer >= 1")


def _check_named(selector: JobSelector, rows: Sequence[Any], action: JobAction) -> None:
    found = {row.Job.id: row.Job.state for row in rows}
    for job_id in selector.ids:
        if job_id not in found:
            raise NotFoundError("job", job_id, "List jobs with `pruna-hub jobs list`.")
        if parse_state(found[job_id]) not in ALLOWED_FROM[action]:
            raise JobActionError(
                job_id, found[job_id], action.value, sorted(s.value for s in ALLOWED_FROM[action])
            )


def _past(action: JobAction) -> str:
    return {JobAction.RETRY: "retried", JobAction.REQUEUE: "requeued", JobAction.CANCEL: "cancelled"}[action]


def _apply(
    session: Session, job: Job, action: JobAction, *, actor: str, reason: str, attempts: int, now: datetime
) -> EventRecord:
    before = job.state
    target = LEADS_TO[action]
    values: dict[str, object] = {"state": target.value, "updated_at": now, "lease_owner": None}
    values["lease_expires_at"] = None
    budget: int | None = None
    if target is JobState.QUEUED:
        budget = job.attempts + attempts
        values |= {"max_attempts": budget, "next_attempt_at": now, "finished_at": None, "skip_reason": None}
    else:
        values |= {"finished_at": now, "skip_reason": f"cancelled by {actor}: {reason}"}
    result = session.execute(update(Job).where(Job.id == job.id, Job.state == before).values(**values))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = session.scalar(select(Job.state).where(Job.id == job.id)) or "gone"
        raise JobActionError(job.id, current, action.value, [before], changed_meanwhile=True)
    event = JobEvent(
        namespace=job.namespace,
        job_id=job.id,
        action=action.value,
        from_state=before,
        to_state=target.value,
        actor=actor,
        reason=reason,
        max_attempts=budget,
        created_at=now,
    )
    session.add(event)
    session.flush()
    return _event(event)


__all__ = [
    "ALLOWED_FROM",
    "EventRecord",
    "JobRecord",
    "JobSelector",
    "control_jobs",
    "list_jobs",
    "show_job",
]
