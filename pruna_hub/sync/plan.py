"""What a claimed job will do, and the names it publishes under: shared by the job and its artifact."""

from __future__ import annotations

from dataclasses import dataclass

from pruna_hub.recipes import Recipe


@dataclass(frozen=True)
class Plan:
    """What a job will do, resolved from its catalogue rows and the loaded recipes."""

    job_id: int
    base_repo_id: str
    revision: str
    license: str | None
    recipe: Recipe
    target_repo_id: str
    tag: str


def publication_tag(revision: str) -> str:
    """The tag of the commit made from one base revision (a base revision publishes once)."""
    return f"base-{revision}"


def commit_title(plan: Plan) -> str:
    """Names the base revision and recipe hash in full: a crash between commit and tag is recognisable."""
    return (
        f"Smash {plan.base_repo_id}@{plan.revision} with {plan.recipe.name} ({plan.recipe.content_hash[:16]})"
    )
