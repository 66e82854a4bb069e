"""A ``rank_by`` tie's next recipe, queued when the one discovery chose fails its quality gate.

Discovery queues one recipe of a tie: the fastest on this host (``recipes.ranking``). Speed is measured on
random weights, quality only on the real ones, so the fastest recipe can still miss its own gate on a
given model: an 8-bit recipe's top-1 agreement is a property of the weights. The base model is then not
lost: the job fails with its measured numbers (as any gate failure does) and the next recipe of the tie
is queued for the same base revision, ranked the same way among the recipes not tried yet. Each recipe
is tried at most once per base revision (its job is keyed by (revision, recipe hash)), so a tie whose
every recipe fails ends with every job failed and nothing published.

A recipe outside a tie has no other recipe to fall back to: its failure stays final.
"""

from __future__ import annotations

import logging

from pruna_hub.errors import HubError, RankingError
from pruna_hub.recipes import Recipe
from pruna_hub.sync.context import SyncContext
from pruna_hub.sync.discovery import full_config, recipe_spec
from registry_db.errors import CatalogueError

logger = logging.getLogger(__name__)


def queue_next_tied(
    ctx: SyncContext, failed: Recipe, base_model_id: int, repo_id: str, revision: str, job_id: int
) -> int | None:
    """Queue the next recipe of ``failed``'s tie for this base revision; its job id, or None when
    ``failed`` is not in a tie or every tied recipe already has a job. Never raises: a fallback that
    cannot be queued is reported, and the failed job stays as recorded."""
    try:
        return _queue_next(ctx, failed, base_model_id, repo_id, revision, job_id)
    except (HubError, CatalogueError, RankingError) as e:
        ctx.report(f"job {job_id}: could not queue the next recipe of the tie ({type(e).__name__}: {e})")
        return None


def _queue_next(
    ctx: SyncContext, failed: Recipe, base_model_id: int, repo_id: str, revision: str, job_id: int
) -> int | None:
    if failed.rank_by is None:
        return None
    config = full_config(ctx, repo_id, revision)
    tie = ctx.book.top_tier(config, ctx.device)
    if failed.name not in {r.name for r in tie}:
        # The recipes changed since the job was queued, or config.json could not be read (logged).
        ctx.report(f"job {job_id}: {failed.name} no longer ties for {repo_id}; no other recipe is queued")
        return None
    tried = ctx.store.recipes_tried(base_model_id)
    untried = [r for r in tie if r.content_hash not in tried]
    if not untried:
        ctx.report(f"job {job_id}: every recipe of the tie failed on {repo_id}; nothing is published")
        return None
    if len(untried) > 1:
        recipe, why = ctx.rank_recipes(untried, config)
    else:
        recipe, why = untried[0], f"{untried[0].name}, the tie's last untried recipe"
    queued = ctx.store.queue_recipe(
        base_model_id, recipe_spec(recipe), max_attempts=ctx.settings.max_attempts
    )
    if queued.created:
        ctx.report(
            f"job {job_id}: {failed.name} failed its quality gate; queued job {queued.job_id} with {why}"
        )
    return queued.job_id
