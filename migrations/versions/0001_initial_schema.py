"""Initial schema: base models, recipes, jobs with leases, artifacts, lineage, benchmark runs and metrics.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 07:55:30.327687
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.Text(), server_default="default", nullable=False),
        sa.Column("repo_id", sa.Text(), nullable=False),
        sa.Column("revision", sa.Text(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=True),
        sa.Column("architectures", sa.JSON(), nullable=False),
        sa.Column("model_type", sa.Text(), nullable=True),
        sa.Column("license", sa.Text(), nullable=True),
        sa.Column("gated", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("parameter_count", sa.BigInteger(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("hub_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hub_modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_models")),
        sa.UniqueConstraint(
            "namespace", "repo_id", "revision", name=op.f("uq_base_models_namespace_repo_id_revision")
        ),
    )
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_base_models_architecture"), ["architecture"], unique=False)
        batch_op.create_index(batch_op.f("ix_base_models_repo_id"), ["repo_id"], unique=False)

    op.create_table(
        "recipes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.Text(), server_default="default", nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("smash_config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipes")),
        sa.UniqueConstraint(
            "namespace", "name", "content_hash", name=op.f("uq_recipes_namespace_name_content_hash")
        ),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.Text(), server_default="default", nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("recipe_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error_type", sa.Text(), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('benchmarked', 'discovered', 'failed', 'published', 'queued', 'running', "
            "'skipped', 'smashed')",
            name=op.f("ck_jobs_state"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts")),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name=op.f("fk_jobs_base_model_id_base_models")
        ),
        sa.ForeignKeyConstraint(["recipe_id"], ["recipes.id"], name=op.f("fk_jobs_recipe_id_recipes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("namespace", "idempotency_key", name=op.f("uq_jobs_namespace_idempotency_key")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_base_model_id"), ["base_model_id"], unique=False)
        batch_op.create_index(
            "ix_jobs_claim_leased", ["namespace", "state", "lease_expires_at"], unique=False
        )
        batch_op.create_index("ix_jobs_claim_queued", ["namespace", "state", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_recipe_id"), ["recipe_id"], unique=False)

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.Text(), server_default="default", nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("recipe_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.Text(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("file_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("verification_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name=op.f("fk_artifacts_base_model_id_base_models")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_artifacts_job_id_jobs")),
        sa.ForeignKeyConstraint(["recipe_id"], ["recipes.id"], name=op.f("fk_artifacts_recipe_id_recipes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("job_id", name=op.f("uq_artifacts_job_id")),
        sa.UniqueConstraint(
            "namespace", "repo_id", "commit_sha", name=op.f("uq_artifacts_namespace_repo_id_commit_sha")
        ),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_base_model_id"), ["base_model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_recipe_id"), ["recipe_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_repo_id"), ["repo_id"], unique=False)

    op.create_table(
        "benchmark_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.Text(), server_default="default", nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("device", sa.Text(), nullable=True),
        sa.Column("device_name", sa.Text(), nullable=True),
        sa.Column("device_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("torch_version", sa.Text(), nullable=True),
        sa.Column("transformers_version", sa.Text(), nullable=True),
        sa.Column("hqq_version", sa.Text(), nullable=True),
        sa.Column("smash_version", sa.Text(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("library_versions", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("subject IN ('base', 'smashed')", name=op.f("ck_benchmark_runs_subject")),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_benchmark_runs_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name=op.f("fk_benchmark_runs_base_model_id_base_models")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_benchmark_runs_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_runs")),
    )
    with op.batch_alter_table("benchmark_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_benchmark_runs_artifact_id"), ["artifact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_benchmark_runs_base_model_id"), ["base_model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_benchmark_runs_job_id"), ["job_id"], unique=False)

    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_base_model_id", sa.Integer(), nullable=False),
        sa.Column("child_artifact_id", sa.Integer(), nullable=False),
        sa.Column("relation", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_lineage_child_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_base_model_id"],
            ["base_models.id"],
            name=op.f("fk_lineage_parent_base_model_id_base_models"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage")),
        sa.UniqueConstraint(
            "parent_base_model_id",
            "child_artifact_id",
            name=op.f("uq_lineage_parent_base_model_id_child_artifact_id"),
        ),
    )
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_child_artifact_id"), ["child_artifact_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_lineage_parent_base_model_id"), ["parent_base_model_id"], unique=False
        )

    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["benchmark_runs.id"],
            name=op.f("fk_metrics_run_id_benchmark_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_metrics_run_id_name")),
    )


def downgrade() -> None:
    op.drop_table("metrics")
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_parent_base_model_id"))
        batch_op.drop_index(batch_op.f("ix_lineage_child_artifact_id"))

    op.drop_table("lineage")
    with op.batch_alter_table("benchmark_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_benchmark_runs_job_id"))
        batch_op.drop_index(batch_op.f("ix_benchmark_runs_base_model_id"))
        batch_op.drop_index(batch_op.f("ix_benchmark_runs_artifact_id"))

    op.drop_table("benchmark_runs")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_repo_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_recipe_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_base_model_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_recipe_id"))
        batch_op.drop_index("ix_jobs_claim_queued")
        batch_op.drop_index("ix_jobs_claim_leased")
        batch_op.drop_index(batch_op.f("ix_jobs_base_model_id"))

    op.drop_table("jobs")
    op.drop_table("recipes")
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_base_models_repo_id"))
        batch_op.drop_index(batch_op.f("ix_base_models_architecture"))

    op.drop_table("base_models")
