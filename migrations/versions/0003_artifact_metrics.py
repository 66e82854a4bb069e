"""The current smashed metrics of each artifact in their own table, indexed for ranking (sort by a metric,
best per base) by namespace, metric, architecture and value. Backfilled from each artifact's current
smashed run; replaces the metrics (name, value) index, which no query uses any more.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 08:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_metrics",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=True),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_artifact_metrics_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name=op.f("fk_artifact_metrics_base_model_id_base_models")
        ),
        sa.PrimaryKeyConstraint("artifact_id", "name", name=op.f("pk_artifact_metrics")),
    )
    with op.batch_alter_table("artifact_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_artifact_metrics_rank", ["namespace", "name", "value"], unique=False)
        batch_op.create_index(
            "ix_artifact_metrics_arch_rank", ["namespace", "name", "architecture", "value"], unique=False
        )
        batch_op.create_index("ix_artifact_metrics_base", ["base_model_id", "name"], unique=False)
    op.execute(
        "INSERT INTO artifact_metrics "
        "(artifact_id, name, namespace, architecture, base_model_id, value, unit) "
        "SELECT a.id, m.name, a.namespace, b.architecture, a.base_model_id, m.value, m.unit "
        "FROM artifacts a JOIN base_models b ON b.id = a.base_model_id "
        "JOIN metrics m ON m.run_id = a.smashed_run_id"
    )
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_name_value")


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index("ix_metrics_name_value", ["name", "value"], unique=False)
    with op.batch_alter_table("artifact_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_artifact_metrics_base")
        batch_op.drop_index("ix_artifact_metrics_arch_rank")
        batch_op.drop_index("ix_artifact_metrics_rank")
    op.drop_table("artifact_metrics")
