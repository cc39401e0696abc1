"""Measurement jobs: networks the server wants timed end to end on a remote device.

A search on a device that is not this machine cannot time its winner itself; it files a job, the
device's agent (or a verification kit) answers it, and the search reads the answer. Rows go in and
out as `MeasurementJobRecord`s, so callers never hold ORM rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nas.store.errors import StoreError
from nas.store.models import (
    MEASUREMENT_JOB_ROLES,
    MEASUREMENT_JOB_STATUSES,
    MeasurementJob,
    MeasurementJobRole,
    MeasurementJobStatus,
    Search,
)


class MeasurementJobNotFoundError(StoreError):
    """No job with this public id exists (or it belongs to another device: existence is not leaked)."""

    def __init__(self, public_id: str) -> None:
        self.public_id = public_id
        super().__init__(f"no measurement job with id {public_id!r} is stored for this device")


class MeasurementJobStateError(StoreError):
    """The job cannot take an answer any more: it was answered already, or cancelled."""

    def __init__(self, public_id: str, status: str) -> None:
        self.public_id = public_id
        self.status = status
        super().__init__(f"measurement job {public_id!r} is {status}; it takes no (further) result")


@dataclass(frozen=True)
class MeasurementJobRecord:
    """One job as callers see it; `search_id` is the search's public id."""

    public_id: str
    device_id: int
    search_id: str | None
    role: MeasurementJobRole
    arch_hash: str
    spec: dict[str, Any]
    status: MeasurementJobStatus
    created_at: datetime
    answered_at: datetime | None
    median_ms: float | None
    iqr_ms: float | None
    runs: int | None
    runtime_version: str | None
    environment: dict[str, Any] | None


@dataclass(frozen=True)
class JobAnswer:
    """A device's measurement of a job's network."""

    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str
    environment: dict[str, Any] | None = None


def _record(row: MeasurementJob, search_public_id: str | None) -> MeasurementJobRecord:
    return MeasurementJobRecord(
        public_id=row.public_id,
        device_id=row.device_id,
        search_id=search_public_id,
        role=cast(MeasurementJobRole, row.role),  # the CHECK constraints keep role and status known
        arch_hash=row.arch_hash,
        spec=dict(row.spec),
        status=cast(MeasurementJobStatus, row.status),
        created_at=row.created_at,
        answered_at=row.answered_at,
        median_ms=row.median_ms,
        iqr_ms=row.iqr_ms,
        runs=row.runs,
        runtime_version=row.runtime_version,
        environment=dict(row.environment) if row.environment is not None else None,
    )


class MeasurementJobRepository:
    """Filing, listing, answering and cancelling measurement jobs."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _select(self):  # noqa: ANN202 - a SQLAlchemy Select of (job, search public id)
        return (
            select(MeasurementJob, Search.public_id)
            .outerjoin(Search, Search.id == MeasurementJob.search_id)
            .execution_options(populate_existing=True)
        )

    def add(
        self, device_id: int, arch_hash: str, spec: dict[str, Any], role: MeasurementJobRole, search_id: int | None
    ) -> MeasurementJobRecord:
        if role not in MEASUREMENT_JOB_ROLES:
            raise ValueError(f"unknown job role {role!r}; one of {', '.join(MEASUREMENT_JOB_ROLES)}")
        row = MeasurementJob(device_id=device_id, search_id=search_id, role=role, arch_hash=arch_hash, spec=spec)
        self._session.add(row)
        self._session.flush()
        search = self._session.get(Search, search_id) if search_id is not None else None
        return _record(row, search.public_id if search is not None else None)

    def reusable(self, device_id: int, search_id: int | None, arch_hash: str) -> MeasurementJobRecord | None:
        """A pending or answered job of the same search and network: measuring it again adds nothing."""
        statement = (
            self._select()
            .where(
                MeasurementJob.device_id == device_id,
                MeasurementJob.arch_hash == arch_hash,
                MeasurementJob.status.in_(("pending", "done")),
                MeasurementJob.search_id.is_(None) if search_id is None else MeasurementJob.search_id == search_id,
            )
            .order_by(MeasurementJob.id.desc())
            .limit(1)
        )
        found = self._session.execute(statement).first()
        return None if found is None else _record(*found)

    def get(self, public_id: str) -> MeasurementJobRecord | None:
        found = self._session.execute(self._select().where(MeasurementJob.public_id == public_id)).first()
        return None if found is None else _record(*found)

    def require_for_device(self, device_id: int, public_id: str) -> MeasurementJobRecord:
        """The device's job; another device's job is reported as not found, like an unknown one."""
        job = self.get(public_id)
        if job is None or job.device_id != device_id:
            raise MeasurementJobNotFoundError(public_id)
        return job

    def list(
        self, device_id: int, status: MeasurementJobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[MeasurementJobRecord]:
        """The device's jobs, oldest first (the order a device should answer them in)."""
        statement = self._select().where(MeasurementJob.device_id == device_id)
        if status is not None:
            _check_status(status)
            statement = statement.where(MeasurementJob.status == status)
        statement = statement.order_by(MeasurementJob.id).limit(limit).offset(offset)
        return [_record(*found) for found in self._session.execute(statement)]

    def count(self, device_id: int, status: MeasurementJobStatus | None = None) -> int:
        statement = select(func.count()).select_from(MeasurementJob).where(MeasurementJob.device_id == device_id)
        if status is not None:
            _check_status(status)
            statement = statement.where(MeasurementJob.status == status)
        return self._session.scalar(statement) or 0

    def answer(self, device_id: int, public_id: str, answer: JobAnswer) -> MeasurementJobRecord:
        """Record the device's measurement; only a pending job takes one.

        The status is checked in the UPDATE itself, so two answers racing for one job cannot both win.
        """
        self.require_for_device(device_id, public_id)
        result = self._session.execute(
            update(MeasurementJob)
            .where(MeasurementJob.public_id == public_id, MeasurementJob.status == "pending")
            .values(
                status="done",
                answered_at=datetime.now(UTC),
                median_ms=answer.median_ms,
                iqr_ms=answer.iqr_ms,
                runs=answer.runs,
                runtime_version=answer.runtime_version,
                environment=answer.environment,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise MeasurementJobStateError(public_id, self.require_for_device(device_id, public_id).status)
        return self.require_for_device(device_id, public_id)

    def cancel_pending_of_search(self, search_id: int) -> int:
        """Cancel the search's unanswered jobs (the search was cancelled); returns how many."""
        result = self._session.execute(
            update(MeasurementJob)
            .where(MeasurementJob.search_id == search_id, MeasurementJob.status == "pending")
            .values(status="cancelled", answered_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _check_status(status: str) -> None:
    if status not in MEASUREMENT_JOB_STATUSES:
        raise ValueError(f"unknown job status {status!r}; one of {', '.join(MEASUREMENT_JOB_STATUSES)}")
