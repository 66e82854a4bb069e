"""Discovery: list what is new on the Hub, decide for each model, and record every decision.

Listing pages through everything new since the last pass: a cursor per set of filters (authors, pipeline
tags, libraries, search) keeps the creation time of the newest model the last complete pass decided, and
the next pass takes the oldest ``limit`` models created since, so a busy Hub is worked through in order
instead of only its newest page being seen. The first pass starts from the newest ``limit`` models.

Every candidate is recorded in the catalogue (``candidates``: queued, skipped with its reason, or an
error), ``no_recipe`` included, and shown by ``pruna-hub catalogue candidates``. A queued or otherwise
screened model also gets a job keyed by (base revision, recipe hash). Recipes are matched on the model's
whole config.json (its family, attention kind, experts), and its size is checked against the budget from
that config as well as from the safetensors metadata, before anything is built. One candidate that cannot
be decided (an unreadable config, a Hub error, a failed ranking) is recorded as an error and the pass
goes on.

Re-running is harmless: a (revision, recipe) already in the catalogue is reported as ``seen`` and its job
is left as it is, unless the recipe of that name has changed since (then it is decided again and the new
job supersedes the unstarted old one). A new revision of a model is a new base-model row and so a new job.
Discovery also re-checks the current revision of every base model the catalogue published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pruna_hub import metrics
from pruna_hub.errors import HubError, HubGatedError, HubNotFoundError, RankingError
from pruna_hub.recipes import Recipe
from pruna_hub.recipes.profile import profile_of
from pruna_hub.recipes.ranking import untimed
from pruna_hub.screening import Skip, SkipReason, architectures, parameter_count, screen
from pruna_hub.sync.context import SyncContext
from registry_db.errors import CatalogueError
from registry_db.store import BaseFacts, JobRef, RecipeSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What discovery decided for one model revision."""

    repo_id: str
    revision: str
    action: str  # "queued" | "skipped" | "seen" | "error" | "would_queue"
    recipe: str | None = None
    reason: str | None = None
    detail: str | None = None
    job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Filters:
    """What a pass lists: any author x pipeline tag x library, and a search string."""

    authors: tuple[str, ...]
    pipeline_tags: tuple[str, ...]
    libraries: tuple[str, ...]
    search: str | None

    @property
    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, default=list)


def filters_of(ctx: SyncContext) -> Filters:
    """The settings' filters; pipeline tags and libraries may list several, separated by commas."""
    settings = ctx.settings
    return Filters(
        authors=tuple(sorted(settings.authors)),
        pipeline_tags=_split(settings.pipeline_tag),
        libraries=_split(settings.library),
        search=settings.search,
    )


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(sorted({part.strip() for part in (value or "").split(",") if part.strip()}))


def discover(ctx: SyncContext, *, dry_run: bool = False) -> list[Decision]:
    """Decide for the models new since the last pass (and the updated published ones); a dry run reads
    the cursor but writes nothing, the cursor included."""
    with metrics.time_step("discover"):
        decisions = _discover(ctx, dry_run=dry_run)
    metrics.discovery_pass()
    return decisions


def _discover(ctx: SyncContext, *, dry_run: bool) -> list[Decision]:
    filters = filters_of(ctx)
    listed = _new_models(ctx, filters)
    candidates = {info.id: info for info in listed}
    for info in _updated_published(ctx, exclude=set(candidates)):
        candidates.setdefault(info.id, info)
    for info in _behind_a_changed_recipe(ctx, exclude=set(candidates)):
        candidates.setdefault(info.id, info)
    decisions = [_decide_one(ctx, info, dry_run=dry_run) for info in candidates.values()]
    newest = max((i.created_at for i in listed if i.created_at is not None), default=None)
    if newest is not None and not dry_run:
        ctx.store.advance_cursor(filters.key, newest)
    return decisions


def _new_models(ctx: SyncContext, filters: Filters) -> list[Any]:
    """The oldest ``limit`` undecided models created since the cursor (with the decided ones among them,
    reported as seen), or the newest ``limit`` on a first pass."""
    since = ctx.store.cursor(filters.key)
    listed = ctx.hub.list_new_models(
        authors=filters.authors,
        pipeline_tags=filters.pipeline_tags,
        libraries=filters.libraries,
        search=filters.search,
        since=since,
        limit=None if since is not None else ctx.settings.limit,
    )
    if since is None:
        return listed
    chosen, fresh = [], 0
    for info in sorted(listed, key=lambda i: (i.created_at or since, i.id)):
        if not ctx.store.decided(info.id, info.sha or ""):  # the cursor's own model is seen, not counted
            if fresh == ctx.settings.limit:
                break
            fresh += 1
        chosen.append(info)
    return chosen


def _decide_one(ctx: SyncContext, info: Any, *, dry_run: bool) -> Decision:
    """One candidate, never fatal for the pass: what cannot be decided is recorded as an error."""
    seen = _seen(ctx, info.id, info.sha)
    if seen is not None:
        return seen
    try:  # listings are summaries: files, config and card come with the full model info
        full = ctx.hub.model_info(info.id, revision=info.sha)
        decision = decide(ctx, full, dry_run=dry_run)
    except CatalogueError:
        raise  # the catalogue itself is gone: no later candidate could be recorded either
    except (HubError, RankingError, OSError, ValueError, RuntimeError, MemoryError) as e:
        logger.warning("deciding %s failed: %s: %s", info.id, type(e).__name__, e)
        reason = e.outcome if isinstance(e, HubError) else type(e).__name__
        decision = Decision(info.id, info.sha or "", "error", reason=reason, detail=str(e)[:2000])
    if not dry_run and decision.action != "seen":
        ctx.store.note_candidate(
            decision.repo_id,
            decision.revision,
            decision.action,
            reason=decision.reason,
            detail=decision.detail,
            recipe_name=decision.recipe,
            job_id=decision.job_id,
        )
    return decision


def _seen(ctx: SyncContext, repo_id: str, revision: str | None) -> Decision | None:
    """The decision already recorded for this revision, or None when it must be decided (again): a new
    revision, or one whose job was made with a recipe that has changed since (its content hash differs
    from the loaded recipe of that name, and no job has the new hash yet)."""
    jobs = ctx.store.revision_jobs(repo_id, revision or "")
    if not jobs or _changed_recipes(ctx, jobs):
        return None
    job = jobs[0]
    return Decision(
        repo_id,
        revision or "",
        "seen",
        job.recipe_name,
        detail=f"job {job.job_id} is {job.state}",
        job_id=job.job_id,
    )


def _changed_recipes(ctx: SyncContext, jobs: Sequence[JobRef]) -> set[str]:
    """Names of loaded recipes that made a job of this revision and changed since, with no job yet for
    their current content."""
    hashes = {(job.recipe_name, job.recipe_hash) for job in jobs}
    return {
        name
        for name, _ in hashes
        if name in ctx.book and (name, ctx.book.get(name).content_hash) not in hashes
    }


def _updated_published(ctx: SyncContext, *, exclude: set[str]) -> Iterable[Any]:
    """Current info of published base models whose Hub revision moved on since they were published."""
    for repo_id, revisions in sorted(ctx.store.published_revisions().items()):
        if repo_id in exclude:
            continue
        try:
            info = ctx.hub.model_info(repo_id)
        except HubError as e:
            logger.warning("re-checking %s failed: %s", repo_id, e)
            continue
        if info.sha not in revisions:
            yield info


def _behind_a_changed_recipe(ctx: SyncContext, *, exclude: set[str]) -> Iterable[Any]:
    """Known base revisions whose job was made by an older version of a loaded recipe: decided again,
    although the cursor has moved past them, so that the changed recipe is queued for them."""
    current = {recipe.name: recipe.content_hash for recipe in ctx.book}
    for repo_id, revision in ctx.store.revisions_behind(current):
        if repo_id in exclude:
            continue
        try:
            yield ctx.hub.model_info(repo_id, revision=revision)
        except HubError as e:
            logger.warning("re-checking %s@%s for a changed recipe failed: %s", repo_id, revision[:12], e)


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
    readable = _readable(ctx, info)
    config = _full_config(ctx, info) if readable and info.config else dict(info.config or {})
    candidates = ctx.book.top_tier(config, ctx.device)
    skip = screen(
        info,
        readable=readable,
        has_recipe=bool(candidates),
        max_parameters=ctx.settings.max_parameters,
        no_recipe_detail=f"no recipe for {ctx.device} matches {profile_of(config).describe()}",
    )
    if not candidates:
        assert skip is not None
        return Decision(info.id, info.sha, "skipped", reason=skip.reason.value, detail=skip.detail)
    recipe, why = candidates[0], None
    if skip is None:
        parameters, skip = _size(ctx, info, config)
        fitting = [r for r in candidates if not r.budget.exceeded(parameters=parameters)]
        if skip is None and not fitting:
            skip = Skip(SkipReason.TOO_LARGE, str(recipe.budget.exceeded(parameters=parameters)))
        elif skip is None and len(fitting) > 1:
            # A dry run names the tie instead of timing it: it smashes, compiles and stores nothing.
            recipe, why = untimed(fitting) if dry_run else ctx.rank_recipes(fitting, config)
        elif skip is None:
            recipe = fitting[0]
    if dry_run:
        return _dry_run_decision(ctx, info, recipe, skip, why)
    return _record(ctx, info, recipe, skip, why)


def _size(ctx: SyncContext, info: Any, config: dict[str, Any]) -> tuple[int | None, Skip | None]:
    """The larger of the parameter counts the safetensors metadata and config.json imply, counted on
    the meta device (nothing is allocated), or why the config cannot be counted or is over budget."""
    from smash.architectures import MIN_MODULES, PARAMETERS_PER_MODULE, config_parameters
    from smash.errors import ArtifactError, ModelTooLargeError

    declared = parameter_count(info)
    budget = ctx.settings.max_parameters
    try:
        counted = config_parameters(
            config,
            location=f"{info.id}@{info.sha[:12]}",
            module_limit=max(MIN_MODULES, budget // PARAMETERS_PER_MODULE),
        )
    except ModelTooLargeError as e:
        return None, Skip(SkipReason.TOO_LARGE, str(e))
    except ArtifactError as e:
        return None, Skip(SkipReason.UNREADABLE, str(e))
    parameters = max(declared or 0, counted) or None
    if parameters is not None and parameters > budget:
        source = "config.json" if counted >= (declared or 0) else "the safetensors metadata"
        return parameters, Skip(
            SkipReason.TOO_LARGE, f"{source} implies {parameters:,} parameters > budget {budget:,}"
        )
    return parameters, None


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
    except (HubError, OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        logger.warning("config.json of %s could not be read (%s); using the Hub's summary", repo_id, e)
        config = None
    return config if isinstance(config, dict) else dict(summary or {})


def recipe_spec(recipe: Recipe) -> RecipeSpec:
    """``recipe`` as the catalogue keeps it."""
    return RecipeSpec(
        name=recipe.name,
        content_hash=recipe.content_hash,
        smash_config=recipe.smash_config().to_dict(),
        version=str(recipe.version),
        algorithms=tuple(recipe.order),
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
    base = BaseFacts(
        repo_id=info.id,
        revision=info.sha,
        architectures=tuple(architectures(info)),
        model_type=config.get("model_type") if isinstance(config.get("model_type"), str) else None,
        license=_license(info),
        gated=bool(getattr(info, "gated", False)),
        parameter_count=parameter_count(info),
        hub_created_at=getattr(info, "created_at", None),
        hub_modified_at=getattr(info, "last_modified", None),
    )
    reason = f"{skip.reason.value}: {skip.detail}" if skip else None
    job = ctx.store.queue_or_skip(
        base, recipe_spec(recipe), skip_reason=reason, max_attempts=ctx.settings.max_attempts
    )
    if job.superseded:
        why = (why + "; " if why else "") + f"supersedes job {', '.join(map(str, job.superseded))}"
    if not job.created:
        return Decision(
            info.id,
            info.sha,
            "seen",
            recipe.name,
            detail=f"job {job.job_id} is {job.state}",
            job_id=job.job_id,
        )
    if skip is not None:
        return Decision(info.id, info.sha, "skipped", recipe.name, skip.reason.value, skip.detail, job.job_id)
    return Decision(info.id, info.sha, "queued", recipe.name, detail=why, job_id=job.job_id)


def _license(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    value = card.get("license") if card is not None else None
    return value if isinstance(value, str) else None
