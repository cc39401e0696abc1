"""Devices and what is measured on them: LUT entries, end-to-end measurements, calibrations.

Revision ID: 0001
Revises:
Create Date: 2025-11-24

Written by hand to match nas/store/models.py exactly (a test compares them). Types and constraint
names are spelled out here rather than imported from the models, so this revision keeps building
the same schema after the models move on. Names are wrapped in `op.f()` so Alembic takes them as
final instead of running them through the models' naming convention a second time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _device_fk(table: str) -> sa.Column:
    return sa.Column(
        "device_id",
        sa.Integer(),
        sa.ForeignKey("devices.id", name=op.f(f"fk_{table}_device_id_devices"), ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("runtime", sa.String(length=50), server_default="onnxruntime", nullable=False),
        sa.Column("runtime_version", sa.String(length=50), nullable=False),
        sa.Column("execution_provider", sa.String(length=100), server_default="CPUExecutionProvider", nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("facts", JSON_DOCUMENT, server_default="{}", nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("name", name=op.f("uq_devices_name")),
        sa.CheckConstraint("threads >= 1", name=op.f("ck_devices_threads_positive")),
    )

    op.create_table(
        "lut_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        _device_fk("lut_entries"),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("median_ms", sa.Float(), nullable=False),
        sa.Column("iqr_ms", sa.Float(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("runtime_version", sa.String(length=50), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        _timestamp("measured_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lut_entries")),
        sa.UniqueConstraint("device_id", "key", name=op.f("uq_lut_entries_device_id_key")),
        sa.CheckConstraint("median_ms >= 0", name=op.f("ck_lut_entries_median_non_negative")),
        sa.CheckConstraint("iqr_ms >= 0", name=op.f("ck_lut_entries_iqr_non_negative")),
        sa.CheckConstraint("runs >= 1", name=op.f("ck_lut_entries_runs_positive")),
        sa.CheckConstraint("source IN ('profiler', 'kit', 'agent')", name=op.f("ck_lut_entries_source_known")),
    )
    op.create_index(op.f("ix_lut_entries_device_id"), "lut_entries", ["device_id"])

    op.create_table(
        "e2e_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        _device_fk("e2e_measurements"),
        sa.Column("arch_hash", sa.String(length=64), nullable=False),
        sa.Column("spec_json", JSON_DOCUMENT, nullable=False),
        sa.Column("median_ms", sa.Float(), nullable=False),
        sa.Column("iqr_ms", sa.Float(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("runtime_version", sa.String(length=50), nullable=False),
        sa.Column("madds", sa.BigInteger(), nullable=False),
        _timestamp("measured_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_e2e_measurements")),
        sa.UniqueConstraint("device_id", "arch_hash", name=op.f("uq_e2e_measurements_device_id_arch_hash")),
        sa.CheckConstraint("median_ms >= 0", name=op.f("ck_e2e_measurements_median_non_negative")),
        sa.CheckConstraint("iqr_ms >= 0", name=op.f("ck_e2e_measurements_iqr_non_negative")),
        sa.CheckConstraint("runs >= 1", name=op.f("ck_e2e_measurements_runs_positive")),
    )
    op.create_index(op.f("ix_e2e_measurements_device_id"), "e2e_measurements", ["device_id"])

    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        _device_fk("calibrations"),
        sa.Column("method", sa.String(length=50), nullable=False),
        sa.Column("coefficients", JSON_DOCUMENT, nullable=False),
        sa.Column("n_measurements", sa.Integer(), nullable=False),
        _timestamp("fitted_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
        sa.UniqueConstraint("device_id", name=op.f("uq_calibrations_device_id")),
        sa.CheckConstraint("n_measurements >= 0", name=op.f("ck_calibrations_n_measurements_non_negative")),
    )


def downgrade() -> None:
    op.drop_table("calibrations")
    op.drop_index(op.f("ix_e2e_measurements_device_id"), table_name="e2e_measurements")
    op.drop_table("e2e_measurements")
    op.drop_index(op.f("ix_lut_entries_device_id"), table_name="lut_entries")
    op.drop_table("lut_entries")
    op.drop_table("devices")
