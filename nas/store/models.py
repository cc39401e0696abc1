"""Tables of the store: devices and what was measured on them.

The migrations in `nas/store/migrations/versions/` build exactly this schema; a test compares the two,
so a change here needs a new revision there.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.mutable import MutableDict, MutableList
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
    # The API key that registered it (None: the operator, from the CLI): only it or an admin writes the
    # device's LUT, measurements and calibration; others read it and search on it while it is shared.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The machine that measures it locally (nas.settings.machine_id); None for a phone or board.
    machine_id: Mapped[str | None] = mapped_column(String(64), index=True)

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
    # What it was measured on (kit_runner.machine_environment); None for entries older than 0005.
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON_DOCUMENT)

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
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON_DOCUMENT)

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


# --- searches ----------------------------------------------------------------------------------------
# A search under a latency budget, what it evaluated, what it produced and its log. Written by the API
# (create, cancel) and by the one worker that holds the search's claim (everything else).

SearchStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
SEARCH_STATUSES: tuple[SearchStatus, ...] = get_args(SearchStatus)
FINISHED_SEARCH_STATUSES: tuple[SearchStatus, ...] = ("succeeded", "failed", "cancelled")

SearchPhase = Literal["queued", "search", "netadapt", "final", "waiting_device", "done"]
"""Where a search is: waiting, strategy trials, NetAdapt shrinking, training the winner, waiting for a
remote device to measure a network, finished."""
SEARCH_PHASES: tuple[SearchPhase, ...] = get_args(SearchPhase)

CandidatePhase = Literal["search", "netadapt", "final", "baseline"]
CANDIDATE_PHASES: tuple[CandidatePhase, ...] = get_args(CandidatePhase)

CandidateStatus = Literal["completed", "pruned", "over_budget", "failed"]
"""completed: trained to the end; pruned: stopped early by the scheduler; over_budget: never trained."""
CANDIDATE_STATUSES: tuple[CandidateStatus, ...] = get_args(CandidateStatus)

CandidateEvaluation = Literal["trained", "inherited"]
"""trained: its own weights, trained (or stopped early); inherited: scored with a supernet's shared weights."""
CANDIDATE_EVALUATIONS: tuple[CandidateEvaluation, ...] = get_args(CandidateEvaluation)

ArchitectureRole = Literal["winner", "baseline"]
ARCHITECTURE_ROLES: tuple[ArchitectureRole, ...] = get_args(ArchitectureRole)

EventLevel = Literal["info", "warning", "error"]
EVENT_LEVELS: tuple[EventLevel, ...] = get_args(EventLevel)

# A JSON array (genomes, per-epoch accuracies): JSONB on PostgreSQL, mutation-tracked like JSON_DOCUMENT.
JSON_LIST = MutableList.as_mutable(JSON().with_variant(JSONB(), "postgresql"))


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that `column` holds one of `values` (kept in step with the Literal above)."""
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _new_public_id() -> str:
    return uuid.uuid4().hex


class Search(Base):
    """One requested search: the request as validated, then the state a worker moves it through.

    `public_id` is what the API exposes; `id` stays internal (candidates, events and architectures
    reference it). `worker_id`, `claimed_at` and `heartbeat_at` belong to the claim: a running search
    whose heartbeat is older than the stale limit may be claimed again by another worker.
    """

    __tablename__ = "searches"
    __table_args__ = (
        CheckConstraint(_one_of("status", SEARCH_STATUSES), name="status_known"),
        CheckConstraint(_one_of("phase", SEARCH_PHASES), name="phase_known"),
        CheckConstraint("budget_ms > 0", name="budget_positive"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_fraction"),
        CheckConstraint(
            "trials_done >= 0 AND trials_total >= 0 AND over_budget_skipped >= 0", name="counts_non_negative"
        ),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # Claiming looks for queued searches and running ones with a stale heartbeat.
        Index("ix_searches_status_heartbeat_at", "status", "heartbeat_at"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=_new_public_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"), index=True)
    space: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(200))
    budget_ms: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    phase: Mapped[str] = mapped_column(String(32), default="queued", server_default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    trials_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    trials_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    over_budget_skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    worker_id: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON_DOCUMENT)

    device: Mapped[Device] = relationship()
    candidates: Mapped[list["Candidate"]] = relationship(
        back_populates="search", cascade="all, delete-orphan", passive_deletes=True
    )
    architectures: Mapped[list["Architecture"]] = relationship(
        back_populates="search", cascade="all, delete-orphan", passive_deletes=True
    )
    events: Mapped[list["SearchEvent"]] = relationship(
        back_populates="search", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_SEARCH_STATUSES

    def __repr__(self) -> str:
        return f"Search(id={self.id!r}, public_id={self.public_id!r}, status={self.status!r}, phase={self.phase!r})"


class Candidate(Base):
    """One architecture a search evaluated (or skipped as over budget): at most one row per hash."""

    __tablename__ = "candidates"
    __table_args__ = (
        # Also the index for "all candidates of a search": search_id is its first column.
        UniqueConstraint("search_id", "arch_hash"),
        CheckConstraint(_one_of("phase", CANDIDATE_PHASES), name="phase_known"),
        CheckConstraint(_one_of("status", CANDIDATE_STATUSES), name="status_known"),
        CheckConstraint("predicted_ms >= 0", name="predicted_non_negative"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    arch_hash: Mapped[str] = mapped_column(String(64))
    genome: Mapped[list[int] | None] = mapped_column(JSON_LIST)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    phase: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    predicted_ms: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    accuracies: Mapped[list[float]] = mapped_column(JSON_LIST, default=list, server_default="[]")
    params: Mapped[int] = mapped_column(BigInteger)
    madds: Mapped[int] = mapped_column(BigInteger)
    trial_id: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    train_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # One of CANDIDATE_EVALUATIONS (no CHECK: SQLite cannot add one to an existing table in place).
    evaluation: Mapped[str] = mapped_column(String(16), default="trained", server_default="trained")

    search: Mapped[Search] = relationship(back_populates="candidates")


class Architecture(Base):
    """An exported network a search produced (or a baseline): spec, artifacts and its numbers."""

    __tablename__ = "architectures"
    __table_args__ = (
        CheckConstraint(_one_of("role", ARCHITECTURE_ROLES), name="role_known"),
        CheckConstraint("predicted_ms >= 0", name="predicted_non_negative"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=_new_public_id)
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    arch_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    predicted_ms: Mapped[float] = mapped_column(Float)
    measured_ms: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    params: Mapped[int] = mapped_column(BigInteger)
    madds: Mapped[int] = mapped_column(BigInteger)
    artifact_dir: Mapped[str] = mapped_column(String(500))
    # File names relative to artifact_dir: {"spec": ..., "onnx": ..., "weights": ...}.
    files: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # On the search's held-out test images (never used to select), at the deployment resolution; the
    # images' positions in the dataset as loaded, so anyone can score the download on the same ones.
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    test_indices: Mapped[list[int]] = mapped_column(JSON_LIST, default=list, server_default="[]")

    search: Mapped[Search | None] = relationship(back_populates="architectures")


class SearchEvent(Base):
    """One line of a search's log. Ids only grow, so `id` doubles as the SSE `Last-Event-ID`."""

    __tablename__ = "search_events"
    __table_args__ = (
        CheckConstraint(_one_of("level", EVENT_LEVELS), name="level_known"),
        # "Events of this search after id N, in order": the SSE resume query.
        Index("ix_search_events_search_id_id", "search_id", "id"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    level: Mapped[str] = mapped_column(String(16), default="info", server_default="info")
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, default=dict, server_default="{}")

    search: Mapped[Search] = relationship(back_populates="events")


class ApiKey(Base):
    """A bearer token's stored half. The token is `hwnas_<key_id>_<secret>`; only SHA-256 of the
    secret is kept (tokens are 256-bit random, so a slow password hash buys nothing)."""

    __tablename__ = "api_keys"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


DATASET_KINDS = ("npz", "imagefolder")


class Dataset(Base):
    """A dataset a user uploaded: the file lives under the artifact directory, validated on upload."""

    __tablename__ = "datasets"
    __table_args__ = (
        CheckConstraint(_one_of("kind", DATASET_KINDS), name="kind_known"),
        CheckConstraint("size_bytes >= 0", name="size_non_negative"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=_new_public_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_classes: Mapped[int] = mapped_column(Integer)
    num_images: Mapped[int] = mapped_column(Integer)
    image_shape: Mapped[list[int]] = mapped_column(JSON_LIST, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --- measurement jobs --------------------------------------------------------------------------------
# A network the server wants timed end to end on a remote device (a search's winner, its baseline):
# the device's agent (or a verification kit) answers it with a measurement.

MeasurementJobStatus = Literal["pending", "done", "cancelled"]
MEASUREMENT_JOB_STATUSES: tuple[MeasurementJobStatus, ...] = get_args(MeasurementJobStatus)

MeasurementJobRole = Literal["winner", "baseline", "candidate"]
MEASUREMENT_JOB_ROLES: tuple[MeasurementJobRole, ...] = get_args(MeasurementJobRole)


class MeasurementJob(Base):
    """One network to time on one device; answered once (median, spread, runs, environment)."""

    __tablename__ = "measurement_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", MEASUREMENT_JOB_STATUSES), name="status_known"),
        CheckConstraint(_one_of("role", MEASUREMENT_JOB_ROLES), name="role_known"),
        CheckConstraint("median_ms IS NULL OR median_ms > 0", name="median_positive"),
        CheckConstraint("iqr_ms IS NULL OR iqr_ms >= 0", name="iqr_non_negative"),
        CheckConstraint("runs IS NULL OR runs >= 1", name="runs_positive"),
        # "Pending jobs of this device, oldest first": what the agent polls.
        Index("ix_measurement_jobs_device_id_status", "device_id", "status"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=_new_public_id)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    arch_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    answered_at: Mapped[datetime | None]
    median_ms: Mapped[float | None] = mapped_column(Float)
    iqr_ms: Mapped[float | None] = mapped_column(Float)
    runs: Mapped[int | None] = mapped_column(Integer)
    runtime_version: Mapped[str | None] = mapped_column(String(50))
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON_DOCUMENT)

    device: Mapped[Device] = relationship()
    search: Mapped[Search | None] = relationship()


# --- supernets ---------------------------------------------------------------------------------------

SupernetStatus = Literal["training", "ready", "failed"]
SUPERNET_STATUSES: tuple[SupernetStatus, ...] = get_args(SupernetStatus)


class Supernet(Base):
    """A trained weight-sharing supernet: one per (dataset content and split, space, training resolution,
    recipe), so a later search on the same data reuses it. The weights live in a file under the artifact
    directory; `path` is relative to it."""

    __tablename__ = "supernets"
    __table_args__ = (CheckConstraint(_one_of("status", SUPERNET_STATUSES), name="status_known"),)
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=_new_public_id)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    dataset: Mapped[str] = mapped_column(String(200))
    space: Mapped[str] = mapped_column(String(64))
    train_resolution: Mapped[int] = mapped_column(Integer)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    status: Mapped[str] = mapped_column(String(16), default="training", server_default="training")
    path: Mapped[str | None] = mapped_column(String(500))
    train_seconds: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
