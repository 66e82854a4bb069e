"""The service's door to the catalogue: named domain operations returning frozen records.

As MLflow's tracking store does for its client: the service (``pruna_hub.sync``) asks for what it means
("which jobs does this revision have", "queue this recipe for that base") and gets plain records back;
it never sees a session, a table class or SQL. Each operation owns its transaction and is tried again
when the connection to the database was lost (the transaction was rolled back, so a retry is safe; a job's
lease still guards every job write).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from registry_db.errors import DatabaseUnreachableError
from registry_db.jobs import (
    DEFAULT_LEASE,
    Lease,
    advance_job,
    claim_next_job,
    complete_job,
    create_or_get_job,
    fail_job,
    release_job,
    renew_lease,
    skip_job,
)
from registry_db.models import Artifact, BaseModel, Candidate, DiscoveryCursor, Job, JobState, Recipe, utcnow
from registry_db.records import (
    MetricValue,
    record_artifact,
    record_benchmark_run,
    set_verification,
    upsert_base_model,
    upsert_recipe,
)
from registry_db.upsert import insert_ignore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry_db.session import Catalogue

T = TypeVar("T")
# Waits between tries of a transaction whose connection was lost (~19 s in all): enough for a killed
# connection (the pool reconnects at once, pool_pre_ping) or a failover; a longer outage raises.
RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)


def retry_unreachable(attempt: Callable[[], T], *, report: Callable[[str], None] | None = None) -> T:
    """``attempt()``, tried again while the database is unreachable."""
    for delay in RETRY_DELAYS_S:
        try:
            return attempt()
        except DatabaseUnreachableError as e:
            if report is not None:
                report(f"catalogue connection lost ({e.reason}); retrying in {delay:g} s")
            time.sleep(delay)
    return attempt()


# --- records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipeSpec:
    """A recipe as the catalogue keeps it: name and content hash identify it."""

    name: str
    content_hash: str
    smash_config: dict[str, Any]
    version: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class BaseFacts:
    """What the Hub says about one base revision."""

    repo_id: str
    revision: str
    architectures: tuple[str, ...] = ()
    model_type: str | None = None
    license: str | None = None
    gated: bool = False
    parameter_count: int | None = None
    hub_created_at: datetime | None = None
    hub_modified_at: datetime | None = None


@dataclass(frozen=True)
class JobRef:
    job_id: int
    state: str
    recipe_name: str
    recipe_hash: str


@dataclass(frozen=True)
class QueuedJob:
    """The job of a (base revision, recipe): ``created`` False when it already existed (left as it was)."""

    job_id: int
    state: str
    created: bool
    base_model_id: int
    superseded: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobSubject:
    """What a claimed job is about: its base revision and the recipe (by name and hash) it was made with."""

    repo_id: str
    revision: str
    license: str | None
    recipe_name: str
    recipe_hash: str


@dataclass(frozen=True)
class BenchmarkRecord:
    """One evaluation run to record: of the base or the smashed model, with its metric rows."""

    subject: str
    metrics: tuple[MetricValue, ...]
    settings: dict[str, Any]
    hardware: dict[str, Any]
    library_versions: dict[str, Any]
    report: dict[str, Any]


@dataclass(frozen=True)
class CandidateRecord:
    repo_id: str
    revision: str
    action: str
    reason: str | None
    detail: str | None
    recipe_name: str | None
    job_id: int | None
    first_seen_at: datetime
    decided_at: datetime

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        data["first_seen_at"], data["decided_at"] = (
            self.first_seen_at.isoformat(),
            self.decided_at.isoformat(),
        )
        return data


# --- the door --------------------------------------------------------------------------------------------


@dataclass
class ServiceStore:
    """``ServiceStore(catalogue)``: every operation the sync service needs, one transaction each."""

    catalogue: Catalogue
    report: Callable[[str], None] | None = field(default=None, repr=False)

    @property
    def namespace(self) -> str:
        return self.catalogue.namespace

    def write(self, work: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with self.catalogue.session() as session:
                return work(session)

        return retry_unreachable(attempt, report=self.report)

    def read(self, work: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with self.catalogue.read_session() as session:
                return work(session)

        return retry_unreachable(attempt, report=self.report)

    # --- discovery ----------------------------------------------------------------------------------

    def revision_jobs(self, repo_id: str, revision: str) -> list[JobRef]:
        """The jobs of one base revision, newest first."""
        query = (
            select(Job.id, Job.state, Recipe.name, Recipe.content_hash)
            .join(BaseModel, Job.base_model_id == BaseModel.id)
            .join(Recipe, Job.recipe_id == Recipe.id)
            .where(
                BaseModel.namespace == self.namespace,
                BaseModel.repo_id == repo_id,
                BaseModel.revision == revision,
            )
            .order_by(Job.id.desc())
        )
        return self.read(lambda session: [JobRef(*row) for row in session.execute(query).all()])

    def decided(self, repo_id: str, revision: str) -> bool:
        """Whether discovery already recorded a decision (a job or a candidate row) for this revision."""
        jobs = (
            select(Job.id)
            .join(BaseModel, Job.base_model_id == BaseModel.id)
            .where(BaseModel.namespace == self.namespace, BaseModel.repo_id == repo_id)
            .where(BaseModel.revision == revision)
            .limit(1)
        )
        noted = select(Candidate.id).filter_by(namespace=self.namespace, repo_id=repo_id, revision=revision)
        return self.read(
            lambda session: (
                session.scalars(jobs).first() is not None
                or session.scalars(noted.limit(1)).first() is not None
            )
        )

    def published_revisions(self) -> dict[str, frozenset[str]]:
        """Base repo id -> the revisions of it that have a published artifact."""
        query = (
            select(BaseModel.repo_id, BaseModel.revision)
            .join(Job, Job.base_model_id == BaseModel.id)
            .join(Artifact, Artifact.job_id == Job.id)
            .where(BaseModel.namespace == self.namespace)
        )
        rows = self.read(lambda session: session.execute(query).all())
        published: dict[str, set[str]] = {}
        for repo_id, revision in rows:
            published.setdefault(repo_id, set()).add(revision)
        return {repo_id: frozenset(revisions) for repo_id, revisions in published.items()}

    def revisions_behind(self, current: dict[str, str]) -> list[tuple[str, str]]:
        """(repo id, revision) of the base revisions with a job made by an older version of a recipe
        (name -> current content hash) and none yet with its current version."""
        query = (
            select(BaseModel.repo_id, BaseModel.revision, Recipe.name, Recipe.content_hash)
            .join(Job, Job.base_model_id == BaseModel.id)
            .join(Recipe, Job.recipe_id == Recipe.id)
            .where(BaseModel.namespace == self.namespace, Recipe.name.in_(list(current)))
        )
        rows = self.read(lambda session: session.execute(query).all())
        hashes: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for repo_id, revision, name, content_hash in rows:
            hashes.setdefault((repo_id, revision), set()).add((name, content_hash))
        return sorted(
            key
            for key, made in hashes.items()
            if any(name in current and (name, current[name]) not in made for name, _ in made)
        )

    def queue_or_skip(
        self, base: BaseFacts, recipe: RecipeSpec, *, skip_reason: str | None, max_attempts: int
    ) -> QueuedJob:
        """Record the base revision and the job for it with ``recipe``: queued, or skipped with the
        reason. A new queued job supersedes the unstarted jobs of older versions of the same recipe."""

        def work(session: Session) -> QueuedJob:
            row = _base_row(session, self.namespace, base)
            recipe_row = _recipe_row(session, self.namespace, recipe)
            state = "skipped" if skip_reason else "queued"
            job, created = create_or_get_job(
                session, row, recipe_row, state=state, skip_reason=skip_reason, max_attempts=max_attempts
            )
            superseded = _supersede(session, row, recipe, job.id) if created and not skip_reason else []
            return QueuedJob(job.id, job.state, created, row.id, tuple(superseded))

        return self.write(work)

    def note_candidate(
        self,
        repo_id: str,
        revision: str,
        action: str,
        *,
        reason: str | None = None,
        detail: str | None = None,
        recipe_name: str | None = None,
        job_id: int | None = None,
    ) -> None:
        """Discovery's latest decision for a base revision (one row per revision, updated in place)."""
        now = utcnow()
        key = {"namespace": self.namespace, "repo_id": repo_id, "revision": revision}
        decision = {
            "action": action,
            "reason": reason,
            "detail": detail,
            "recipe_name": recipe_name,
            "job_id": job_id,
            "decided_at": now,
        }

        def work(session: Session) -> None:
            if not insert_ignore(session, Candidate, key | decision | {"first_seen_at": now}, list(key)):
                row = session.scalars(select(Candidate).filter_by(**key)).one()
                for name, value in decision.items():
                    setattr(row, name, value)

        self.write(work)

    def candidates(self, *, action: str | None = None, limit: int = 100) -> list[CandidateRecord]:
        """The latest decisions, newest first."""
        query = select(Candidate).where(Candidate.namespace == self.namespace)
        if action is not None:
            query = query.where(Candidate.action == action)
        query = query.order_by(Candidate.decided_at.desc(), Candidate.id.desc()).limit(limit)

        def work(session: Session) -> list[CandidateRecord]:
            return [_candidate_record(c) for c in session.scalars(query)]

        return self.read(work)

    def cursor(self, filters: str) -> datetime | None:
        """Creation time of the newest model the last complete pass with these filters decided."""
        query = select(DiscoveryCursor.newest_created_at).filter_by(namespace=self.namespace, filters=filters)
        return self.read(lambda session: session.scalars(query).one_or_none())

    def advance_cursor(self, filters: str, newest: datetime) -> None:
        """Move the cursor forward to ``newest`` (never back)."""
        key = {"namespace": self.namespace, "filters": filters}

        def work(session: Session) -> None:
            values = key | {"newest_created_at": newest, "updated_at": utcnow()}
            if not insert_ignore(session, DiscoveryCursor, values, list(key)):
                row = session.scalars(select(DiscoveryCursor).filter_by(**key)).one()
                if newest > row.newest_created_at:
                    row.newest_created_at, row.updated_at = newest, utcnow()

        self.write(work)

    # --- jobs ---------------------------------------------------------------------------------------

    def claim(self, owner: str, *, lease_for: timedelta = DEFAULT_LEASE) -> Lease | None:
        """The next runnable job, leased to ``owner``, or None."""
        return self.write(
            lambda session: claim_next_job(session, owner, namespace=self.namespace, lease_for=lease_for)
        )

    def subject(self, lease: Lease) -> JobSubject:
        """The base revision and recipe of a claimed job."""

        def work(session: Session) -> JobSubject:
            base, recipe = session.get(BaseModel, lease.base_model_id), session.get(Recipe, lease.recipe_id)
            assert base is not None and recipe is not None  # foreign keys of the claimed job
            return JobSubject(base.repo_id, base.revision, base.license, recipe.name, recipe.content_hash)

        return self.read(work)

    def recipe_name(self, recipe_id: int) -> str | None:
        return self.read(lambda session: getattr(session.get(Recipe, recipe_id), "name", None))

    def renew(self, lease: Lease, *, lease_for: timedelta = DEFAULT_LEASE) -> Lease:
        """Push the lease's expiry forward; LeaseLostError when another worker holds the job now."""
        return self.write(lambda session: renew_lease(session, lease, lease_for=lease_for))

    def advance(self, lease: Lease, state: str) -> None:
        self.write(lambda session: advance_job(session, lease, state))

    def release(self, lease: Lease) -> None:
        """Give the job back at once: queued again, the attempt not counted."""
        self.write(lambda session: release_job(session, lease))

    def fail(self, lease: Lease, *, error_type: str, message: str, retry_after: timedelta | None) -> str:
        """Record an error: queued again after ``retry_after`` while attempts last, else failed. The
        job's state now."""
        return self.write(
            lambda session: (
                fail_job(
                    session, lease, error_type=error_type, message=message, retry_after=retry_after
                ).value
            )
        )

    def record_runs(self, lease: Lease, runs: Sequence[BenchmarkRecord]) -> None:
        """The job's evaluation runs (base and smashed), in one transaction."""

        def work(session: Session) -> None:
            for run in runs:
                record_benchmark_run(
                    session,
                    subject=run.subject,
                    base_model_id=lease.base_model_id,
                    job_id=lease.job_id,
                    metrics=list(run.metrics),
                    settings=run.settings,
                    hardware=run.hardware,
                    library_versions=run.library_versions,
                    report=run.report,
                    namespace=self.namespace,
                )

        self.write(work)

    def record_artifact(
        self, lease: Lease, *, repo_id: str, commit_sha: str, files: dict[str, int], tag: str, relation: str
    ) -> int:
        """The published commit of the job and its lineage edge (idempotent per job); the artifact's id."""
        return self.write(
            lambda session: (
                record_artifact(
                    session,
                    job_id=lease.job_id,
                    repo_id=repo_id,
                    commit_sha=commit_sha,
                    files=files,
                    tag=tag,
                    relation=relation,
                ).id
            )
        )

    def finish(self, lease: Lease, artifact_id: int, *, verified: bool, message: str) -> None:
        """The verification of the published artifact, and the job published (or failed) with it."""

        def work(session: Session) -> None:
            set_verification(session, artifact_id, verified=verified, message=message)
            if verified:
                complete_job(session, lease)
            else:
                fail_job(session, lease, error_type="VerificationFailed", message=message)

        self.write(work)

    # --- a rank_by tie's fallback -------------------------------------------------------------------

    def recipes_tried(self, base_model_id: int) -> set[str]:
        """Content hashes of the recipes that have a job (in any state) for this base revision."""
        query = select(Recipe.content_hash).join(Job, Job.recipe_id == Recipe.id)
        return self.read(
            lambda session: set(session.scalars(query.where(Job.base_model_id == base_model_id)))
        )

    def queue_recipe(self, base_model_id: int, recipe: RecipeSpec, *, max_attempts: int) -> QueuedJob:
        """Queue ``recipe`` for a base revision already in the catalogue."""

        def work(session: Session) -> QueuedJob:
            base = session.get(BaseModel, base_model_id)
            assert base is not None  # the caller's job's foreign key
            row = _recipe_row(session, self.namespace, recipe)
            job, created = create_or_get_job(session, base, row, max_attempts=max_attempts)
            return QueuedJob(job.id, job.state, created, base.id)

        return self.write(work)


# --- helpers inside one transaction ----------------------------------------------------------------------


def _candidate_record(c: Candidate) -> CandidateRecord:
    return CandidateRecord(
        c.repo_id,
        c.revision,
        c.action,
        c.reason,
        c.detail,
        c.recipe_name,
        c.job_id,
        c.first_seen_at,
        c.decided_at,
    )


def _base_row(session: Session, namespace: str, base: BaseFacts) -> BaseModel:
    return upsert_base_model(
        session,
        namespace=namespace,
        repo_id=base.repo_id,
        revision=base.revision,
        architectures=list(base.architectures),
        model_type=base.model_type,
        license=base.license,
        gated=base.gated,
        parameter_count=base.parameter_count,
        hub_created_at=base.hub_created_at,
        hub_modified_at=base.hub_modified_at,
    )


def _recipe_row(session: Session, namespace: str, recipe: RecipeSpec) -> Recipe:
    return upsert_recipe(
        session,
        namespace=namespace,
        name=recipe.name,
        content_hash=recipe.content_hash,
        smash_config=recipe.smash_config,
        version=recipe.version,
        algorithms=list(recipe.algorithms),
    )


def _supersede(session: Session, base: BaseModel, recipe: RecipeSpec, job_id: int) -> Sequence[int]:
    """Skip the unstarted jobs of this base revision made with an older version of ``recipe``: the new
    job replaces them (claimed, they would only fail with JobPlanError)."""
    stale = session.scalars(
        select(Job.id)
        .join(Recipe, Job.recipe_id == Recipe.id)
        .where(
            Job.base_model_id == base.id,
            Job.id != job_id,
            Recipe.name == recipe.name,
            Recipe.content_hash != recipe.content_hash,
            Job.state.in_([JobState.QUEUED.value, JobState.DISCOVERED.value]),
        )
    ).all()
    for stale_id in stale:
        skip_job(session, stale_id, f"superseded by job {job_id}: recipe {recipe.name} changed")
    return list(stale)
