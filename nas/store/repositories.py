"""Repositories: the only code that writes store tables, one class per kind of record.

Each takes a `Session` and leaves committing to the caller's `session_scope`, so several
repositories can take part in one transaction. Measurements go in and out as frozen dataclasses
rather than ORM rows, so the latency code never depends on SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from nas.store.errors import DeviceExistsError, DeviceNotFoundError, StoreError
from nas.store.models import Base, Calibration, Device, E2EMeasurement, Kit, LutEntry, LutSource

# Bound on parameters per IN (...) list: keeps deletes of large key sets under SQLite's limits.
_IN_CLAUSE_CHUNK = 500


@dataclass(frozen=True)
class LutEntryData:
    """One measured block key; `measured_at=None` means "now" when stored."""

    key: str
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str
    source: LutSource
    measured_at: datetime | None = None
    environment: dict[str, str] | None = None


@dataclass(frozen=True)
class E2EMeasurementData:
    """A whole network's measured latency, with the spec and MAdds needed to refit calibration."""

    arch_hash: str
    spec_json: dict[str, Any]
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str
    madds: int
    measured_at: datetime | None = None
    environment: dict[str, str] | None = None


@dataclass(frozen=True)
class CalibrationData:
    """A device's current predictor calibration, as fitted."""

    method: str
    coefficients: dict[str, Any]
    n_measurements: int
    fitted_at: datetime


def _upsert(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[InstrumentedAttribute[Any]],
) -> None:
    """INSERT rows, or UPDATE every other column where the conflict columns already match.

    One statement per batch instead of select-then-write, so two writers racing on the same key
    cannot both insert. SQLite and PostgreSQL spell it the same way but through their own
    `insert` constructs. The rows bypass the identity map, which is why the reads below ask for
    `populate_existing`: an object loaded before the upsert must not shadow the new values.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(model)
    elif dialect == "sqlite":
        statement = sqlite.insert(model)
    else:
        raise StoreError(f"upserts are implemented for SQLite and PostgreSQL, not {dialect!r}")
    conflict_names = {column.key for column in conflict_columns}
    updated = {name: statement.excluded[name] for name in rows[0] if name not in conflict_names and name != "id"}
    statement = statement.on_conflict_do_update(index_elements=list(conflict_columns), set_=updated)
    session.execute(statement, list(rows))


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now() -> datetime:
    return datetime.now(UTC)


def _environment_counts(
    session: Session, model: type[LutEntry] | type[E2EMeasurement], device_id: int
) -> list[tuple[dict[str, Any] | None, int]]:
    """Distinct `environment` documents of a device's rows, most frequent first.

    Counted in Python: JSON is not comparable on SQLite and PostgreSQL alike, and a device has at
    most a few thousand rows.
    """
    counts: dict[str, tuple[dict[str, Any] | None, int]] = {}
    for environment in session.scalars(select(model.environment).where(model.device_id == device_id)):
        document = dict(environment) if environment is not None else None
        token = json.dumps(document, sort_keys=True)
        counts[token] = (document, counts.get(token, (document, 0))[1] + 1)
    return sorted(counts.values(), key=lambda item: -item[1])


class DeviceRepository:
    """Devices by name: names are what users type, ids are what other tables reference."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        name: str,
        runtime_version: str,
        threads: int,
        execution_provider: str = "CPUExecutionProvider",
        runtime: str = "onnxruntime",
        facts: dict[str, Any] | None = None,
        owner: str | None = None,
        shared: bool = True,
        machine_id: str | None = None,
    ) -> Device:
        """Store a new device and return it with its id assigned.

        Checks the name first for a clear error, and still catches the unique-constraint violation
        for the case where another writer took the name in between.
        """
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if self.get_by_name(name) is not None:
            raise DeviceExistsError(name)
        device = Device(
            name=name,
            runtime=runtime,
            runtime_version=runtime_version,
            execution_provider=execution_provider,
            threads=threads,
            facts=dict(facts or {}),
            owner=owner,
            shared=shared,
            machine_id=machine_id,
        )
        try:
            # A savepoint, so a lost race rolls back only this insert and the session stays usable.
            with self._session.begin_nested():
                self._session.add(device)
                self._session.flush()
        except IntegrityError as error:
            if self.get_by_name(name) is not None:
                raise DeviceExistsError(name) from error
            raise
        return device

    def get(self, device_id: int) -> Device | None:
        return self._session.get(Device, device_id)

    def get_by_name(self, name: str) -> Device | None:
        return self._session.scalars(select(Device).where(Device.name == name)).one_or_none()

    def require(self, name: str) -> Device:
        """The device called `name`; raises `DeviceNotFoundError` so callers need no None check."""
        device = self.get_by_name(name)
        if device is None:
            raise DeviceNotFoundError(name)
        return device

    def require_id(self, device_id: int) -> Device:
        """The device with `device_id`; raises `DeviceNotFoundError` (the API addresses by id)."""
        device = self.get(device_id)
        if device is None:
            raise DeviceNotFoundError(device_id)
        return device

    def delete(self, name: str) -> None:
        """Remove a device; the database cascades to its LUT, measurements and calibration."""
        self._session.delete(self.require(name))
        self._session.flush()

    def list(self, visible_to: str | None = None) -> list[Device]:
        """Every device, or (`visible_to` a key id) those it owns and the shared ones."""
        statement = select(Device).order_by(Device.name)
        if visible_to is not None:
            statement = statement.where(or_(Device.shared.is_(True), Device.owner == visible_to))
        return list(self._session.scalars(statement))


class LutRepository:
    """A device's latency lookup table: block key -> measured latency."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def upsert_many(self, device_id: int, entries: Iterable[LutEntryData]) -> int:
        """Insert new keys and overwrite re-measured ones; returns how many distinct keys were written.

        A key given twice keeps its last value (one statement may not touch a row twice).
        """
        now = _now()
        latest = {entry.key: entry for entry in entries}
        rows = [
            {
                "device_id": device_id,
                "key": entry.key,
                "median_ms": entry.median_ms,
                "iqr_ms": entry.iqr_ms,
                "runs": entry.runs,
                "runtime_version": entry.runtime_version,
                "source": entry.source,
                "measured_at": entry.measured_at or now,
                "environment": entry.environment,
            }
            for entry in latest.values()
        ]
        _upsert(self._session, LutEntry, rows, [LutEntry.device_id, LutEntry.key])
        return len(rows)

    def entries(self, device_id: int) -> dict[str, LutEntryData]:
        rows = self._session.scalars(
            select(LutEntry)
            .where(LutEntry.device_id == device_id)
            .order_by(LutEntry.key)
            .execution_options(populate_existing=True)
        )
        return {
            row.key: LutEntryData(
                key=row.key,
                median_ms=row.median_ms,
                iqr_ms=row.iqr_ms,
                runs=row.runs,
                runtime_version=row.runtime_version,
                source=cast(LutSource, row.source),  # the CHECK constraint keeps it one of these
                measured_at=row.measured_at,
                environment=dict(row.environment) if row.environment is not None else None,
            )
            for row in rows
        }

    def measured_keys(self, device_id: int) -> set[str]:
        """Keys already in the table, so profiling can skip them."""
        return set(self._session.scalars(select(LutEntry.key).where(LutEntry.device_id == device_id)))

    def count(self, device_id: int) -> int:
        statement = select(func.count()).select_from(LutEntry).where(LutEntry.device_id == device_id)
        return self._session.scalar(statement) or 0

    def environments(self, device_id: int) -> list[tuple[dict[str, Any] | None, int]]:
        """Each distinct environment the table's entries were measured on, with its count."""
        return _environment_counts(self._session, LutEntry, device_id)

    def delete_keys(self, device_id: int, keys: Iterable[str]) -> int:
        """Forget the given keys (e.g. measured with a stale runtime); returns how many were removed."""
        unique_keys = sorted(set(keys))
        removed = 0
        for chunk in _chunks(unique_keys, _IN_CLAUSE_CHUNK):
            result = self._session.execute(
                delete(LutEntry).where(LutEntry.device_id == device_id, LutEntry.key.in_(chunk)),
                execution_options={"synchronize_session": False},
            )
            removed += cast(CursorResult[Any], result).rowcount
        return removed


class MeasurementRepository:
    """End-to-end latency measurements of whole networks, one per (device, architecture)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def upsert(self, device_id: int, measurement: E2EMeasurementData) -> None:
        """Store a measurement, replacing an earlier one of the same architecture on this device."""
        row = {
            "device_id": device_id,
            "arch_hash": measurement.arch_hash,
            "spec_json": measurement.spec_json,
            "median_ms": measurement.median_ms,
            "iqr_ms": measurement.iqr_ms,
            "runs": measurement.runs,
            "runtime_version": measurement.runtime_version,
            "madds": measurement.madds,
            "measured_at": measurement.measured_at or _now(),
            "environment": measurement.environment,
        }
        _upsert(self._session, E2EMeasurement, [row], [E2EMeasurement.device_id, E2EMeasurement.arch_hash])

    def list(self, device_id: int) -> list[E2EMeasurementData]:
        rows = self._session.scalars(
            select(E2EMeasurement)
            .where(E2EMeasurement.device_id == device_id)
            .order_by(E2EMeasurement.id)
            .execution_options(populate_existing=True)
        )
        return [
            E2EMeasurementData(
                arch_hash=row.arch_hash,
                spec_json=dict(row.spec_json),
                median_ms=row.median_ms,
                iqr_ms=row.iqr_ms,
                runs=row.runs,
                runtime_version=row.runtime_version,
                madds=row.madds,
                measured_at=row.measured_at,
                environment=dict(row.environment) if row.environment is not None else None,
            )
            for row in rows
        ]

    def environments(self, device_id: int) -> list[tuple[dict[str, Any] | None, int]]:
        """Each distinct environment the device's end-to-end measurements ran on, with its count."""
        return _environment_counts(self._session, E2EMeasurement, device_id)

    def count(self, device_id: int) -> int:
        statement = select(func.count()).select_from(E2EMeasurement).where(E2EMeasurement.device_id == device_id)
        return self._session.scalar(statement) or 0


class CalibrationRepository:
    """The one current calibration per device; refitting replaces it."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def save(
        self,
        device_id: int,
        method: str,
        coefficients: dict[str, Any],
        n_measurements: int,
        fitted_at: datetime | None = None,
    ) -> CalibrationData:
        """Store the device's calibration, replacing any previous one."""
        row = {
            "device_id": device_id,
            "method": method,
            "coefficients": dict(coefficients),
            "n_measurements": n_measurements,
            "fitted_at": fitted_at or _now(),
        }
        _upsert(self._session, Calibration, [row], [Calibration.device_id])
        return CalibrationData(
            method=method,
            coefficients=dict(coefficients),
            n_measurements=n_measurements,
            fitted_at=row["fitted_at"],
        )

    def get(self, device_id: int) -> CalibrationData | None:
        row = self._session.scalars(
            select(Calibration).where(Calibration.device_id == device_id).execution_options(populate_existing=True)
        ).one_or_none()
        if row is None:
            return None
        return CalibrationData(
            method=row.method,
            coefficients=dict(row.coefficients),
            n_measurements=row.n_measurements,
            fitted_at=row.fitted_at,
        )


class KitRepository:
    """Manifests of the profiling kits handed out, looked up by the kit id a results file names."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, device_id: int, kit_id: str, kit_version: int, manifest: dict[str, Any]) -> None:
        self._session.add(Kit(device_id=device_id, kit_id=kit_id, kit_version=kit_version, manifest=manifest))
        self._session.flush()

    def manifest(self, kit_id: str) -> tuple[int, dict[str, Any]] | None:
        """(device id, manifest) of a kit, or None if no such kit was made."""
        row = self._session.scalars(select(Kit).where(Kit.kit_id == kit_id)).one_or_none()
        return None if row is None else (row.device_id, dict(row.manifest))

    def latest_for_device(self, device_id: int) -> dict[str, Any] | None:
        row = self._session.scalars(
            select(Kit).where(Kit.device_id == device_id).order_by(Kit.id.desc()).limit(1)
        ).one_or_none()
        return None if row is None else dict(row.manifest)
