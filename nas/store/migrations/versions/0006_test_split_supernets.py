"""Test accuracy of exported architectures, how a candidate was evaluated, and trained supernets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Written by hand to match nas/store/models.py exactly (a test compares them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("architectures", sa.Column("test_accuracy", sa.Float(), nullable=True))
    op.add_column("architectures", sa.Column("test_indices", JSON_DOCUMENT, server_default="[]", nullable=False))
    op.add_column("candidates", sa.Column("evaluation", sa.String(length=16), server_default="trained", nullable=False))
    op.create_table(
        "supernets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("space", sa.String(length=64), nullable=False),
        sa.Column("train_resolution", sa.Integer(), nullable=False),
        sa.Column("recipe", JSON_DOCUMENT, nullable=False),
        sa.Column("status", sa.String(length=16), server_default="training", nullable=False),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.Column("metrics", JSON_DOCUMENT, server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supernets")),
        sa.UniqueConstraint("public_id", name=op.f("uq_supernets_public_id")),
        sa.UniqueConstraint("key", name=op.f("uq_supernets_key")),
        sa.CheckConstraint("status IN ('training', 'ready', 'failed')", name=op.f("ck_supernets_status_known")),
    )


def downgrade() -> None:
    op.drop_table("supernets")
    # Plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch rebuild would cascade-delete children.
    op.drop_column("candidates", "evaluation")
    op.drop_column("architectures", "test_indices")
    op.drop_column("architectures", "test_accuracy")
