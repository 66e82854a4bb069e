"""The questions the CLI asks: list jobs and their artifacts, show one artifact, the best artifact per base,
and export everything. Each is one or two indexed queries whatever the catalogue's size (see
``benchmarks/catalogue_queries.py``): artifacts point at their newest benchmark runs, and the metrics of
the current smashed run are copied into ``artifact_metrics``, indexed by (namespace, metric[, architecture],
value), so sorting by a metric and "best per base" walk one index in order and stop early.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from registry_db.errors import CatalogueValueError, NotFoundError
from registry_db.jobs import parse_state
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
)

_AnySelect = Select[*tuple[Any, ...]]
MAX_LIMIT = 10_000
# Substrings of metric names where a larger value is better; every other metric is better smaller
# (latencies, memory, bytes, KL divergence, perplexity, recompilations).
_HIGHER_IS_BETTER = ("tokens_per_s", "throughput", "agreement", "accuracy", "cosine", "speedup")


def metric_higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (decides "best" and the default sort order)."""
    return any(part in metric for part in _HIGHER_IS_BETTER)


@dataclass(frozen=True)
class Filters:
    """What `catalogue list` and `catalogue export` narrow the catalogue to. None means any."""

    namespace: str = DEFAULT_NAMESPACE
    architecture: str | None = None
    algorithm: str | None = None
    state: str | None = None
    base_repo: str | None = None


@dataclass(frozen=True)
class Entry:
    """One job (base revision x recipe) with its published artifact, if any, and the sort metric."""

    job_id: int
    state: str
    base_repo_id: str
    base_revision: str
    architecture: str | None
    recipe: str
    recipe_hash: str
    algorithms: list[str]
    artifact_repo_id: str | None
    commit_sha: str | None
    tag: str | None
    total_bytes: int | None
    verified: bool | None
    metric: str | None
    value: float | None
    unit: str | None
    attempts: int
    skip_reason: str | None
    error_type: str | None
    error_message: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() deep-copies every value and was half of export's time.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["algorithms"] = list(self.algorithms)
        data["updated_at"] = self.updated_at.isoformat()
        return data


@dataclass(frozen=True)
class Best:
    """The best artifact of one base revision by one metric, with the base's own value beside it."""

    base_repo_id: str
    base_revision: str
    architecture: str | None
    artifact_repo_id: str
    commit_sha: str
    recipe: str
    metric: str
    value: float
    unit: str | None
    base_value: float | None
    candidates: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportTable:
    """Rows of the export with the metric names found, so CSV can have one column per metric."""

    smashed_metrics: list[str]
    base_metrics: list[str]
    rows: Iterator[dict[str, Any]] = field(repr=False)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise CatalogueValueError("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
    return limit


def _filtered(query: _AnySelect, filters: Filters, *, namespace: bool = True) -> _AnySelect:
    if namespace:
        query = query.where(Job.namespace == filters.namespace)
    if filters.architecture:
        query = query.where(BaseModel.architecture == filters.architecture)
    if filters.state:
        query = query.where(Job.state == parse_state(filters.state).value)
    if filters.base_repo:
        query = query.where(BaseModel.repo_id == filters.base_repo)
    if filters.algorithm:
        query = query.where(
            exists().where(
                RecipeAlgorithm.recipe_id == Job.recipe_id, RecipeAlgorithm.algorithm == filters.algorithm
            )
        )
    return query


_ENTRY_COLUMNS = (
    Job.id.label("job_id"),
    Job.state,
    Job.recipe_id,
    Job.attempts,
    Job.skip_reason,
    Job.last_error_type,
    Job.last_error_message,
    Job.updated_at,
    BaseModel.repo_id.label("base_repo_id"),
    BaseModel.revision,
    BaseModel.architecture,
    Recipe.name.label("recipe"),
    Recipe.content_hash,
    Artifact.repo_id.label("artifact_repo_id"),
    Artifact.commit_sha,
    Artifact.tag,
    Artifact.total_bytes,
    Artifact.verified,
    Artifact.smashed_run_id,
    Artifact.base_run_id,
)


def _entries_query(filters: Filters) -> _AnySelect:
    """Jobs with their base, recipe and artifact (if any), as plain columns (no ORM objects to build)."""
    query = (
        select(*_ENTRY_COLUMNS)
        .join(BaseModel, BaseModel.id == Job.base_model_id)
        .join(Recipe, Recipe.id == Job.recipe_id)
        .outerjoin(Artifact, Artifact.job_id == Job.id)
    )
    return _filtered(query, filters)


def _sorted_entries_query(filters: Filters, metric: str, descending: bool) -> _AnySelect:
    """Entries that have ``metric``, driven from the ``artifact_metrics`` ranking indexes so that the
    database walks them in value order and stops at the limit instead of sorting every artifact."""
    ranked = ArtifactMetric
    query = (
        select(*_ENTRY_COLUMNS, ranked.value, ranked.unit)
        .select_from(ranked)
        .join(Artifact, Artifact.id == ranked.artifact_id)
        .join(Job, Job.id == Artifact.job_id)
        .join(BaseModel, BaseModel.id == Job.base_model_id)
        .join(Recipe, Recipe.id == Job.recipe_id)
        .where(ranked.namespace == filters.namespace, ranked.name == metric)
        .order_by(ranked.value.desc() if descending else ranked.value.asc(), ranked.artifact_id)
    )
    if filters.architecture:
        query = query.where(ranked.architecture == filters.architecture)
    # The namespace is already ranked.namespace (an artifact, its job and its metrics share one).
    return _filtered(query, filters, namespace=False)


def list_entries(
    session: Session,
    filters: Filters | None = None,
    *,
    sort_metric: str | None = None,
    descending: bool | None = None,
    limit: int = 50,
) -> list[Entry]:
    """Jobs matching ``filters``: newest first, or by ``sort_metric`` (best first unless ``descending``
    says otherwise; entries without the metric follow, newest first)."""
    filters = filters or Filters()
    limit = _check_limit(limit)
    if not sort_metric:
        rows = list(session.execute(_entries_query(filters).order_by(Job.id.desc()).limit(limit)))
        return _entries(session, rows, None)
    desc = metric_higher_is_better(sort_metric) if descending is None else descending
    rows = list(session.execute(_sorted_entries_query(filters, sort_metric, desc).limit(limit)))
    if len(rows) < limit:
        has_metric = exists().where(
            ArtifactMetric.artifact_id == Artifact.id, ArtifactMetric.name == sort_metric
        )
        rest = _entries_query(filters).where(~has_metric).order_by(Job.id.desc()).limit(limit - len(rows))
        rows += list(session.execute(rest))
    return _entries(session, rows, sort_metric)


def _entries(session: Session, rows: list[Any], metric: str | None) -> list[Entry]:
    algorithms = _algorithms(session, {row.recipe_id for row in rows})
    return [_entry(row, metric, algorithms) for row in rows]


def _entry(row: Any, metric: str | None, algorithms: dict[int, list[str]]) -> Entry:
    mapping = row._mapping
    return Entry(
        job_id=row.job_id,
        state=row.state,
        base_repo_id=row.base_repo_id,
        base_revision=row.revision,
        architecture=row.architecture,
        recipe=row.recipe,
        recipe_hash=row.content_hash,
        algorithms=algorithms.get(row.recipe_id, []),
        artifact_repo_id=row.artifact_repo_id,
        commit_sha=row.commit_sha,
        tag=row.tag,
        total_bytes=row.total_bytes,
        verified=row.verified,
        metric=metric,
        value=mapping.get("value"),
        unit=mapping.get("unit"),
        attempts=row.attempts,
        skip_reason=row.skip_reason,
        error_type=row.last_error_type,
        error_message=row.last_error_message,
        updated_at=row.updated_at,
    )


def _algorithms(session: Session, recipe_ids: set[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    if not recipe_ids:
        return result
    rows = session.execute(
        select(RecipeAlgorithm.recipe_id, RecipeAlgorithm.algorithm)
        .where(RecipeAlgorithm.recipe_id.in_(sorted(recipe_ids)))
        .order_by(RecipeAlgorithm.recipe_id, RecipeAlgorithm.position)
    )
    for recipe_id, algorithm in rows:
        result.setdefault(recipe_id, []).append(algorithm)
    return result


def best_artifacts(
    session: Session,
    *,
    metric: str,
    architecture: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    higher_is_better: bool | None = None,
    limit: int = 100,
) -> list[Best]:
    """For each base revision (of ``architecture``), its artifact with the best ``metric``; best first.

    Walks ``artifact_metrics`` in value order (its ranking indexes) and keeps the first artifact of each
    base until ``limit`` bases are found, so the cost follows the answer's size, not the catalogue's.
    """
    if not metric:
        raise CatalogueValueError("metric", metric, "a metric name such as decode_latency_ms")
    limit = _check_limit(limit)
    larger = metric_higher_is_better(metric) if higher_is_better is None else higher_is_better
    ranked = ArtifactMetric
    query = (
        select(ranked.artifact_id, ranked.base_model_id, ranked.value, ranked.unit)
        .where(ranked.namespace == namespace, ranked.name == metric)
        .order_by(ranked.value.desc() if larger else ranked.value.asc(), ranked.artifact_id)
    )
    if architecture:
        query = query.where(ranked.architecture == architecture)
    winners: dict[int, Any] = {}
    for row in session.execute(query.execution_options(yield_per=max(limit, 100))):
        if row.base_model_id not in winners:
            winners[row.base_model_id] = row
            if len(winners) == limit:
                break
    return _best_rows(session, metric, list(winners.values()))


def _best_rows(session: Session, metric: str, winners: list[Any]) -> list[Best]:
    """Details of the winning artifacts: one join over at most ``limit`` ids, and one count."""
    if not winners:
        return []
    base_metric = aliased(Metric, name="base_metric")
    details = session.execute(
        select(
            Artifact.id,
            Artifact.repo_id,
            Artifact.commit_sha,
            BaseModel.repo_id.label("base_repo_id"),
            BaseModel.revision,
            BaseModel.architecture,
            Recipe.name.label("recipe"),
            base_metric.value,
        )
        .join(BaseModel, BaseModel.id == Artifact.base_model_id)
        .join(Recipe, Recipe.id == Artifact.recipe_id)
        .outerjoin(base_metric, and_(base_metric.run_id == Artifact.base_run_id, base_metric.name == metric))
        .where(Artifact.id.in_([row.artifact_id for row in winners]))
    )
    by_id = {row.id: row for row in details}
    counts = _pairs(
        session,
        select(ArtifactMetric.base_model_id, func.count())
        .where(
            ArtifactMetric.base_model_id.in_([row.base_model_id for row in winners]),
            ArtifactMetric.name == metric,
        )
        .group_by(ArtifactMetric.base_model_id),
    )
    return [
        Best(
            base_repo_id=by_id[row.artifact_id].base_repo_id,
            base_revision=by_id[row.artifact_id].revision,
            architecture=by_id[row.artifact_id].architecture,
            artifact_repo_id=by_id[row.artifact_id].repo_id,
            commit_sha=by_id[row.artifact_id].commit_sha,
            recipe=by_id[row.artifact_id].recipe,
            metric=metric,
            value=row.value,
            unit=row.unit,
            base_value=by_id[row.artifact_id].value,
            candidates=counts.get(row.base_model_id, 0),
        )
        for row in winners
    ]


def _pairs(session: Session, query: _AnySelect) -> dict[Any, Any]:
    """A two-column query as a dict (``dict(result)`` would take the Result for a mapping)."""
    return {key: value for key, value in session.execute(query)}


def show_artifact(
    session: Session, repo_id: str, *, namespace: str = DEFAULT_NAMESPACE, commit_sha: str | None = None
) -> dict[str, Any]:
    """Everything about a published repo's newest commit (or ``commit_sha``): base, recipe and its config,
    job, files, lineage, benchmark runs with metrics, and the repo's other commits."""
    query = select(Artifact).where(Artifact.namespace == namespace, Artifact.repo_id == repo_id)
    query = query.execution_options(populate_existing=True)
    if commit_sha:
        query = query.where(Artifact.commit_sha.startswith(commit_sha))
    artifacts = list(session.scalars(query.order_by(Artifact.created_at.desc(), Artifact.id.desc())))
    if not artifacts:
        key = f"{repo_id}@{commit_sha}" if commit_sha else repo_id
        raise NotFoundError("artifact", key, "List published artifacts with `pruna-hub catalogue list`.")
    artifact = artifacts[0]
    job = session.get(Job, artifact.job_id) if artifact.job_id is not None else None
    return {
        "artifact": _artifact_dict(artifact),
        "base": _base_dict(artifact.base_model),
        "recipe": _recipe_dict(artifact.recipe),
        "job": None if job is None else _job_dict(job),
        "lineage": _lineage(session, artifact.id),
        "benchmark_runs": _runs(session, artifact),
        "history": [
            {"commit_sha": a.commit_sha, "tag": a.tag, "created_at": a.created_at.isoformat()}
            for a in artifacts[1:]
        ],
    }


def _artifact_dict(artifact: Artifact) -> dict[str, Any]:
    return {
        "repo_id": artifact.repo_id,
        "commit_sha": artifact.commit_sha,
        "tag": artifact.tag,
        "files": artifact.files,
        "file_count": artifact.file_count,
        "total_bytes": artifact.total_bytes,
        "verified": artifact.verified,
        "verification_message": artifact.verification_message,
        "created_at": artifact.created_at.isoformat(),
    }


def _base_dict(base: BaseModel) -> dict[str, Any]:
    return {
        "repo_id": base.repo_id,
        "revision": base.revision,
        "architecture": base.architecture,
        "architectures": base.architectures,
        "model_type": base.model_type,
        "license": base.license,
        "gated": base.gated,
        "parameter_count": base.parameter_count,
        "size_bytes": base.size_bytes,
        "hub_created_at": _iso(base.hub_created_at),
        "hub_modified_at": _iso(base.hub_modified_at),
        "first_seen_at": _iso(base.first_seen_at),
        "last_checked_at": _iso(base.last_checked_at),
    }


def _recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "version": recipe.version,
        "content_hash": recipe.content_hash,
        "algorithms": [a.algorithm for a in recipe.algorithms],
        "smash_config": recipe.smash_config,
    }


def _job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "idempotency_key": job.idempotency_key,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "skip_reason": job.skip_reason,
        "error_type": job.last_error_type,
        "error_message": job.last_error_message,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _lineage(session: Session, artifact_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Lineage.relation, BaseModel.repo_id, BaseModel.revision)
        .join(BaseModel, BaseModel.id == Lineage.parent_base_model_id)
        .where(Lineage.child_artifact_id == artifact_id)
    )
    return [{"parent": repo, "parent_revision": rev, "relation": relation} for relation, repo, rev in rows]


def _runs(session: Session, artifact: Artifact) -> list[dict[str, Any]]:
    runs = session.scalars(
        select(BenchmarkRun).where(BenchmarkRun.artifact_id == artifact.id).order_by(BenchmarkRun.id.desc())
    )
    current = {artifact.smashed_run_id, artifact.base_run_id}
    return [
        {
            "id": run.id,
            "subject": run.subject,
            "current": run.id in current,
            "device": run.device,
            "device_name": run.device_name,
            "device_memory_bytes": run.device_memory_bytes,
            "library_versions": run.library_versions,
            "settings": run.settings,
            "hardware": run.hardware,
            "created_at": _iso(run.created_at),
            "metrics": [{"name": m.name, "value": m.value, "unit": m.unit} for m in run.metrics],
            "report": run.report,
        }
        for run in runs
    ]


def export_table(session: Session, filters: Filters | None = None, *, chunk: int = 2_000) -> ExportTable:
    """Every job matching ``filters`` with all metrics of its current base and smashed runs, streamed in
    chunks of ``chunk`` jobs (keyset pagination, so memory stays flat however big the catalogue is)."""
    filters = filters or Filters()
    names = session.execute(
        select(BenchmarkRun.subject, Metric.name)
        .join(Metric, Metric.run_id == BenchmarkRun.id)
        .where(BenchmarkRun.namespace == filters.namespace)
        .distinct()
    ).all()
    smashed = sorted({name for subject, name in names if subject == "smashed"})
    base = sorted({name for subject, name in names if subject == "base"})
    return ExportTable(smashed, base, _export_rows(session, filters, chunk))


def _export_rows(session: Session, filters: Filters, chunk: int) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        query = _entries_query(filters).where(Job.id > after).order_by(Job.id).limit(chunk)
        rows = list(session.execute(query))
        if not rows:
            return
        after = rows[-1].job_id
        algorithms = _algorithms(session, {row.recipe_id for row in rows})
        run_ids = [r for row in rows for r in (row.smashed_run_id, row.base_run_id) if r is not None]
        metrics = _metrics_of(session, run_ids)
        for row in rows:
            data = _entry(row, None, algorithms).to_dict()
            for key in ("metric", "value", "unit"):
                data.pop(key)
            data["smashed_metrics"] = metrics.get(row.smashed_run_id, {})
            data["base_metrics"] = metrics.get(row.base_run_id, {})
            yield data


def _metrics_of(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    result: dict[int, dict[str, float]] = {}
    if run_ids:
        for run_id, name, value in session.execute(
            select(Metric.run_id, Metric.name, Metric.value).where(Metric.run_id.in_(run_ids))
        ):
            result.setdefault(run_id, {})[name] = value
    return result


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
