"""Measurement jobs (a remote device times a search's network), where measurements ran, and the
search phase "waiting_device".

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Written by hand to match nas/store/models.py exactly (a test compares them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
PHASES_BEFORE = "phase IN ('queued', 'search', 'netadapt', 'final', 'done')"
PHASES_AFTER = "phase IN ('queued', 'search', 'netadapt', 'final', 'waiting_device', 'done')"


def _replace_phase_check(old: str, new: str) -> None:
    """Swap the CHECK on searches.phase.

    SQLite cannot alter a CHECK, and rebuilding the table (batch mode) drops the old one, which with
    foreign keys on cascades to every candidate, event and architecture of every search. So on SQLite
    the stored CREATE TABLE text is edited in place, as SQLite documents for removing or loosening
    constraints (https://sqlite.org/lang_altertable.html#otheralter); the rows already satisfy it.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_searches_phase_known"), "searches", type_="check")
        op.create_check_constraint(op.f("ck_searches_phase_known"), "searches", new)
        return
    created = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'searches'").scalar()
    if not isinstance(created, str) or created.count(old) != 1:
        raise RuntimeError(f"searches' CREATE TABLE does not hold the expected CHECK ({old}); cannot migrate")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'searches'", (created.replace(old, new),)
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = RESET")  # reloads the schema on this connection


def upgrade() -> None:
    op.add_column("lut_entries", sa.Column("environment", JSON_DOCUMENT, nullable=True))
    op.add_column("e2e_measurements", sa.Column("environment", JSON_DOCUMENT, nullable=True))
    _replace_phase_check(PHASES_BEFORE, PHASES_AFTER)
    op.create_table(
        "measurement_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column(
            "device_id",
            sa.Integer(),
            sa.ForeignKey("devices.id", name=op.f("fk_measurement_jobs_device_id_devices"), ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "search_id",
            sa.Integer(),
            sa.ForeignKey("searches.id", name=op.f("fk_measurement_jobs_search_id_searches"), ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("arch_hash", sa.String(length=64), nullable=False),
        sa.Column("spec", JSON_DOCUMENT, nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=True),
        sa.Column("iqr_ms", sa.Float(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=True),
        sa.Column("runtime_version", sa.String(length=50), nullable=True),
        sa.Column("environment", JSON_DOCUMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurement_jobs")),
        sa.UniqueConstraint("public_id", name=op.f("uq_measurement_jobs_public_id")),
        sa.CheckConstraint("status IN ('pending', 'done', 'cancelled')", name=op.f("ck_measurement_jobs_status_known")),
        sa.CheckConstraint("role IN ('winner', 'baseline', 'candidate')", name=op.f("ck_measurement_jobs_role_known")),
        sa.CheckConstraint("median_ms IS NULL OR median_ms > 0", name=op.f("ck_measurement_jobs_median_positive")),
        sa.CheckConstraint("iqr_ms IS NULL OR iqr_ms >= 0", name=op.f("ck_measurement_jobs_iqr_non_negative")),
        sa.CheckConstraint("runs IS NULL OR runs >= 1", name=op.f("ck_measurement_jobs_runs_positive")),
    )
    op.create_index(op.f("ix_measurement_jobs_search_id"), "measurement_jobs", ["search_id"])
    op.create_index("ix_measurement_jobs_device_id_status", "measurement_jobs", ["device_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_measurement_jobs_device_id_status", table_name="measurement_jobs")
    op.drop_index(op.f("ix_measurement_jobs_search_id"), table_name="measurement_jobs")
    op.drop_table("measurement_jobs")
    op.execute("UPDATE searches SET phase = 'final' WHERE phase = 'waiting_device'")
    _replace_phase_check(PHASES_AFTER, PHASES_BEFORE)
    op.drop_column("e2e_measurements", "environment")
    op.drop_column("lut_entries", "environment")
