"""The catalogue's tables as typed SQLAlchemy 2.0 models.

Conventions, chosen once so every backend and every migration agree:

- Every constraint and index is named by ``NAMING_CONVENTION`` (Alembic's batch mode on SQLite needs names
  to drop or alter constraints, and autogenerate compares by name).
- Timestamps are ``UTCDateTime``: timezone-aware UTC in Python; ``timestamptz`` on PostgreSQL and an
  ISO-8601 UTC string on SQLite (which sorts and compares correctly as text).
- Free-form values are ``Text``; what queries filter or sort on has its own typed, indexed column, and the
  full documents (SmashConfig, settings, reports) are kept as JSON next to them.
- ``namespace`` starts every natural key so that several organizations can share one database (see the
  package docstring).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEFAULT_NAMESPACE = "default"


class JobState(enum.StrEnum):
    """Where a smash job is. ``running``, ``smashed`` and ``benchmarked`` are held under a lease."""

    DISCOVERED = "discovered"
    QUEUED = "queued"
    RUNNING = "running"
    SMASHED = "smashed"
    BENCHMARKED = "benchmarked"
    PUBLISHED = "published"
    FAILED = "failed"
    SKIPPED = "skipped"


LEASED_STATES: frozenset[JobState] = frozenset({JobState.RUNNING, JobState.SMASHED, JobState.BENCHMARKED})
FINAL_STATES: frozenset[JobState] = frozenset({JobState.PUBLISHED, JobState.FAILED, JobState.SKIPPED})


class Subject(enum.StrEnum):
    """What a benchmark run measured."""

    BASE = "base"
    SMASHED = "smashed"


def _sql_in(values: frozenset[str] | list[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python whatever the backend stores; naive input is refused, not guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON, str: Text}


class BaseModel(Base):
    """One revision of a model on the Hub that the service looked at."""

    __tablename__ = "base_models"
    __table_args__ = (UniqueConstraint("namespace", "repo_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    repo_id: Mapped[str] = mapped_column(index=True)
    revision: Mapped[str]
    architecture: Mapped[str | None] = mapped_column(index=True)
    architectures: Mapped[list[Any]] = mapped_column(default=list)
    model_type: Mapped[str | None]
    license: Mapped[str | None]
    gated: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    parameter_count: Mapped[int | None] = mapped_column(BigInteger)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    hub_created_at: Mapped[datetime | None]
    hub_modified_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class Recipe(Base):
    """A named SmashConfig as it was when a job used it; the content hash makes edits a new row."""

    __tablename__ = "recipes"
    __table_args__ = (UniqueConstraint("namespace", "name", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    name: Mapped[str]
    version: Mapped[str | None]
    content_hash: Mapped[str]
    smash_config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    algorithms: Mapped[list[RecipeAlgorithm]] = relationship(
        order_by="RecipeAlgorithm.position", cascade="all, delete-orphan", lazy="selectin"
    )


class RecipeAlgorithm(Base):
    """The algorithms of a recipe in run order, so `catalogue list --algorithm hqq` is an indexed lookup."""

    __tablename__ = "recipe_algorithms"

    recipe_id: Mapped[int] = mapped_column(ForeignKey("recipes.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    algorithm: Mapped[str] = mapped_column(index=True)


class Job(Base):
    """Smashing one base revision with one recipe; ``idempotency_key`` makes reruns find the same job."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("namespace", "idempotency_key"),
        CheckConstraint(f"state IN ({_sql_in([s.value for s in JobState])})", name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_jobs_claim_queued", "namespace", "state", "next_attempt_at"),
        Index("ix_jobs_claim_leased", "namespace", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    idempotency_key: Mapped[str]
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    recipe_id: Mapped[int] = mapped_column(ForeignKey("recipes.id"), index=True)
    state: Mapped[str] = mapped_column(server_default=JobState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(server_default=text("3"))
    lease_owner: Mapped[str | None]
    lease_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error_type: Mapped[str | None]
    last_error_message: Mapped[str | None]
    skip_reason: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    base_model: Mapped[BaseModel] = relationship()
    recipe: Mapped[Recipe] = relationship()


class JobAction(enum.StrEnum):
    """What an operator did to a job by hand (``pruna-hub jobs ...``), recorded in ``job_events``."""

    RETRY = "retry"
    REQUEUE = "requeue"
    CANCEL = "cancel"


class JobEvent(Base):
    """One change an operator made to a job: who, when, why, and the state before and after.

    The automatic transitions (claim, progress, failure) are the job's own columns; this is the audit log
    of the manual ones, which the job row alone would overwrite.
    """

    __tablename__ = "job_events"
    __table_args__ = (
        CheckConstraint(f"action IN ({_sql_in([a.value for a in JobAction])})", name="action"),
        Index("ix_job_events_job_id_created_at", "job_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    action: Mapped[str]
    from_state: Mapped[str]
    to_state: Mapped[str]
    actor: Mapped[str]
    reason: Mapped[str]
    max_attempts: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    """Discovery's latest decision for one base revision, whatever it was: queued, skipped (with the
    reason, ``no_recipe`` included, which has no job to carry it) or an error reading the model."""

    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("namespace", "repo_id", "revision"),
        Index("ix_candidates_namespace_decided_at", "namespace", "decided_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    repo_id: Mapped[str]
    revision: Mapped[str]
    action: Mapped[str]
    reason: Mapped[str | None]
    detail: Mapped[str | None]
    recipe_name: Mapped[str | None]
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class DiscoveryCursor(Base):
    """Where the last complete discovery pass with one set of filters got to: the creation time of the
    newest model it decided. The next pass lists everything created since, not just the newest page."""

    __tablename__ = "discovery_cursors"
    __table_args__ = (UniqueConstraint("namespace", "filters"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str]
    filters: Mapped[str]
    newest_created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """A smashed model published as one commit of a Hub repo."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("namespace", "repo_id", "commit_sha"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), unique=True)
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    recipe_id: Mapped[int] = mapped_column(ForeignKey("recipes.id"), index=True)
    repo_id: Mapped[str] = mapped_column(index=True)
    commit_sha: Mapped[str]
    tag: Mapped[str | None]
    files: Mapped[list[Any]] = mapped_column(default=list)
    file_count: Mapped[int] = mapped_column(server_default=text("0"))
    total_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    verified: Mapped[bool | None] = mapped_column(Boolean)
    verification_message: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The newest benchmark runs of this artifact and of its base: what list/best sort and filter on.
    smashed_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("benchmark_runs.id", use_alter=True, ondelete="SET NULL"), index=True
    )
    base_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("benchmark_runs.id", use_alter=True, ondelete="SET NULL")
    )

    base_model: Mapped[BaseModel] = relationship()
    recipe: Mapped[Recipe] = relationship()


class Lineage(Base):
    """The edge base model -> smashed artifact, with the Hub's ``base_model_relation`` vocabulary."""

    __tablename__ = "lineage"
    __table_args__ = (UniqueConstraint("parent_base_model_id", "child_artifact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    child_artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    relation: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BenchmarkRun(Base):
    """One evaluation of the base or the smashed model: where, with what, and the full report."""

    __tablename__ = "benchmark_runs"
    __table_args__ = (CheckConstraint(f"subject IN ({_sql_in([s.value for s in Subject])})", name="subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(server_default=DEFAULT_NAMESPACE)
    subject: Mapped[str]
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    device: Mapped[str | None]
    device_name: Mapped[str | None]
    device_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    torch_version: Mapped[str | None]
    transformers_version: Mapped[str | None]
    hqq_version: Mapped[str | None]
    smash_version: Mapped[str | None]
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    library_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    metrics: Mapped[list[Metric]] = relationship(
        order_by="Metric.name", cascade="all, delete-orphan", lazy="selectin"
    )


class Metric(Base):
    """One number of a benchmark run, as a row so that queries can filter and sort on it."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("benchmark_runs.id", ondelete="CASCADE"))
    name: Mapped[str]
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None]


class ArtifactMetric(Base):
    """The current smashed metrics of each artifact, with what list and best filter on beside them.

    A copy of the ``metrics`` rows of ``artifacts.smashed_run_id`` (kept in step by
    ``registry_db.records``), so that "sort by a metric" and "best per base" walk one index in value order
    and stop after the rows they print, instead of joining every artifact to its run and sorting.
    """

    __tablename__ = "artifact_metrics"
    __table_args__ = (
        Index("ix_artifact_metrics_rank", "namespace", "name", "value"),
        Index("ix_artifact_metrics_arch_rank", "namespace", "name", "architecture", "value"),
        Index("ix_artifact_metrics_base", "base_model_id", "name"),
    )

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(primary_key=True)
    namespace: Mapped[str]
    architecture: Mapped[str | None]
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None]
