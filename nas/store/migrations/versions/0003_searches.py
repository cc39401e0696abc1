"""Searches: the request and its state, the candidates evaluated, the architectures produced, the log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Written by hand to match nas/store/models.py exactly (a test compares them); as in 0001, the allowed
values of each CHECK are spelled out here so this revision keeps building the same schema.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _search_fk(table: str, nullable: bool = False) -> sa.Column:
    return sa.Column(
        "search_id",
        sa.Integer(),
        sa.ForeignKey("searches.id", name=op.f(f"fk_{table}_search_id_searches"), ondelete="CASCADE"),
        nullable=nullable,
    )


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column(
            "device_id",
            sa.Integer(),
            sa.ForeignKey("devices.id", name=op.f("fk_searches_device_id_devices"), ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("space", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("budget_ms", sa.Float(), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("request", JSON_DOCUMENT, nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("phase", sa.String(length=32), server_default="queued", nullable=False),
        sa.Column("progress", sa.Float(), server_default="0", nullable=False),
        _count("trials_done"),
        _count("trials_total"),
        _count("over_budget_skipped"),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=True),
        _timestamp("claimed_at", nullable=True),
        _timestamp("heartbeat_at", nullable=True),
        _count("attempts"),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", JSON_DOCUMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_searches")),
        sa.UniqueConstraint("public_id", name=op.f("uq_searches_public_id")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_searches_status_known")
        ),
        sa.CheckConstraint(
            "phase IN ('queued', 'search', 'netadapt', 'final', 'done')", name=op.f("ck_searches_phase_known")
        ),
        sa.CheckConstraint("budget_ms > 0", name=op.f("ck_searches_budget_positive")),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_searches_progress_fraction")),
        sa.CheckConstraint(
            "trials_done >= 0 AND trials_total >= 0 AND over_budget_skipped >= 0",
            name=op.f("ck_searches_counts_non_negative"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_searches_attempts_non_negative")),
    )
    op.create_index(op.f("ix_searches_owner"), "searches", ["owner"])
    op.create_index(op.f("ix_searches_device_id"), "searches", ["device_id"])
    op.create_index(op.f("ix_searches_status_heartbeat_at"), "searches", ["status", "heartbeat_at"])

    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        _search_fk("candidates"),
        sa.Column("arch_hash", sa.String(length=64), nullable=False),
        sa.Column("genome", JSON_DOCUMENT, nullable=True),
        sa.Column("spec", JSON_DOCUMENT, nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("predicted_ms", sa.Float(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("accuracies", JSON_DOCUMENT, server_default="[]", nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("madds", sa.BigInteger(), nullable=False),
        sa.Column("trial_id", sa.String(length=100), nullable=True),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
        sa.UniqueConstraint("search_id", "arch_hash", name=op.f("uq_candidates_search_id_arch_hash")),
        sa.CheckConstraint(
            "phase IN ('search', 'netadapt', 'final', 'baseline')", name=op.f("ck_candidates_phase_known")
        ),
        sa.CheckConstraint(
            "status IN ('completed', 'pruned', 'over_budget', 'failed')", name=op.f("ck_candidates_status_known")
        ),
        sa.CheckConstraint("predicted_ms >= 0", name=op.f("ck_candidates_predicted_non_negative")),
    )

    op.create_table(
        "architectures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        _search_fk("architectures", nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("arch_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("spec", JSON_DOCUMENT, nullable=False),
        sa.Column("predicted_ms", sa.Float(), nullable=False),
        sa.Column("measured_ms", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("madds", sa.BigInteger(), nullable=False),
        sa.Column("artifact_dir", sa.String(length=500), nullable=False),
        sa.Column("files", JSON_DOCUMENT, server_default="{}", nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_architectures")),
        sa.UniqueConstraint("public_id", name=op.f("uq_architectures_public_id")),
        sa.CheckConstraint("role IN ('winner', 'baseline')", name=op.f("ck_architectures_role_known")),
        sa.CheckConstraint("predicted_ms >= 0", name=op.f("ck_architectures_predicted_non_negative")),
    )
    op.create_index(op.f("ix_architectures_search_id"), "architectures", ["search_id"])
    op.create_index(op.f("ix_architectures_owner"), "architectures", ["owner"])

    op.create_table(
        "search_events",
        sa.Column("id", sa.Integer(), nullable=False),
        _search_fk("search_events"),
        _timestamp("created_at"),
        sa.Column("level", sa.String(length=16), server_default="info", nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", JSON_DOCUMENT, server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_events")),
        sa.CheckConstraint("level IN ('info', 'warning', 'error')", name=op.f("ck_search_events_level_known")),
    )
    op.create_index(op.f("ix_search_events_search_id_id"), "search_events", ["search_id", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_search_events_search_id_id"), table_name="search_events")
    op.drop_table("search_events")
    op.drop_index(op.f("ix_architectures_owner"), table_name="architectures")
    op.drop_index(op.f("ix_architectures_search_id"), table_name="architectures")
    op.drop_table("architectures")
    op.drop_table("candidates")
    op.drop_index(op.f("ix_searches_status_heartbeat_at"), table_name="searches")
    op.drop_index(op.f("ix_searches_device_id"), table_name="searches")
    op.drop_index(op.f("ix_searches_owner"), table_name="searches")
    op.drop_table("searches")
