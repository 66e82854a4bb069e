"""The questions the web catalogue (``pruna-hub ui``) asks, as plain SQLAlchemy 2.0 selects.

Read-only by construction: every function takes a ``Session`` and only selects; ``open_read_only`` opens
the catalogue so that the database itself refuses writes too (``PRAGMA query_only`` on SQLite, read-only
transactions on PostgreSQL), and creates nothing (no file, no folder, no tables). Results are frozen
dataclasses or plain dicts, so templates never touch ORM objects (nor lazy loads after the session).

The list is driven from ``artifacts`` (newest first) and reads its metric columns from the
``artifact_metrics`` copy of the current smashed run, so a page costs a few indexed queries whatever the
catalogue's size.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, event, exists, func, or_, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from registry_db.engine import resolve_url
from registry_db.errors import CatalogueValueError, NotFoundError
from registry_db.jobs import parse_state
from registry_db.models import (
    DEFAULT_NAMESPACE,
    Artifact,
    ArtifactMetric,
    BaseModel,
    BenchmarkRun,
    Job,
    JobEvent,
    Lineage,
    Metric,
    Recipe,
    RecipeAlgorithm,
)
from registry_db.queries import metric_higher_is_better
from registry_db.session import Catalogue

_AnySelect = Select[*tuple[Any, ...]]
MAX_LIMIT = 1_000
# The columns of the list page, in order: (metric name, heading).
LIST_METRICS: tuple[tuple[str, str], ...] = (
    ("decode_latency_ms", "decode ms"),
    ("decode_tokens_per_s", "tokens/s"),
    ("top1_agreement", "top-1"),
    ("generation_agreement", "generation"),
)
PLOT_FILE = "benchmark.png"
CARD_FILE = "README.md"


def open_read_only(url: str | URL | None, *, namespace: str = DEFAULT_NAMESPACE) -> Catalogue:
    """Open an existing catalogue at head for reading only; the database refuses writes from it.

    Raises ``CatalogueMissingError`` (no file, or no tables: both name `pruna-hub db upgrade`),
    ``SchemaBehindError`` (names `pruna-hub db upgrade`), ``SchemaAheadError``, ``DatabaseURLError`` or
    ``DatabaseUnreachableError``; nothing is created in any case. After the schema check, SQLite
    connections open the file with ``mode=ro`` (a file deleted meanwhile is an error, not a new empty
    catalogue) and PostgreSQL sessions default to read-only transactions.
    """
    parsed = resolve_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    catalogue = Catalogue.open(parsed, namespace=namespace, read_only=True, **kwargs)
    if catalogue.engine.dialect.name == "sqlite":
        event.listen(catalogue.engine, "do_connect", _sqlite_read_only)
        catalogue.engine.dispose()  # the connection the schema check pooled predates the listener
    return catalogue


def _sqlite_read_only(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
    """Open the file through a ``mode=ro`` URI: SQLite then neither writes nor creates it."""
    if cargs and isinstance(cargs[0], str) and not cargs[0].startswith("file:"):
        cargs[0] = f"file:{urllib.parse.quote(cargs[0])}?mode=ro"
        cparams["uri"] = True


# --- the list -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricBound:
    """Keep artifacts whose current smashed ``name`` lies in [low, high] (None: unbounded)."""

    name: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        for bound in (self.low, self.high):
            if bound is not None and not math.isfinite(bound):
                raise CatalogueValueError(f"bound of {self.name}", bound, "a finite number")


@dataclass(frozen=True)
class ArtifactFilters:
    """What the list narrows to; None or empty means any. ``search`` is a case-insensitive substring of
    the artifact's or its base's repo id; ``family`` matches the base's architecture or model type."""

    namespace: str = DEFAULT_NAMESPACE
    search: str | None = None
    family: str | None = None
    algorithm: str | None = None
    device: str | None = None
    state: str | None = None
    bounds: tuple[MetricBound, ...] = ()


@dataclass(frozen=True)
class ArtifactRow:
    id: int
    repo_id: str
    commit_sha: str
    base_model_id: int
    base_repo_id: str
    base_revision: str
    architecture: str | None
    model_type: str | None
    recipe: str
    algorithms: tuple[str, ...]
    device: str | None
    state: str | None
    verified: bool | None
    total_bytes: int
    created_at: datetime
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactPage:
    rows: list[ArtifactRow]
    total: int
    offset: int
    limit: int


def list_artifacts(
    session: Session, filters: ArtifactFilters | None = None, *, offset: int = 0, limit: int = 100
) -> ArtifactPage:
    """Artifacts matching ``filters``, newest first, with their list metrics and the total count."""
    filters = filters or ArtifactFilters()
    if not 1 <= limit <= MAX_LIMIT:
        raise CatalogueValueError("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
    if offset < 0:
        raise CatalogueValueError("offset", offset, "an integer >= 0")
    query = _artifact_query(filters)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.execute(query.order_by(Artifact.id.desc()).offset(offset).limit(limit)))
    ids = [row.id for row in rows]
    algorithms = _algorithms(session, {row.recipe_id for row in rows})
    metrics = _artifact_metrics(session, ids, [name for name, _ in LIST_METRICS])
    return ArtifactPage([_row(r, algorithms, metrics) for r in rows], int(total), offset, limit)


def _artifact_query(filters: ArtifactFilters) -> _AnySelect:
    smashed_run = BenchmarkRun
    query = (
        select(
            Artifact.id,
            Artifact.repo_id,
            Artifact.commit_sha,
            Artifact.base_model_id,
            Artifact.recipe_id,
            Artifact.verified,
            Artifact.total_bytes,
            Artifact.created_at,
            BaseModel.repo_id.label("base_repo_id"),
            BaseModel.revision,
            BaseModel.architecture,
            BaseModel.model_type,
            Recipe.name.label("recipe"),
            smashed_run.device,
            Job.state,
        )
        .join(BaseModel, BaseModel.id == Artifact.base_model_id)
        .join(Recipe, Recipe.id == Artifact.recipe_id)
        .outerjoin(Job, Job.id == Artifact.job_id)
        .outerjoin(smashed_run, smashed_run.id == Artifact.smashed_run_id)
        .where(Artifact.namespace == filters.namespace)
    )
    if filters.search:
        pattern = f"%{_escape_like(filters.search.strip().lower())}%"
        query = query.where(
            or_(
                func.lower(Artifact.repo_id).like(pattern, escape="\\"),
                func.lower(BaseModel.repo_id).like(pattern, escape="\\"),
            )
        )
    if filters.family:
        query = query.where(
            or_(BaseModel.architecture == filters.family, BaseModel.model_type == filters.family)
        )
    if filters.algorithm:
        query = query.where(
            exists().where(
                RecipeAlgorithm.recipe_id == Artifact.recipe_id,
                RecipeAlgorithm.algorithm == filters.algorithm,
            )
        )
    if filters.device:
        query = query.where(smashed_run.device == filters.device)
    if filters.state:
        query = query.where(Job.state == parse_state(filters.state).value)
    for bound in filters.bounds:
        query = query.where(_bound_clause(bound))
    return query


def _bound_clause(bound: MetricBound) -> Any:
    conditions = [ArtifactMetric.artifact_id == Artifact.id, ArtifactMetric.name == bound.name]
    if bound.low is not None:
        conditions.append(ArtifactMetric.value >= bound.low)
    if bound.high is not None:
        conditions.append(ArtifactMetric.value <= bound.high)
    return exists().where(*conditions)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(row: Any, algorithms: dict[int, list[str]], metrics: dict[int, dict[str, float]]) -> ArtifactRow:
    return ArtifactRow(
        id=row.id,
        repo_id=row.repo_id,
        commit_sha=row.commit_sha,
        base_model_id=row.base_model_id,
        base_repo_id=row.base_repo_id,
        base_revision=row.revision,
        architecture=row.architecture,
        model_type=row.model_type,
        recipe=row.recipe,
        algorithms=tuple(algorithms.get(row.recipe_id, [])),
        device=row.device,
        state=row.state,
        verified=row.verified,
        total_bytes=row.total_bytes,
        created_at=row.created_at,
        metrics=metrics.get(row.id, {}),
    )


def _algorithms(session: Session, recipe_ids: Iterable[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    ids = sorted(set(recipe_ids))
    if ids:
        rows = session.execute(
            select(RecipeAlgorithm.recipe_id, RecipeAlgorithm.algorithm)
            .where(RecipeAlgorithm.recipe_id.in_(ids))
            .order_by(RecipeAlgorithm.recipe_id, RecipeAlgorithm.position)
        )
        for recipe_id, algorithm in rows:
            result.setdefault(recipe_id, []).append(algorithm)
    return result


def _artifact_metrics(
    session: Session, artifact_ids: Sequence[int], names: Sequence[str]
) -> dict[int, dict[str, float]]:
    result: dict[int, dict[str, float]] = {}
    if artifact_ids:
        rows = session.execute(
            select(ArtifactMetric.artifact_id, ArtifactMetric.name, ArtifactMetric.value).where(
                ArtifactMetric.artifact_id.in_(artifact_ids), ArtifactMetric.name.in_(names)
            )
        )
        for artifact_id, name, value in rows:
            result.setdefault(artifact_id, {})[name] = value
    return result


@dataclass(frozen=True)
class Choices:
    """The values the list's filter menus offer: what the catalogue holds, not a fixed list."""

    families: list[str]
    algorithms: list[str]
    devices: list[str]
    states: list[str]


def filter_choices(session: Session, namespace: str = DEFAULT_NAMESPACE) -> Choices:
    in_ns = Artifact.namespace == namespace
    bases = select(BaseModel.architecture, BaseModel.model_type).join(
        Artifact, Artifact.base_model_id == BaseModel.id
    )
    families = {v for row in session.execute(bases.where(in_ns).distinct()) for v in row if v}
    algorithms = session.scalars(
        select(RecipeAlgorithm.algorithm)
        .join(Artifact, Artifact.recipe_id == RecipeAlgorithm.recipe_id)
        .where(in_ns)
        .distinct()
    )
    devices = session.scalars(
        select(BenchmarkRun.device)
        .join(Artifact, Artifact.smashed_run_id == BenchmarkRun.id)
        .where(in_ns, BenchmarkRun.device.is_not(None))
        .distinct()
    )
    states = session.scalars(
        select(Job.state).join(Artifact, Artifact.job_id == Job.id).where(in_ns).distinct()
    )
    return Choices(sorted(families), sorted(algorithms), sorted(d for d in devices if d), sorted(states))


# --- one artifact -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    name: str
    unit: str | None
    base: float | None
    smashed: float | None
    higher_is_better: bool

    @property
    def ratio(self) -> float | None:
        if self.base is None or self.smashed is None or not self.base:
            return None
        return self.smashed / self.base

    @property
    def better(self) -> bool | None:
        """Whether the smashed value is better than the base's (None: not comparable or equal)."""
        if self.base is None or self.smashed is None or self.base == self.smashed:
            return None
        return (self.smashed > self.base) == self.higher_is_better


def artifact_detail(
    session: Session, artifact_id: int, *, namespace: str = DEFAULT_NAMESPACE
) -> dict[str, Any]:
    """Everything the artifact page shows: the artifact, its base, recipe and config, its job, lineage,
    metrics base vs smashed, the plot and card files, the jobs of its base and its sibling artifacts."""
    artifact = session.get(Artifact, artifact_id)
    if artifact is None or artifact.namespace != namespace:
        raise NotFoundError("artifact", artifact_id, "Pick one from the list at /.")
    base, recipe = artifact.base_model, artifact.recipe
    job = session.get(Job, artifact.job_id) if artifact.job_id is not None else None
    runs = _current_runs(session, artifact)
    files = {f["path"]: f["size"] for f in artifact.files}
    return {
        "artifact": _artifact_dict(artifact),
        "base": _base_dict(base),
        "recipe": {
            "name": recipe.name,
            "version": recipe.version,
            "content_hash": recipe.content_hash,
            "algorithms": [a.algorithm for a in recipe.algorithms],
            "smash_config": recipe.smash_config,
        },
        "job": None if job is None else _job_dict(job),
        "lineage": _lineage(session, artifact.id),
        "metrics": compare_runs(runs.get("base"), runs.get("smashed")),
        "runs": {subject: _run_dict(run) for subject, run in runs.items()},
        "plot_file": PLOT_FILE if PLOT_FILE in files else None,
        "card_text": _card_text(runs.get("smashed")),
        "card_file": CARD_FILE if CARD_FILE in files else None,
        "base_jobs": base_jobs(session, base.id),
        "siblings": _siblings(session, base.id, namespace),
    }


def _current_runs(session: Session, artifact: Artifact) -> dict[str, BenchmarkRun]:
    ids = [i for i in (artifact.base_run_id, artifact.smashed_run_id) if i is not None]
    if not ids:
        return {}
    runs = session.scalars(select(BenchmarkRun).where(BenchmarkRun.id.in_(ids)))
    return {run.subject: run for run in runs}


def compare_runs(base: BenchmarkRun | None, smashed: BenchmarkRun | None) -> list[MetricComparison]:
    """One row per metric either run has, base value beside smashed value."""
    base_values = {m.name: m for m in base.metrics} if base is not None else {}
    smashed_values = {m.name: m for m in smashed.metrics} if smashed is not None else {}
    rows = []
    for name in sorted(set(base_values) | set(smashed_values)):
        b, s = base_values.get(name), smashed_values.get(name)
        unit = (s.unit if s is not None else None) or (b.unit if b is not None else None)
        rows.append(
            MetricComparison(
                name,
                unit,
                None if b is None else b.value,
                None if s is None else s.value,
                metric_higher_is_better(name),
            )
        )
    return rows


def _card_text(run: BenchmarkRun | None) -> str | None:
    """The model card's text when the sync recorded it with the report (``report["card"]``)."""
    card = run.report.get("card") if run is not None else None
    return card if isinstance(card, str) and card.strip() else None


def _artifact_dict(artifact: Artifact) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "repo_id": artifact.repo_id,
        "commit_sha": artifact.commit_sha,
        "tag": artifact.tag,
        "files": list(artifact.files),
        "file_count": artifact.file_count,
        "total_bytes": artifact.total_bytes,
        "verified": artifact.verified,
        "verification_message": artifact.verification_message,
        "created_at": artifact.created_at,
    }


def _base_dict(base: BaseModel) -> dict[str, Any]:
    return {
        "id": base.id,
        "repo_id": base.repo_id,
        "revision": base.revision,
        "architecture": base.architecture,
        "model_type": base.model_type,
        "license": base.license,
        "gated": base.gated,
        "parameter_count": base.parameter_count,
        "size_bytes": base.size_bytes,
        "first_seen_at": base.first_seen_at,
        "last_checked_at": base.last_checked_at,
    }


def _job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "skip_reason": job.skip_reason,
        "error_type": job.last_error_type,
        "error_message": job.last_error_message,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def _run_dict(run: BenchmarkRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "device": run.device,
        "device_name": run.device_name,
        "library_versions": dict(run.library_versions),
        "settings": dict(run.settings),
        "created_at": run.created_at,
    }


def _lineage(session: Session, artifact_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Lineage.relation, BaseModel.id, BaseModel.repo_id, BaseModel.revision)
        .join(BaseModel, BaseModel.id == Lineage.parent_base_model_id)
        .where(Lineage.child_artifact_id == artifact_id)
    )
    return [
        {"relation": relation, "base_model_id": base_id, "parent": repo, "parent_revision": revision}
        for relation, base_id, repo, revision in rows
    ]


def base_jobs(session: Session, base_model_id: int) -> list[dict[str, Any]]:
    """Every job of one base revision (each recipe tried), with why it was skipped or failed."""
    rows = session.execute(
        select(Job, Recipe.name, Artifact.id.label("artifact_id"))
        .join(Recipe, Recipe.id == Job.recipe_id)
        .outerjoin(Artifact, Artifact.job_id == Job.id)
        .where(Job.base_model_id == base_model_id)
        .order_by(Job.id)
    )
    return [_job_dict(job) | {"recipe": name, "artifact_id": artifact_id} for job, name, artifact_id in rows]


def _siblings(session: Session, base_model_id: int, namespace: str) -> list[ArtifactRow]:
    query = _artifact_query(ArtifactFilters(namespace=namespace)).where(
        Artifact.base_model_id == base_model_id
    )
    rows = list(session.execute(query.order_by(Artifact.id)))
    metrics = _artifact_metrics(session, [r.id for r in rows], [n for n, _ in LIST_METRICS])
    algorithms = _algorithms(session, {r.recipe_id for r in rows})
    return [_row(r, algorithms, metrics) for r in rows]


# --- comparison ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One metric across the base and each compared artifact (same order as ``Comparison.artifacts``)."""

    name: str
    unit: str | None
    higher_is_better: bool
    base: float | None
    values: tuple[float | None, ...]
    ratios: tuple[float | None, ...]
    best: int | None  # index into values of the best artifact, None when fewer than two have a value


@dataclass(frozen=True)
class Comparison:
    base: dict[str, Any]
    artifacts: list[ArtifactRow]
    rows: list[ComparisonRow]


def compare_artifacts(
    session: Session,
    base_model_id: int,
    artifact_ids: Sequence[int] = (),
    *,
    namespace: str = DEFAULT_NAMESPACE,
) -> Comparison:
    """Artifacts of one base side by side (all of them unless ``artifact_ids`` picks some), each metric
    of their current smashed runs beside the base's value and the ratio to it (each against the base run
    it was measured with; the base column shows the newest of those)."""
    base = session.get(BaseModel, base_model_id)
    if base is None or base.namespace != namespace:
        raise NotFoundError("base model", base_model_id, "Pick an artifact from the list at / and compare.")
    artifacts = _siblings(session, base_model_id, namespace)
    if artifact_ids:
        wanted = set(artifact_ids)
        strangers = wanted - {a.id for a in artifacts}
        if strangers:
            raise CatalogueValueError(
                "artifact", sorted(strangers), f"artifacts of base {base.repo_id} ({base_model_id})"
            )
        artifacts = [a for a in artifacts if a.id in wanted]
    runs = _run_ids(session, [a.id for a in artifacts])
    values = _run_metrics(session, [r for pair in runs.values() for r in pair if r is not None])
    return Comparison(_base_dict(base), artifacts, _comparison_rows(artifacts, runs, values))


def _run_ids(session: Session, artifact_ids: Sequence[int]) -> dict[int, tuple[int | None, int | None]]:
    if not artifact_ids:
        return {}
    rows = session.execute(
        select(Artifact.id, Artifact.base_run_id, Artifact.smashed_run_id).where(
            Artifact.id.in_(artifact_ids)
        )
    )
    return {row.id: (row.base_run_id, row.smashed_run_id) for row in rows}


def _run_metrics(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, tuple[float, str | None]]]:
    result: dict[int, dict[str, tuple[float, str | None]]] = {}
    if run_ids:
        rows = session.execute(
            select(Metric.run_id, Metric.name, Metric.value, Metric.unit).where(Metric.run_id.in_(run_ids))
        )
        for run_id, name, value, unit in rows:
            result.setdefault(run_id, {})[name] = (value, unit)
    return result


def _comparison_rows(
    artifacts: list[ArtifactRow],
    runs: dict[int, tuple[int | None, int | None]],
    values: dict[int, dict[str, tuple[float, str | None]]],
) -> list[ComparisonRow]:
    base_runs = [runs.get(a.id, (None, None))[0] for a in artifacts]
    newest_base = max((r for r in base_runs if r is not None), default=None)
    smashed = [values.get(runs.get(a.id, (None, None))[1] or -1, {}) for a in artifacts]
    bases = [values.get(r or -1, {}) for r in base_runs]
    names = sorted({name for metrics in smashed for name in metrics})
    rows = []
    for name in names:
        cells = [m.get(name) for m in smashed]
        own_base = [b.get(name) for b in bases]
        unit = next((c[1] for c in cells if c is not None and c[1]), None)
        higher = metric_higher_is_better(name)
        numbers = tuple(None if c is None else c[0] for c in cells)
        ratios = tuple(
            None if v is None or b is None or not b[0] else v / b[0]
            for v, b in zip(numbers, own_base, strict=True)
        )
        base_value = values.get(newest_base or -1, {}).get(name)
        rows.append(
            ComparisonRow(
                name,
                unit,
                higher,
                None if base_value is None else base_value[0],
                numbers,
                ratios,
                _best_index(numbers, higher),
            )
        )
    return rows


def _best_index(values: Sequence[float | None], higher: bool) -> int | None:
    present = [(v, i) for i, v in enumerate(values) if v is not None]
    if len(present) < 2:
        return None
    return max(present, key=lambda p: (p[0] if higher else -p[0], -p[1]))[1]


# --- discovery log ------------------------------------------------------------------------------------------


def discovery_log(
    session: Session, *, namespace: str = DEFAULT_NAMESPACE, state: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Jobs the discovery created, newest first: what was queued, skipped (and why), or failed."""
    if not 1 <= limit <= MAX_LIMIT:
        raise CatalogueValueError("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
    query = (
        select(Job, BaseModel.repo_id, BaseModel.revision, Recipe.name, Artifact.id.label("artifact_id"))
        .join(BaseModel, BaseModel.id == Job.base_model_id)
        .join(Recipe, Recipe.id == Job.recipe_id)
        .outerjoin(Artifact, Artifact.job_id == Job.id)
        .where(Job.namespace == namespace)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    if state:
        query = query.where(Job.state == parse_state(state).value)
    return [
        _job_dict(job)
        | {"base_repo_id": repo, "base_revision": rev, "recipe": recipe, "artifact_id": artifact_id}
        | {"updated_at": job.updated_at, "reason": _reason(job)}
        for job, repo, rev, recipe, artifact_id in session.execute(query)
    ]


def _reason(job: Job) -> str | None:
    if job.skip_reason:
        return job.skip_reason
    if job.last_error_type:
        return f"{job.last_error_type}: {job.last_error_message or ''}".strip()
    return None


def recent_events(
    session: Session, *, namespace: str = DEFAULT_NAMESPACE, limit: int = 50
) -> list[dict[str, Any]]:
    """The operators' retries, requeues and cancels (``job_events``), newest first."""
    rows = session.scalars(
        select(JobEvent)
        .where(JobEvent.namespace == namespace)
        .order_by(JobEvent.created_at.desc(), JobEvent.id.desc())
        .limit(limit)
    )
    return [
        {
            "job_id": e.job_id,
            "action": e.action,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "actor": e.actor,
            "reason": e.reason,
            "created_at": e.created_at,
        }
        for e in rows
    ]


def last_discovery_at(session: Session, *, namespace: str = DEFAULT_NAMESPACE) -> datetime | None:
    """When discovery last looked at the Hub: each pass refreshes ``last_checked_at`` of every base
    model it sees, so the newest one is the last pass that found anything (None: never ran)."""
    value: datetime | None = session.scalar(
        select(func.max(BaseModel.last_checked_at)).where(BaseModel.namespace == namespace)
    )
    return value


def job_counts(session: Session, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, int]:
    """Jobs per state, every state present."""
    from registry_db.jobs import job_counts as counts

    return counts(session, namespace=namespace)
