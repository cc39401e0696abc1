"""Devices get an owner (the API key that registered them), a shared flag, and the machine id of the
machine that measures them locally (replacing hostname identity).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

Written by hand to match nas/store/models.py exactly (a test compares them). A device registered as
"this machine" before this revision recorded the machine's hostname in its facts; that value is copied
into `machine_id`, so setting HWNAS_MACHINE_ID to the old hostname keeps such a device local.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

THIS_MACHINE_FACT = "this_machine"


def upgrade() -> None:
    op.add_column("devices", sa.Column("owner", sa.String(length=64), nullable=True))
    op.add_column("devices", sa.Column("shared", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column("devices", sa.Column("machine_id", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_devices_owner"), "devices", ["owner"], unique=False)
    op.create_index(op.f("ix_devices_machine_id"), "devices", ["machine_id"], unique=False)
    devices = sa.table("devices", sa.column("id", sa.Integer()), sa.column("facts", sa.JSON()),
                       sa.column("machine_id", sa.String()))  # fmt: skip
    bind = op.get_bind()
    for device_id, facts in bind.execute(sa.select(devices.c.id, devices.c.facts)).all():
        machine = (facts or {}).get(THIS_MACHINE_FACT) if isinstance(facts, dict) else None
        if machine:
            bind.execute(devices.update().where(devices.c.id == device_id).values(machine_id=str(machine)[:64]))


def downgrade() -> None:
    op.drop_index(op.f("ix_devices_machine_id"), table_name="devices")
    op.drop_index(op.f("ix_devices_owner"), table_name="devices")
    op.drop_column("devices", "machine_id")
    op.drop_column("devices", "shared")
    op.drop_column("devices", "owner")
