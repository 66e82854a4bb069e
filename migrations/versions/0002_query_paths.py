"""Query paths for the CLI: recipe algorithms as rows, artifacts pointing at their newest benchmark runs,
and an index to sort by a metric. Backfills all three from the data 0001 already holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:05:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lightweight table definitions for the backfill: migrations never import the (moving) ORM models.
_recipes = sa.table("recipes", sa.column("id", sa.Integer), sa.column("smash_config", sa.JSON))
_recipe_algorithms = sa.table(
    "recipe_algorithms",
    sa.column("recipe_id", sa.Integer),
    sa.column("position", sa.Integer),
    sa.column("algorithm", sa.Text),
)
_artifacts = sa.table(
    "artifacts",
    sa.column("id", sa.Integer),
    sa.column("job_id", sa.Integer),
    sa.column("smashed_run_id", sa.Integer),
    sa.column("base_run_id", sa.Integer),
)
_runs = sa.table(
    "benchmark_runs",
    sa.column("id", sa.Integer),
    sa.column("subject", sa.Text),
    sa.column("artifact_id", sa.Integer),
    sa.column("job_id", sa.Integer),
)


def upgrade() -> None:
    op.create_table(
        "recipe_algorithms",
        sa.Column("recipe_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipe_id"],
            ["recipes.id"],
            name=op.f("fk_recipe_algorithms_recipe_id_recipes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("recipe_id", "position", name=op.f("pk_recipe_algorithms")),
    )
    with op.batch_alter_table("recipe_algorithms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recipe_algorithms_algorithm"), ["algorithm"], unique=False)
    _backfill_recipe_algorithms()

    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("smashed_run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("base_run_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_artifacts_smashed_run_id_benchmark_runs"),
            "benchmark_runs",
            ["smashed_run_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_artifacts_base_run_id_benchmark_runs"),
            "benchmark_runs",
            ["base_run_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(batch_op.f("ix_artifacts_smashed_run_id"), ["smashed_run_id"], unique=False)
    _backfill_run_pointers()

    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index("ix_metrics_name_value", ["name", "value"], unique=False)


def _backfill_recipe_algorithms() -> None:
    bind = op.get_bind()
    rows: list[dict[str, Any]] = []
    for recipe_id, config in bind.execute(sa.select(_recipes.c.id, _recipes.c.smash_config)):
        if isinstance(config, str):
            config = json.loads(config)
        algorithms = (config or {}).get("algorithms") or {}
        rows += [
            {"recipe_id": recipe_id, "position": i, "algorithm": str(name)}
            for i, name in enumerate(algorithms)
        ]
    if rows:
        bind.execute(_recipe_algorithms.insert(), rows)


def _backfill_run_pointers() -> None:
    """Each artifact points at its newest smashed run and the newest base run of its job."""
    newest_smashed = (
        sa.select(sa.func.max(_runs.c.id))
        .where(_runs.c.subject == "smashed", _runs.c.artifact_id == _artifacts.c.id)
        .scalar_subquery()
    )
    newest_base = (
        sa.select(sa.func.max(_runs.c.id))
        .where(
            _runs.c.subject == "base",
            sa.or_(_runs.c.artifact_id == _artifacts.c.id, _runs.c.job_id == _artifacts.c.job_id),
        )
        .scalar_subquery()
    )
    op.get_bind().execute(_artifacts.update().values(smashed_run_id=newest_smashed, base_run_id=newest_base))


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_name_value")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_smashed_run_id"))
        batch_op.drop_constraint(batch_op.f("fk_artifacts_base_run_id_benchmark_runs"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_artifacts_smashed_run_id_benchmark_runs"), type_="foreignkey")
        batch_op.drop_column("base_run_id")
        batch_op.drop_column("smashed_run_id")
    with op.batch_alter_table("recipe_algorithms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recipe_algorithms_algorithm"))
    op.drop_table("recipe_algorithms")
