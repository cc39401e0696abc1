"""Profiling kits: the manifest of every kit handed out, to validate uploaded results against.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "kits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.String(length=64), nullable=False),
        sa.Column(
            "device_id",
            sa.Integer(),
            sa.ForeignKey("devices.id", name=op.f("fk_kits_device_id_devices"), ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kit_version", sa.Integer(), nullable=False),
        sa.Column("manifest", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kits")),
        sa.UniqueConstraint("kit_id", name=op.f("uq_kits_kit_id")),
    )
    op.create_index(op.f("ix_kits_device_id"), "kits", ["device_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_kits_device_id"), table_name="kits")
    op.drop_table("kits")
