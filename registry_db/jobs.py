"""Smash jobs: created once per (base revision, recipe), claimed under a lease, finished exactly once.

The state machine::

    discovered -> queued -> running -> smashed -> benchmarked -> published
                     ^         |  (under a lease; any leased state may fail or be skipped)
                     |         +--> failed (error type + message; retried later if the budget allows)
                     +-- lease expired / released / retry due        skipped (with a reason)

Every transition of a leased job is a compare-and-set UPDATE whose WHERE clause names the job, the lease
owner, the attempt number and a leased state; a rowcount of 0 means someone else owns the job now
(``LeaseLostError``). Claiming picks a candidate with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (so
concurrent workers pick different rows instead of queueing on one) and then sets the lease with the same
compare-and-set UPDATE; on SQLite, where SQLAlchemy silently drops ``FOR UPDATE``, the write transaction
(``BEGIN IMMEDIATE``, see ``registry_db.engine``) plus the compare-and-set make the claim safe.

An expired lease's job is claimed again like a queued one, its ``attempts`` increased; a job whose
attempts reached ``max_attempts`` is failed instead (``expire_leases``). Time is the caller's clock
(``now=``, UTC), so workers on several machines need synchronized clocks (NTP) and tests need no sleeps.
Functions never commit: run them inside ``catalogue.session()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import Session

from registry_db.errors import CatalogueValueError, JobStateError, LeaseLostError, NotFoundError
from registry_db.models import (
    DEFAULT_NAMESPACE,
    FINAL_STATES,
    LEASED_STATES,
    BaseModel,
    Job,
    JobState,
    Recipe,
    utcnow,
)
from registry_db.upsert import insert_ignore

DEFAULT_LEASE = timedelta(minutes=10)
DEFAULT_MAX_ATTEMPTS = 3
_CLAIM_TRIES = 20
_LEASED = [s.value for s in LEASED_STATES]


@dataclass(frozen=True)
class Lease:
    """Proof that a worker holds a job; every later transition of the job is checked against it."""

    job_id: int
    owner: str
    attempt: int
    expires_at: datetime
    idempotency_key: str
    base_model_id: int
    recipe_id: int


def job_key(repo_id: str, revision: str, recipe_hash: str) -> str:
    """The idempotency key: the same base revision smashed with the same recipe is the same job."""
    return f"{repo_id}@{revision}#{recipe_hash}"


def create_or_get_job(
    session: Session,
    base_model: BaseModel,
    recipe: Recipe,
    *,
    state: JobState | str = JobState.QUEUED,
    skip_reason: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """The job for (base revision, recipe), created if new; ``(job, created)``. Safe under concurrency.

    An existing job is returned unchanged whatever ``state`` asks for: rerunning discovery never resets
    a job's progress.
    """
    state = _initial_state(state, skip_reason)
    if max_attempts < 1:
        raise CatalogueValueError("max_attempts", max_attempts, "an integer >= 1")
    if base_model.namespace != recipe.namespace:
        raise CatalogueValueError("recipe.namespace", recipe.namespace, f"{base_model.namespace!r}")
    now = now or utcnow()
    key = job_key(base_model.repo_id, base_model.revision, recipe.content_hash)
    values = {
        "namespace": base_model.namespace,
        "idempotency_key": key,
        "base_model_id": base_model.id,
        "recipe_id": recipe.id,
        "state": state.value,
        "skip_reason": skip_reason,
        "max_attempts": max_attempts,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "finished_at": now if state is JobState.SKIPPED else None,
    }
    created = insert_ignore(session, Job, values, ["namespace", "idempotency_key"])
    query = select(Job).where(Job.namespace == base_model.namespace, Job.idempotency_key == key)
    job = session.scalars(query.execution_options(populate_existing=True)).one()
    return job, created


def _initial_state(state: JobState | str, skip_reason: str | None) -> JobState:
    allowed = (JobState.DISCOVERED, JobState.QUEUED, JobState.SKIPPED)
    value = parse_state(state)
    if value not in allowed:
        raise CatalogueValueError("state", str(state), [s.value for s in allowed])
    if (value is JobState.SKIPPED) != bool(skip_reason):
        raise CatalogueValueError("skip_reason", skip_reason, "a reason exactly when the state is 'skipped'")
    return value


def parse_state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise CatalogueValueError("state", state, [s.value for s in JobState]) from None


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFoundError("job", job_id, "List jobs with `pruna-hub catalogue list`.")
    return job


def queue_job(session: Session, job_id: int, *, now: datetime | None = None) -> None:
    """discovered -> queued (the scheduler decided to smash it)."""
    now = now or utcnow()
    _set_unleased(
        session,
        job_id,
        [JobState.DISCOVERED],
        "queued",
        state=JobState.QUEUED.value,
        next_attempt_at=now,
        updated_at=now,
    )


def skip_job(
    session: Session, job_id: int, reason: str, *, lease: Lease | None = None, now: datetime | None = None
) -> None:
    """Record why a job will not be smashed; from discovered/queued, or by the lease holder."""
    if not reason:
        raise CatalogueValueError("reason", reason, "a non-empty skip reason")
    now = now or utcnow()
    values = _finish_values(JobState.SKIPPED, now) | {"skip_reason": reason}
    if lease is not None:
        _set_leased(session, lease, **values)
    else:
        _set_unleased(session, job_id, [JobState.DISCOVERED, JobState.QUEUED], "skipped", **values)


def claim_next_job(
    session: Session,
    owner: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    lease_for: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Lease | None:
    """Take the next runnable job (an expired lease first, then the oldest due queued job), or None."""
    if not owner:
        raise CatalogueValueError("owner", owner, "a non-empty worker name unique to this process")
    now = now or utcnow()
    expire_leases(session, namespace=namespace, now=now)
    for _ in range(_CLAIM_TRIES):
        job_id = _candidate(session, namespace, now)
        if job_id is None:
            return None
        lease = _try_claim(session, job_id, namespace, owner, lease_for, now)
        if lease is not None:
            return lease
    return None


def _runnable(namespace: str, now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    budget = Job.attempts < Job.max_attempts
    expired = and_(Job.namespace == namespace, Job.state.in_(_LEASED), Job.lease_expires_at < now, budget)
    due = and_(
        Job.namespace == namespace, Job.state == JobState.QUEUED.value, Job.next_attempt_at <= now, budget
    )
    return expired, due


def _candidate(session: Session, namespace: str, now: datetime) -> int | None:
    postgres = session.get_bind().dialect.name == "postgresql"
    for condition, order in zip(
        _runnable(namespace, now), (Job.lease_expires_at, Job.next_attempt_at), strict=True
    ):
        query = select(Job.id).where(condition).order_by(order, Job.id).limit(1)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        job_id = session.scalar(query)
        if job_id is not None:
            return job_id
    return None


def _try_claim(
    session: Session, job_id: int, namespace: str, owner: str, lease_for: timedelta, now: datetime
) -> Lease | None:
    expired, due = _runnable(namespace, now)
    expires = now + lease_for
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, expired | due)
        .values(
            state=JobState.RUNNING.value,
            attempts=Job.attempts + 1,
            lease_owner=owner,
            lease_expires_at=expires,
            started_at=now,
            updated_at=now,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.execute(
        select(Job.attempts, Job.idempotency_key, Job.base_model_id, Job.recipe_id).where(Job.id == job_id)
    ).one()
    return Lease(job_id, owner, row.attempts, expires, row.idempotency_key, row.base_model_id, row.recipe_id)


def renew_lease(
    session: Session, lease: Lease, *, lease_for: timedelta = DEFAULT_LEASE, now: datetime | None = None
) -> Lease:
    """The heartbeat: push the lease's expiry forward. Raises LeaseLostError if the job was taken."""
    now = now or utcnow()
    expires = now + lease_for
    _set_leased(session, lease, lease_expires_at=expires, updated_at=now)
    return Lease(
        lease.job_id,
        lease.owner,
        lease.attempt,
        expires,
        lease.idempotency_key,
        lease.base_model_id,
        lease.recipe_id,
    )


def advance_job(
    session: Session, lease: Lease, state: JobState | str, *, now: datetime | None = None
) -> None:
    """Record progress under the lease: running -> smashed -> benchmarked."""
    value = parse_state(state)
    if value not in (JobState.SMASHED, JobState.BENCHMARKED):
        raise CatalogueValueError("state", str(state), "smashed, benchmarked")
    _set_leased(session, lease, state=value.value, updated_at=now or utcnow())


def complete_job(session: Session, lease: Lease, *, now: datetime | None = None) -> None:
    """The artifact is published and verified: the job is done and its lease released."""
    _set_leased(session, lease, **_finish_values(JobState.PUBLISHED, now or utcnow()))


def fail_job(
    session: Session,
    lease: Lease,
    *,
    error_type: str,
    message: str,
    retry_after: timedelta | None = None,
    now: datetime | None = None,
) -> JobState:
    """Record an error. With ``retry_after`` and attempts left, queue the job again after that delay;
    otherwise fail it for good. Returns the state the job is now in."""
    now = now or utcnow()
    errors = {"last_error_type": error_type or "Error", "last_error_message": message}
    if retry_after is not None and lease.attempt < _max_attempts(session, lease.job_id):
        _set_leased(session, lease, **errors, **_release_values(now), next_attempt_at=now + retry_after)
        return JobState.QUEUED
    _set_leased(session, lease, **errors, **_finish_values(JobState.FAILED, now))
    return JobState.FAILED


def release_job(session: Session, lease: Lease, *, now: datetime | None = None) -> None:
    """Give the job back unfinished (graceful shutdown): queued again, the attempt not counted."""
    now = now or utcnow()
    _set_leased(session, lease, **_release_values(now), next_attempt_at=now, attempts=Job.attempts - 1)


def expire_leases(
    session: Session, *, namespace: str = DEFAULT_NAMESPACE, now: datetime | None = None
) -> int:
    """Fail the jobs whose lease expired on their last allowed attempt; returns how many.

    Jobs with attempts left stay as they are: ``claim_next_job`` takes them over.
    """
    now = now or utcnow()
    expired = and_(Job.namespace == namespace, Job.state.in_(_LEASED), Job.lease_expires_at < now)
    failed = session.execute(
        update(Job)
        .where(expired, Job.attempts >= Job.max_attempts)
        .values(
            last_error_type="LeaseExpired",
            last_error_message="the worker's lease expired on the last allowed attempt (worker died?)",
            **_finish_values(JobState.FAILED, now),
        )
    ).rowcount  # type: ignore[attr-defined]
    return int(failed)


def job_counts(session: Session, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, int]:
    """Jobs per state, every state present (for summaries)."""
    rows = session.execute(
        select(Job.state, func.count()).where(Job.namespace == namespace).group_by(Job.state)
    ).all()
    counts = {s.value: 0 for s in JobState}
    counts.update({state: count for state, count in rows})
    return counts


def _finish_values(state: JobState, now: datetime) -> dict[str, object]:
    return {
        "state": state.value,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": now,
        "updated_at": now,
    }


def _release_values(now: datetime) -> dict[str, object]:
    return {"state": JobState.QUEUED.value, "lease_owner": None, "lease_expires_at": None, "updated_at": now}


def _max_attempts(session: Session, job_id: int) -> int:
    return session.scalars(select(Job.max_attempts).where(Job.id == job_id)).one()


def _set_leased(session: Session, lease: Lease, **values: object) -> None:
    result = session.execute(
        update(Job)
        .where(
            Job.id == lease.job_id,
            Job.lease_owner == lease.owner,
            Job.attempts == lease.attempt,
            Job.state.in_(_LEASED),
        )
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLostError(lease.job_id, lease.owner, lease.attempt)


def _set_unleased(
    session: Session, job_id: int, from_states: Iterable[JobState], action: str, **values: object
) -> None:
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.state.in_([s.value for s in from_states])).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise JobStateError(job_id, get_job(session, job_id).state, action)


__all__ = [
    "DEFAULT_LEASE",
    "FINAL_STATES",
    "Lease",
    "advance_job",
    "claim_next_job",
    "complete_job",
    "create_or_get_job",
    "expire_leases",
    "fail_job",
    "get_job",
    "job_counts",
    "job_key",
    "parse_state",
    "queue_job",
    "release_job",
    "renew_lease",
    "skip_job",
]
