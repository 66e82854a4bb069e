"""Discovery: list new models on the Hub, decide for each, and record the decision in the catalogue.

Every candidate ends as a job keyed by (base revision, recipe hash): ``queued`` when it will be smashed,
``skipped`` with a reason otherwise. A candidate without a matching recipe has no recipe to key a job on,
so its base model is recorded with the skip reason in the run's outcome list (not as a job).

Re-running is harmless: a (revision, recipe) already in the catalogue is reported as ``seen`` and its job
is left as it is. A new revision of a model is a new base-model row and so a new job: it publishes again
(a new commit and tag in the same repo). Besides the newest models, discovery re-checks the current
revision of every base model the catalogue published, so a base updated after publishing is caught even
when it is no longer among the newest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from pruna_hub.errors import HubError, HubGatedError, HubNotFoundError
from pruna_hub.recipes import Recipe
from pruna_hub.recipes.ranking import untimed
from pruna_hub.screening import Skip, SkipReason, architectures, parameter_count, screen
from pruna_hub.sync.context import SyncContext
from registry_db.jobs import create_or_get_job, skip_job
from registry_db.models import Artifact, BaseModel, Job, JobState
from registry_db.models import Recipe as RecipeRow
from registry_db.records import upsert_base_model, upsert_recipe

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What discovery decided for one model revision."""

    repo_id: str
    revision: str
    action: str  # "queued" | "skipped" | "seen"
    recipe: str | None = None
    reason: str | None = None
    detail: str | None = None
    job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def discover(ctx: SyncContext, *, dry_run: bool = False) -> list[Decision]:
    """Decide for the newest models matching the filters and the updated published ones."""
    settings = ctx.settings
    listed = ctx.hub.list_new_models(
        authors=settings.authors,
        pipeline_tags=[settings.pipeline_tag] if settings.pipeline_tag else [],
        libraries=[settings.library] if settings.library else [],
        search=settings.search,
        limit=settings.limit,
    )
    candidates = {info.id: info for info in listed}
    for info in _updated_published(ctx, exclude=set(candidates)):
        candidates.setdefault(info.id, info)
    decisions = []
    for info in candidates.values():
        seen = _seen(ctx, info.id, info.sha)
        if seen is not None:
            decisions.append(seen)
            continue
        try:  # listings are summaries: files, config and card come with the full model info
            full = ctx.hub.model_info(info.id, revision=info.sha)
        except HubError as e:
            decisions.append(Decision(info.id, info.sha or "", "error", reason=e.outcome, detail=str(e)))
            continue
        decisions.append(decide(ctx, full, dry_run=dry_run))
    return decisions


def _seen(ctx: SyncContext, repo_id: str, revision: str | None) -> Decision | None:
    """The decision already recorded for this revision, or None when it must be decided (again): a new
    revision, or one whose job was made with a recipe that has changed since (its content hash differs
    from the loaded recipe of that name, and no job has the new hash yet)."""
    with ctx.catalogue.read_session() as session:
        rows = session.execute(
            select(Job.id, Job.state, RecipeRow.name, RecipeRow.content_hash)
            .join(BaseModel, Job.base_model_id == BaseModel.id)
            .join(RecipeRow, Job.recipe_id == RecipeRow.id)
            .where(
                BaseModel.namespace == ctx.catalogue.namespace,
                BaseModel.repo_id == repo_id,
                BaseModel.revision == revision,
            )
            .order_by(Job.id.desc())
        ).all()
    if not rows or _changed_recipes(ctx, rows):
        return None
    row = rows[0]
    return Decision(
        repo_id, revision or "", "seen", row.name, detail=f"job {row.id} is {row.state}", job_id=row.id
    )


def _changed_recipes(ctx: SyncContext, rows: Sequence[Any]) -> set[str]:
    """Names of loaded recipes that made a job of this revision and changed since, with no job yet for
    their current content."""
    hashes = {(row.name, row.content_hash) for row in rows}
    return {
        name
        for name, _ in hashes
        if name in ctx.book and (name, ctx.book.get(name).content_hash) not in hashes
    }


def _supersede(session: Session, base: BaseModel, recipe: Recipe, job_id: int) -> list[int]:
    """Skip the unstarted jobs of this base revision made with an older version of ``recipe``: the new
    job replaces them (claimed, they would only fail with JobPlanError)."""
    stale = session.scalars(
        select(Job.id)
        .join(RecipeRow, Job.recipe_id == RecipeRow.id)
        .where(
            Job.base_model_id == base.id,
            Job.id != job_id,
            RecipeRow.name == recipe.name,
            RecipeRow.content_hash != recipe.content_hash,
            Job.state.in_([JobState.QUEUED.value, JobState.DISCOVERED.value]),
        )
    ).all()
    for stale_id in stale:
        skip_job(session, stale_id, f"superseded by job {job_id}: recipe {recipe.name} changed")
    return list(stale)


def _updated_published(ctx: SyncContext, *, exclude: set[str]) -> Iterable[Any]:
    """Current info of published base models whose Hub revision moved on since they were published."""
    with ctx.catalogue.read_session() as session:
        rows = session.execute(
            select(BaseModel.repo_id, BaseModel.revision)
            .join(Job, Job.base_model_id == BaseModel.id)
            .join(Artifact, Artifact.job_id == Job.id)
            .where(BaseModel.namespace == ctx.catalogue.namespace)
        ).all()
    published: dict[str, set[str]] = {}
    for repo_id, revision in rows:
        published.setdefault(repo_id, set()).add(revision)
    for repo_id, revisions in sorted(published.items()):
        if repo_id in exclude:
            continue
        try:
            info = ctx.hub.model_info(repo_id)
        except HubError as e:
            logger.warning("re-checking %s failed: %s", repo_id, e)
            continue
        if info.sha not in revisions:
            yield info


def _readable(ctx: SyncContext, info: Any) -> bool:
    """Whether the configured token can read the files of a gated or private repo."""
    if not (getattr(info, "gated", False) or getattr(info, "private", False)):
        return True
    try:
        ctx.hub.download(info.id, revision=info.sha, allow_patterns=["config.json"])
    except (HubGatedError, HubNotFoundError):
        return False
    return True


def decide(ctx: SyncContext, info: Any, *, dry_run: bool = False) -> Decision:
    candidates = ctx.book.top_tier(info.config or {}, ctx.device)
    skip = screen(
        info,
        readable=_readable(ctx, info),
        has_recipe=bool(candidates),
        max_parameters=ctx.settings.max_parameters,
    )
    if not candidates:
        assert skip is not None
        return Decision(info.id, info.sha, "skipped", reason=skip.reason.value, detail=skip.detail)
    recipe, why = candidates[0], None
    if skip is None:
        parameters = parameter_count(info)
        fitting = [r for r in candidates if not r.budget.exceeded(parameters=parameters)]
        if not fitting:
            skip = Skip(SkipReason.TOO_LARGE, str(recipe.budget.exceeded(parameters=parameters)))
        elif len(fitting) > 1:
            # A dry run names the tie instead of timing it: it smashes, compiles and stores nothing.
            recipe, why = untimed(fitting) if dry_run else ctx.rank_recipes(fitting, _full_config(ctx, info))
        else:
            recipe = fitting[0]
    if dry_run:
        return _dry_run_decision(ctx, info, recipe, skip, why)
    return _record(ctx, info, recipe, skip, why)


def _full_config(ctx: SyncContext, info: Any) -> dict[str, Any]:
    """The model's whole config.json: the Hub's model info carries only a summary of it."""
    return full_config(ctx, info.id, info.sha, summary=info.config)


def full_config(
    ctx: SyncContext, repo_id: str, revision: str, *, summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``config.json`` of one revision (one small download, cached by the Hub client); ``summary`` (or
    empty) when it cannot be read."""
    try:
        path = ctx.hub.download(repo_id, revision=revision, allow_patterns=["config.json"]) / "config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
    except (HubError, OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        logger.warning("config.json of %s could not be read (%s); ranking from the Hub's summary", repo_id, e)
        config = None
    return config if isinstance(config, dict) else dict(summary or {})


def recipe_row(session: Session, namespace: str, recipe: Recipe) -> RecipeRow:
    """The catalogue row of ``recipe`` (by content hash), created if new."""
    return upsert_recipe(
        session,
        namespace=namespace,
        name=recipe.name,
        content_hash=recipe.content_hash,
        smash_config=recipe.smash_config().to_dict(),
        version=str(recipe.version),
        algorithms=list(recipe.order),
    )


def _dry_run_decision(
    ctx: SyncContext, info: Any, recipe: Recipe, skip: Skip | None, why: str | None
) -> Decision:
    if skip is not None:
        return Decision(info.id, info.sha, "skipped", recipe.name, skip.reason.value, skip.detail)
    target = recipe.repo_id(info.id, target_org=ctx.settings.target_org)
    detail = f"would publish to {target}" + (f"; {why}" if why else "")
    return Decision(info.id, info.sha, "would_queue", recipe.name, detail=detail)


def _record(ctx: SyncContext, info: Any, recipe: Recipe, skip: Skip | None, why: str | None) -> Decision:
    config = info.config or {}
    namespace = ctx.catalogue.namespace
    with ctx.catalogue.session() as session:
        base = upsert_base_model(
            session,
            namespace=namespace,
            repo_id=info.id,
            revision=info.sha,
            architectures=architectures(info),
            model_type=config.get("model_type"),
            license=_license(info),
            gated=bool(getattr(info, "gated", False)),
            parameter_count=parameter_count(info),
            hub_created_at=getattr(info, "created_at", None),
            hub_modified_at=getattr(info, "last_modified", None),
        )
        row = recipe_row(session, namespace, recipe)
        job, created = create_or_get_job(
            session,
            base,
            row,
            state="skipped" if skip else "queued",
            skip_reason=f"{skip.reason.value}: {skip.detail}" if skip else None,
            max_attempts=ctx.settings.max_attempts,
        )
        job_id, state = job.id, job.state
        superseded = _supersede(session, base, recipe, job_id) if created and not skip else []
    if superseded:
        why = (why + "; " if why else "") + f"supersedes job {', '.join(map(str, superseded))}"
    if not created:
        return Decision(
            info.id, info.sha, "seen", recipe.name, detail=f"job {job_id} is {state}", job_id=job_id
        )
    if skip is not None:
        return Decision(info.id, info.sha, "skipped", recipe.name, skip.reason.value, skip.detail, job_id)
    return Decision(info.id, info.sha, "queued", recipe.name, detail=why, job_id=job_id)


def _license(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    value = card.get("license") if card is not None else None
    return value if isinstance(value, str) else None
