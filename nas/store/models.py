"""Tables of the store: devices and what was measured on them.

The migrations in `nas/store/migrations/versions/` build exactly this schema; a test compares the two,
so a change here needs a new revision there.
"""

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Explicit constraint names: Alembic can only drop or alter a constraint it can name, and SQLite
# batch migrations rebuild tables from these names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LutSource = Literal["profiler", "kit", "agent"]
"""Where a LUT entry came from: this machine's profiler, an uploaded profiling kit, or the agent."""
LUT_SOURCES: tuple[LutSource, ...] = get_args(LutSource)

# JSONB on PostgreSQL (comparable, indexable), JSON text elsewhere. Mutable, so an in-place change
# such as `device.facts["cores"] = 8` is saved like an assignment would be. Given to each column
# explicitly: a type from `type_annotation_map` is copied, which loses the mutation tracking.
JSON_DOCUMENT = MutableDict.as_mutable(JSON().with_variant(JSONB(), "postgresql"))


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that reads back aware on every backend.

    PostgreSQL keeps the offset; SQLite stores text without one. Normalising to UTC on write and
    attaching UTC on read means code never compares naive with aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass a timezone-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base sharing one MetaData (with naming conventions) across all store tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime()}


class Device(Base):
    """A machine (or phone) latency is measured on: the runtime settings are part of its identity."""

    __tablename__ = "devices"
    __table_args__ = (CheckConstraint("threads >= 1", name="threads_positive"),)
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    runtime: Mapped[str] = mapped_column(String(50), default="onnxruntime", server_default="onnxruntime")
    runtime_version: Mapped[str] = mapped_column(String(50))
    execution_provider: Mapped[str] = mapped_column(
        String(100), default="CPUExecutionProvider", server_default="CPUExecutionProvider"
    )
    threads: Mapped[int] = mapped_column(Integer)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    lut_entries: Mapped[list["LutEntry"]] = relationship(
        back_populates="device", cascade="all, delete-orphan", passive_deletes=True
    )
    e2e_measurements: Mapped[list["E2EMeasurement"]] = relationship(
        back_populates="device", cascade="all, delete-orphan", passive_deletes=True
    )
    calibration: Mapped["Calibration | None"] = relationship(
        back_populates="device", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Device(id={self.id!r}, name={self.name!r}, threads={self.threads!r})"


class LutEntry(Base):
    """One block key's measured latency on one device: the unit the latency predictor sums."""

    __tablename__ = "lut_entries"
    __table_args__ = (
        UniqueConstraint("device_id", "key"),
        CheckConstraint("median_ms >= 0", name="median_non_negative"),
        CheckConstraint("iqr_ms >= 0", name="iqr_non_negative"),
        CheckConstraint("runs >= 1", name="runs_positive"),
        CheckConstraint("source IN ('profiler', 'kit', 'agent')", name="source_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    median_ms: Mapped[float] = mapped_column(Float)
    iqr_ms: Mapped[float] = mapped_column(Float)
    runs: Mapped[int] = mapped_column(Integer)
    runtime_version: Mapped[str] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(20))
    measured_at: Mapped[datetime] = mapped_column(server_default=func.now())

    device: Mapped[Device] = relationship(back_populates="lut_entries")


class E2EMeasurement(Base):
    """A whole network timed end to end on a device: ground truth for calibrating the predictor."""

    __tablename__ = "e2e_measurements"
    __table_args__ = (
        UniqueConstraint("device_id", "arch_hash"),
        CheckConstraint("median_ms >= 0", name="median_non_negative"),
        CheckConstraint("iqr_ms >= 0", name="iqr_non_negative"),
        CheckConstraint("runs >= 1", name="runs_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    arch_hash: Mapped[str] = mapped_column(String(64))
    spec_json: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    median_ms: Mapped[float] = mapped_column(Float)
    iqr_ms: Mapped[float] = mapped_column(Float)
    runs: Mapped[int] = mapped_column(Integer)
    runtime_version: Mapped[str] = mapped_column(String(50))
    madds: Mapped[int] = mapped_column(BigInteger)
    measured_at: Mapped[datetime] = mapped_column(server_default=func.now())

    device: Mapped[Device] = relationship(back_populates="e2e_measurements")


class Calibration(Base):
    """The device's current correction from summed LUT latency to measured end-to-end latency."""

    __tablename__ = "calibrations"
    __table_args__ = (CheckConstraint("n_measurements >= 0", name="n_measurements_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    method: Mapped[str] = mapped_column(String(50))
    coefficients: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    n_measurements: Mapped[int] = mapped_column(Integer)
    fitted_at: Mapped[datetime] = mapped_column(server_default=func.now())

    device: Mapped[Device] = relationship(back_populates="calibration")


class Kit(Base):
    """A profiling kit handed out for a device: its manifest is what uploaded results are checked against."""

    __tablename__ = "kits"

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    kit_version: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
