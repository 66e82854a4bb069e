"""Recording what the service saw and made: base models, recipes, artifacts with lineage, benchmark runs.

Every writer is an upsert on the record's natural key, so rerunning a step (after a crash, or by a second
worker) updates the same row instead of adding a duplicate. Functions never commit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from registry_db.errors import CatalogueValueError, NotFoundError
from registry_db.models import (
    DEFAULT_NAMESPACE,
    Artifact,
    ArtifactMetric,
    BaseModel,
    BenchmarkRun,
    Job,
    Lineage,
    Metric,
    Recipe,
    RecipeAlgorithm,
    Subject,
    utcnow,
)
from registry_db.upsert import insert_ignore, upsert

_T = TypeVar("_T")

# The Hub's base_model_relation values plus what smashing adds.
RELATIONS = frozenset({"quantized", "pruned", "compiled", "distilled", "finetune", "adapter", "merge"})
_LIBRARIES = {
    "torch": "torch_version",
    "transformers": "transformers_version",
    "hqq": "hqq_version",
    "smash": "smash_version",
}


@dataclass(frozen=True)
class MetricValue:
    """One metric row to record: ``name`` (e.g. decode_latency_ms), ``value`` and an optional ``unit``."""

    name: str
    value: float
    unit: str | None = None


def upsert_base_model(
    session: Session,
    *,
    repo_id: str,
    revision: str,
    namespace: str = DEFAULT_NAMESPACE,
    architectures: Sequence[str] = (),
    model_type: str | None = None,
    license: str | None = None,
    gated: bool = False,
    parameter_count: int | None = None,
    size_bytes: int | None = None,
    hub_created_at: datetime | None = None,
    hub_modified_at: datetime | None = None,
    now: datetime | None = None,
) -> BaseModel:
    """Record a base revision, or refresh what the Hub says about it and when it was last checked."""
    _require("repo_id", repo_id)
    _require("revision", revision)
    now = now or utcnow()
    facts = {
        "architecture": architectures[0] if architectures else None,
        "architectures": list(architectures),
        "model_type": model_type,
        "license": license,
        "gated": bool(gated),
        "parameter_count": parameter_count,
        "size_bytes": size_bytes,
        "hub_created_at": hub_created_at,
        "hub_modified_at": hub_modified_at,
        "last_checked_at": now,
    }
    key = {"namespace": namespace, "repo_id": repo_id, "revision": revision}
    row_id = upsert(session, BaseModel, key | facts | {"first_seen_at": now}, list(key), list(facts))
    return _get(session, BaseModel, row_id)


def upsert_recipe(
    session: Session,
    *,
    name: str,
    content_hash: str,
    smash_config: Mapping[str, Any],
    namespace: str = DEFAULT_NAMESPACE,
    version: str | None = None,
    algorithms: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Recipe:
    """Record a recipe by content hash; ``algorithms`` in run order (default: the config's own order)."""
    _require("name", name)
    _require("content_hash", content_hash)
    key = {"namespace": namespace, "name": name, "content_hash": content_hash}
    values = key | {"version": version, "smash_config": dict(smash_config), "created_at": now or utcnow()}
    created = insert_ignore(session, Recipe, values, list(key))
    recipe = session.scalars(select(Recipe).filter_by(**key)).one()
    if created:
        names = list(algorithms if algorithms is not None else (smash_config.get("algorithms") or {}))
        session.add_all(
            RecipeAlgorithm(recipe_id=recipe.id, position=i, algorithm=a) for i, a in enumerate(names)
        )
        session.flush()
        session.refresh(recipe)
    return recipe


def record_artifact(
    session: Session,
    *,
    job_id: int,
    repo_id: str,
    commit_sha: str,
    files: Mapping[str, int],
    tag: str | None = None,
    verified: bool | None = None,
    verification_message: str | None = None,
    relation: str = "quantized",
    now: datetime | None = None,
) -> Artifact:
    """Record the published commit of a job (``files``: path -> bytes) and its lineage edge.

    Idempotent per job: recording again (a retried publish) updates the same artifact. Benchmark runs
    already recorded for the job are attached to it.
    """
    _require("repo_id", repo_id)
    _require("commit_sha", commit_sha)
    if relation not in RELATIONS:
        raise CatalogueValueError("relation", relation, RELATIONS)
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError("job", job_id, "Create it with create_or_get_job first.")
    now = now or utcnow()
    published = {
        "repo_id": repo_id,
        "commit_sha": commit_sha,
        "tag": tag,
        "files": [{"path": path, "size": int(size)} for path, size in sorted(files.items())],
        "file_count": len(files),
        "total_bytes": sum(int(size) for size in files.values()),
        "verified": verified,
        "verification_message": verification_message,
    }
    owner = {
        "namespace": job.namespace,
        "job_id": job.id,
        "base_model_id": job.base_model_id,
        "recipe_id": job.recipe_id,
        "created_at": now,
    }
    artifact_id = upsert(session, Artifact, owner | published, ["job_id"], list(published))
    insert_ignore(
        session,
        Lineage,
        {
            "parent_base_model_id": job.base_model_id,
            "child_artifact_id": artifact_id,
            "relation": relation,
            "created_at": now,
        },
        ["parent_base_model_id", "child_artifact_id"],
    )
    _attach_runs(session, artifact_id, job.id)
    return _get(session, Artifact, artifact_id)


def set_verification(
    session: Session, artifact_id: int, *, verified: bool, message: str | None = None
) -> None:
    """Record the result of loading the artifact back from the Hub and running it."""
    result = session.execute(
        update(Artifact)
        .where(Artifact.id == artifact_id)
        .values(verified=verified, verification_message=message)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFoundError("artifact", artifact_id, "Record it with record_artifact first.")


def record_benchmark_run(
    session: Session,
    *,
    subject: Subject | str,
    base_model_id: int,
    metrics: Mapping[str, float] | Iterable[MetricValue],
    job_id: int | None = None,
    artifact_id: int | None = None,
    settings: Mapping[str, Any] | None = None,
    hardware: Mapping[str, Any] | None = None,
    library_versions: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    now: datetime | None = None,
) -> BenchmarkRun:
    """Record one evaluation of the base or the smashed model with its metric rows and full report.

    ``hardware`` keys ``device``, ``name`` and ``memory_bytes`` and ``library_versions`` keys torch,
    transformers, hqq and smash also fill typed columns. A run belongs to an artifact (the smashed model,
    or the one a base run was compared with); runs recorded before the artifact exists (the usual order:
    evaluate, then publish) are attached to it by ``record_artifact`` through ``job_id``.
    """
    subject = _subject(subject)
    rows = _metric_rows(metrics)
    hardware = dict(hardware or {})
    versions = dict(library_versions or {})
    run = BenchmarkRun(
        namespace=namespace,
        subject=subject.value,
        base_model_id=base_model_id,
        job_id=job_id,
        artifact_id=artifact_id,
        device=_text(hardware.get("device")),
        device_name=_text(hardware.get("name")),
        device_memory_bytes=hardware.get("memory_bytes"),
        settings=dict(settings or {}),
        hardware=hardware,
        library_versions=versions,
        report=dict(report or {}),
        created_at=now or utcnow(),
        metrics=[Metric(name=m.name, value=m.value, unit=m.unit) for m in rows],
        **{column: _text(versions.get(library)) for library, column in _LIBRARIES.items()},
    )
    session.add(run)
    session.flush()
    target = artifact_id or _artifact_of_job(session, job_id)
    if target is not None:
        _attach_runs(session, target, job_id)
    return run


def _attach_runs(session: Session, artifact_id: int, job_id: int | None) -> None:
    """Adopt the job's runs and point the artifact at its newest smashed and base runs (what list/best
    read), so reading the current numbers is one indexed join instead of a max() per row."""
    if job_id is not None:
        session.execute(
            update(BenchmarkRun)
            .where(BenchmarkRun.job_id == job_id, BenchmarkRun.artifact_id.is_(None))
            .values(artifact_id=artifact_id)
        )
    pointers: dict[str, int] = {}
    for subject, column in ((Subject.SMASHED, "smashed_run_id"), (Subject.BASE, "base_run_id")):
        newest = session.scalar(
            select(BenchmarkRun.id)
            .where(BenchmarkRun.artifact_id == artifact_id, BenchmarkRun.subject == subject.value)
            .order_by(BenchmarkRun.id.desc())
            .limit(1)
        )
        if newest is not None:
            pointers[column] = newest
    if pointers:
        session.execute(update(Artifact).where(Artifact.id == artifact_id).values(**pointers))
    if "smashed_run_id" in pointers:
        _refresh_ranking(session, artifact_id, pointers["smashed_run_id"])


def _refresh_ranking(session: Session, artifact_id: int, run_id: int) -> None:
    """Copy the current smashed run's metrics into ``artifact_metrics`` (what list/best rank on)."""
    session.execute(delete(ArtifactMetric).where(ArtifactMetric.artifact_id == artifact_id))
    rows = (
        select(
            Artifact.id,
            Metric.name,
            Artifact.namespace,
            BaseModel.architecture,
            Artifact.base_model_id,
            Metric.value,
            Metric.unit,
        )
        .join(BaseModel, BaseModel.id == Artifact.base_model_id)
        .join(Metric, Metric.run_id == run_id)
        .where(Artifact.id == artifact_id)
    )
    columns = ["artifact_id", "name", "namespace", "architecture", "base_model_id", "value", "unit"]
    session.execute(insert(ArtifactMetric).from_select(columns, rows))


def _artifact_of_job(session: Session, job_id: int | None) -> int | None:
    if job_id is None:
        return None
    return session.scalar(select(Artifact.id).where(Artifact.job_id == job_id))


def _metric_rows(metrics: Mapping[str, float] | Iterable[MetricValue]) -> list[MetricValue]:
    items = [MetricValue(k, v) for k, v in metrics.items()] if isinstance(metrics, Mapping) else list(metrics)
    seen: set[str] = set()
    for item in items:
        _require("metric name", item.name)
        if item.name in seen:
            raise CatalogueValueError("metric name", item.name, "each metric once per run")
        seen.add(item.name)
        if (
            isinstance(item.value, bool)
            or not isinstance(item.value, int | float)
            or not math.isfinite(item.value)
        ):
            raise CatalogueValueError(f"metric {item.name!r}", item.value, "a finite number")
    return [MetricValue(m.name, float(m.value), m.unit) for m in items]


def _subject(subject: Subject | str) -> Subject:
    try:
        return Subject(subject)
    except ValueError:
        raise CatalogueValueError("subject", subject, [s.value for s in Subject]) from None


def _require(field: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CatalogueValueError(field, value, "a non-empty string")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _get(session: Session, model: type[_T], row_id: int) -> _T:
    row = session.get(model, row_id, populate_existing=True)
    if row is None:  # pragma: no cover - the id was just written in this transaction
        raise NotFoundError(getattr(model, "__tablename__", "row"), row_id, "")
    return row
