"""Repositories for searches: the search itself, its candidates, the architectures it produced, its log.

Like `nas.store.repositories`, each takes a `Session` and leaves committing to the caller's
`session_scope`. Searches and architectures come out as ORM rows (the API serialises them);
candidates and events come out as frozen dataclasses, so strategies and the SSE stream never depend
on SQLAlchemy.

Everything a worker does to a search is a conditional UPDATE guarded by "this worker holds the claim
and the search is running", so a worker that lost its claim (its heartbeat went stale and another
worker took over) finds out from a False return value instead of overwriting the new owner's state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, literal, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from nas.store.errors import ArchitectureNotFoundError, SearchNotFoundError, SearchStateError, StoreError
from nas.store.models import (
    ARCHITECTURE_ROLES,
    CANDIDATE_EVALUATIONS,
    CANDIDATE_PHASES,
    CANDIDATE_STATUSES,
    EVENT_LEVELS,
    FINISHED_SEARCH_STATUSES,
    SEARCH_PHASES,
    SEARCH_STATUSES,
    Architecture,
    ArchitectureRole,
    Candidate,
    CandidateEvaluation,
    CandidatePhase,
    CandidateStatus,
    Device,
    EventLevel,
    Search,
    SearchEvent,
    SearchPhase,
    UtcDateTime,
)

SearchOrder = Literal["newest", "oldest"]
CandidateOrder = Literal["id", "accuracy", "predicted_ms", "created_at"]
CANDIDATE_ORDERS: tuple[CandidateOrder, ...] = ("id", "accuracy", "predicted_ms", "created_at")

# Conditional updates report the rows they matched through RETURNING and keep objects already loaded
# in the session in step with what they wrote.
_SYNCHRONIZE = {"synchronize_session": "fetch"}
_SQLITE_RETURNING = (3, 35, 0)


def _now() -> datetime:
    return datetime.now(UTC)


def _one_or_many(column: InstrumentedAttribute[Any], value: str | Iterable[str]) -> ColumnElement[bool]:
    """`column = value` for one string, `column IN (...)` for several."""
    if isinstance(value, str):
        return column == value
    return column.in_(list(value))


def _check_known(what: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(known)}")


def _dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


# --- searches ----------------------------------------------------------------------------------------


def _claimable(table: Any, stale_before: datetime, machine_id: str | None) -> ColumnElement[bool]:
    """Queued, or running with a heartbeat older than `stale_before` (its worker is presumed dead); and
    when `machine_id` is given, on a device no machine measures (a phone: any worker serves it through
    measurement jobs) or on the one `machine_id` measures locally. `machine_id=None` claims anything."""
    status = or_(table.status == "queued", and_(table.status == "running", table.heartbeat_at < stale_before))
    if machine_id is None:
        return status
    servable = select(Device.id).where(or_(Device.machine_id.is_(None), Device.machine_id == machine_id))
    return and_(status, table.device_id.in_(servable))


class SearchRepository:
    """Searches by public id: created by the API, claimed, advanced and finished by one worker at a time."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def create(
        self,
        *,
        device_id: int,
        space: str,
        dataset: str,
        budget_ms: float,
        strategy: str,
        request: dict[str, Any],
        owner: str | None = None,
        trials_total: int = 0,
        public_id: str | None = None,
    ) -> Search:
        """Store a new queued search and return it with `id` and `public_id` assigned."""
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        search = Search(
            device_id=device_id,
            space=space,
            dataset=dataset,
            budget_ms=budget_ms,
            strategy=strategy,
            request=dict(request),
            owner=owner,
            trials_total=trials_total,
            created_at=_now(),
        )
        if public_id is not None:
            search.public_id = public_id
        self._session.add(search)
        self._session.flush()
        return search

    def get(self, public_id: str) -> Search | None:
        return self._session.scalars(
            select(Search).where(Search.public_id == public_id).execution_options(populate_existing=True)
        ).one_or_none()

    def require(self, public_id: str) -> Search:
        """The search with `public_id`; raises `SearchNotFoundError` (the API answers 404)."""
        search = self.get(public_id)
        if search is None:
            raise SearchNotFoundError(public_id)
        return search

    def list(
        self,
        owner: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int = 50,
        offset: int = 0,
        order: SearchOrder = "newest",
        device_id: int | None = None,
    ) -> list[Search]:
        """One page of searches, newest (or oldest) first, optionally of one owner, status(es) or device."""
        if order not in ("newest", "oldest"):
            raise ValueError(f"order must be 'newest' or 'oldest', got {order!r}")
        statement = self._filtered(select(Search), owner, status, device_id)
        statement = statement.order_by(Search.id.desc() if order == "newest" else Search.id.asc())
        statement = statement.limit(limit).offset(offset).execution_options(populate_existing=True)
        return list(self._session.scalars(statement))

    def count(
        self, owner: str | None = None, status: str | Iterable[str] | None = None, device_id: int | None = None
    ) -> int:
        """How many searches `list` would page through with the same filters."""
        statement = self._filtered(select(func.count()).select_from(Search), owner, status, device_id)
        return self._session.scalar(statement) or 0

    @staticmethod
    def _filtered(statement: Any, owner: str | None, status: str | Iterable[str] | None, device_id: int | None) -> Any:
        if owner is not None:
            statement = statement.where(Search.owner == owner)
        if status is not None:
            statement = statement.where(_one_or_many(Search.status, status))
        if device_id is not None:
            statement = statement.where(Search.device_id == device_id)
        return statement

    def queue_length(self) -> int:
        return self.count(status="queued")

    def counts_by_status(self) -> dict[str, int]:
        """Searches per status, every status present (zero when none)."""
        rows = self._session.execute(select(Search.status, func.count()).group_by(Search.status))
        counts = dict.fromkeys(SEARCH_STATUSES, 0)
        counts.update({status: number for status, number in rows.tuples()})
        return counts

    def delete(self, public_id: str) -> None:
        """Remove a search with its candidates, architectures and events (artifact files stay on disk).

        A running search is refused: its worker would go on writing rows for it.
        """
        search = self.require(public_id)
        if search.status == "running":
            raise SearchStateError(public_id, search.status, "delete")
        self._session.delete(search)
        self._session.flush()

    # --- the worker's side ---------------------------------------------------------------------------

    def claim_next(
        self, worker_id: str, stale_after_s: float, now: datetime | None = None, machine_id: str | None = None
    ) -> Search | None:
        """Atomically take the oldest claimable search for `worker_id`, or None when there is none.

        Claimable: queued, or running with a heartbeat older than `stale_after_s` (re-claimed; the
        new worker resumes from the stored candidates). The claim sets status running, the worker,
        `claimed_at` and `heartbeat_at` to `now`, `started_at` if unset, and counts an attempt. With
        `machine_id`, only searches this machine can serve (see `_claimable`).

        PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE, so concurrent workers take
        different searches without waiting. SQLite: one UPDATE ... WHERE id = (SELECT ...) RETURNING,
        with the condition checked again on the row; SQLite runs one writer at a time, so two
        workers cannot both match the same row. Call this first thing in its own `session_scope`
        and leave the scope right away: on PostgreSQL the row stays locked until the commit, and on
        SQLite a transaction that read before this write can fail with "database is locked".
        """
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        now = now or _now()
        stale_before = now - timedelta(seconds=stale_after_s)
        values = {
            "status": "running",
            "worker_id": worker_id,
            "claimed_at": now,
            "heartbeat_at": now,
            "started_at": func.coalesce(Search.started_at, literal(now, UtcDateTime())),
            "attempts": Search.attempts + 1,
        }
        dialect = _dialect_name(self._session)
        if dialect == "postgresql":
            picked = self._session.scalar(
                select(Search.id)
                .where(_claimable(Search, stale_before, machine_id))
                .order_by(Search.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if picked is None:
                return None
            target: Any = picked
        elif dialect == "sqlite":
            if sqlite3.sqlite_version_info < _SQLITE_RETURNING:
                raise StoreError(
                    f"claiming searches needs SQLite 3.35 or newer (RETURNING), not {sqlite3.sqlite_version}"
                )
            other = aliased(Search, name="claimable")
            target = (
                select(other.id)
                .where(_claimable(other, stale_before, machine_id))
                .order_by(other.id)
                .limit(1)
                .scalar_subquery()
            )
        else:
            raise StoreError(f"claiming searches is implemented for SQLite and PostgreSQL, not {dialect!r}")
        claimed = self._session.execute(
            update(Search)
            .where(Search.id == target, _claimable(Search, stale_before, machine_id))
            .values(**values)
            .returning(Search.id),
            execution_options=_SYNCHRONIZE,
        ).scalar_one_or_none()
        if claimed is None:
            return None
        return self._session.get(Search, claimed, populate_existing=True)

    def _update_owned(self, public_id: str, worker_id: str, **values: Any) -> bool:
        """Apply `values` if `worker_id` still holds the claim on the running search; say whether it did."""
        result = self._session.execute(
            update(Search)
            .where(Search.public_id == public_id, Search.worker_id == worker_id, Search.status == "running")
            .values(**values)
            .returning(Search.id),
            execution_options=_SYNCHRONIZE,
        )
        return result.first() is not None

    def heartbeat(self, public_id: str, worker_id: str, now: datetime | None = None) -> bool:
        """Record that the worker is alive. False: the search is no longer this worker's; stop working on it."""
        return self._update_owned(public_id, worker_id, heartbeat_at=now or _now())

    def update_progress(
        self,
        public_id: str,
        worker_id: str,
        *,
        phase: SearchPhase | None = None,
        progress: float | None = None,
        trials_done: int | None = None,
        trials_total: int | None = None,
        over_budget_skipped: int | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Store the given progress fields (None: unchanged); counts as a heartbeat. False as for `heartbeat`."""
        values: dict[str, Any] = {"heartbeat_at": now or _now()}
        if phase is not None:
            _check_known("search phase", phase, SEARCH_PHASES)
            values["phase"] = phase
        if progress is not None:
            if not 0.0 <= progress <= 1.0:
                raise ValueError(f"progress must be between 0 and 1, got {progress}")
            values["progress"] = progress
        for name, count in (
            ("trials_done", trials_done),
            ("trials_total", trials_total),
            ("over_budget_skipped", over_budget_skipped),
        ):
            if count is not None:
                if count < 0:
                    raise ValueError(f"{name} must not be negative, got {count}")
                values[name] = count
        return self._update_owned(public_id, worker_id, **values)

    def cancel_requested(self, public_id: str) -> bool:
        """Whether a cancel was asked for: the worker checks this between trials."""
        requested = self._session.scalar(select(Search.cancel_requested).where(Search.public_id == public_id))
        if requested is None:
            raise SearchNotFoundError(public_id)
        return requested

    def finish(
        self,
        public_id: str,
        worker_id: str,
        status: Literal["succeeded", "failed", "cancelled"],
        result: dict[str, Any] | None = None,
        error: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """End the search as `status` (phase done). Only the worker holding the claim may; False otherwise."""
        _check_known("final status", status, FINISHED_SEARCH_STATUSES)
        now = now or _now()
        values: dict[str, Any] = {"status": status, "phase": "done", "finished_at": now, "heartbeat_at": now}
        if status == "succeeded":
            values["progress"] = 1.0
        if result is not None:
            values["result"] = dict(result)
        if error is not None:
            values["error"] = error
        return self._update_owned(public_id, worker_id, **values)

    # --- the API's side ------------------------------------------------------------------------------

    def request_cancel(self, public_id: str, now: datetime | None = None) -> str:
        """Ask for the search to stop; returns its status afterwards.

        Queued: nobody runs it, so it is cancelled at once ("cancelled"). Running: flagged, and its
        worker stops between trials, keeping the candidates it has ("running"; asking again is
        harmless). Already finished: `SearchStateError` (the API answers 409).
        """
        now = now or _now()
        # Statuses only move forward (queued -> running -> finished), so at most one pass is needed
        # even when a worker claims or finishes the search between these statements.
        cancelled = {"status": "cancelled", "phase": "done", "cancel_requested": True, "finished_at": now}
        if self._update_from(public_id, "queued", cancelled):
            return "cancelled"
        if self._update_from(public_id, "running", {"cancel_requested": True}):
            return "running"
        status = self._session.scalar(select(Search.status).where(Search.public_id == public_id))
        if status is None:
            raise SearchNotFoundError(public_id)
        raise SearchStateError(public_id, status, "cancel")

    def _update_from(self, public_id: str, current_status: str, values: dict[str, Any]) -> bool:
        """Apply `values` if the search is (still) in `current_status`; say whether it was."""
        result = self._session.execute(
            update(Search)
            .where(Search.public_id == public_id, Search.status == current_status)
            .values(**values)
            .returning(Search.id),
            execution_options=_SYNCHRONIZE,
        )
        return result.first() is not None


# --- candidates --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CandidateData:
    """One evaluated (or skipped) architecture, as a worker records it."""

    arch_hash: str
    spec: dict[str, Any]
    phase: CandidatePhase
    status: CandidateStatus
    predicted_ms: float
    params: int
    madds: int
    genome: tuple[int, ...] | None = None
    accuracy: float | None = None
    accuracies: tuple[float, ...] = ()
    trial_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    train_seconds: float | None = None
    error: str | None = None
    evaluation: CandidateEvaluation = "trained"


@dataclass(frozen=True, kw_only=True)
class CandidateRecord(CandidateData):
    """A stored candidate: its data plus the row's id, search and creation time."""

    id: int
    search_id: int
    created_at: datetime = field(compare=False)


def _candidate_record(row: Candidate) -> CandidateRecord:
    return CandidateRecord(
        id=row.id,
        search_id=row.search_id,
        created_at=row.created_at,
        arch_hash=row.arch_hash,
        spec=dict(row.spec),
        phase=row.phase,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        predicted_ms=row.predicted_ms,
        params=row.params,
        madds=row.madds,
        genome=None if row.genome is None else tuple(row.genome),
        accuracy=row.accuracy,
        accuracies=tuple(row.accuracies),
        trial_id=row.trial_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        train_seconds=row.train_seconds,
        error=row.error,
        evaluation=row.evaluation,  # type: ignore[arg-type]
    )


class CandidateRepository:
    """The candidates of a search, at most one per architecture hash: what resume rebuilds from."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, search_id: int, data: CandidateData) -> bool:
        """Store a candidate unless the search already has one with this hash; True if it was stored.

        INSERT ... ON CONFLICT DO NOTHING, so a worker that resumes and records a candidate again
        neither fails nor duplicates it; the first record wins.
        """
        _check_known("candidate phase", data.phase, CANDIDATE_PHASES)
        _check_known("candidate status", data.status, CANDIDATE_STATUSES)
        _check_known("candidate evaluation", data.evaluation, CANDIDATE_EVALUATIONS)
        dialect = _dialect_name(self._session)
        if dialect == "postgresql":
            insert = postgresql.insert(Candidate)
        elif dialect == "sqlite":
            insert = sqlite.insert(Candidate)
        else:
            raise StoreError(f"candidates are implemented for SQLite and PostgreSQL, not {dialect!r}")
        row = {
            "search_id": search_id,
            "arch_hash": data.arch_hash,
            # null(): SQL NULL; a plain None would be stored as the JSON value null.
            "genome": null() if data.genome is None else list(data.genome),
            "spec": dict(data.spec),
            "phase": data.phase,
            "status": data.status,
            "predicted_ms": data.predicted_ms,
            "accuracy": data.accuracy,
            "accuracies": list(data.accuracies),
            "params": data.params,
            "madds": data.madds,
            "trial_id": data.trial_id,
            "started_at": data.started_at,
            "finished_at": data.finished_at,
            "train_seconds": data.train_seconds,
            "error": data.error,
            "evaluation": data.evaluation,
            "created_at": _now(),
        }
        statement = (
            insert.values(row)
            .on_conflict_do_nothing(index_elements=[Candidate.search_id, Candidate.arch_hash])
            .returning(Candidate.id)
        )
        return self._session.execute(statement).first() is not None

    def get_by_hash(self, search_id: int, arch_hash: str) -> CandidateRecord | None:
        row = self._session.scalars(
            select(Candidate).where(Candidate.search_id == search_id, Candidate.arch_hash == arch_hash)
        ).one_or_none()
        return None if row is None else _candidate_record(row)

    def hashes(self, search_id: int) -> set[str]:
        """Hashes already recorded, so a resumed search skips them."""
        return set(self._session.scalars(select(Candidate.arch_hash).where(Candidate.search_id == search_id)))

    def list(
        self,
        search_id: int,
        order_by: CandidateOrder = "id",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
        phase: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
    ) -> list[CandidateRecord]:
        """A page of a search's candidates; candidates without an accuracy sort last either way, ties by id."""
        if order_by not in CANDIDATE_ORDERS:
            raise ValueError(f"order_by must be one of {', '.join(CANDIDATE_ORDERS)}, got {order_by!r}")
        column = getattr(Candidate, order_by)
        key = column.desc() if descending else column.asc()
        statement = self._filtered(select(Candidate), search_id, phase, status)
        statement = statement.order_by(key.nulls_last(), Candidate.id).offset(offset)
        if limit is not None:
            statement = statement.limit(limit)
        return [_candidate_record(row) for row in self._session.scalars(statement)]

    def count(
        self, search_id: int, phase: str | Iterable[str] | None = None, status: str | Iterable[str] | None = None
    ) -> int:
        statement = self._filtered(select(func.count()).select_from(Candidate), search_id, phase, status)
        return self._session.scalar(statement) or 0

    def best(self, search_id: int, phase: str | Iterable[str] | None = None) -> CandidateRecord | None:
        """The most accurate completed candidate (ties: faster, then earlier); pruned ones do not count."""
        statement = self._filtered(select(Candidate), search_id, phase, "completed")
        statement = statement.where(Candidate.accuracy.is_not(None))
        statement = statement.order_by(Candidate.accuracy.desc(), Candidate.predicted_ms, Candidate.id).limit(1)
        row = self._session.scalars(statement).one_or_none()
        return None if row is None else _candidate_record(row)

    @staticmethod
    def _filtered(
        statement: Any, search_id: int, phase: str | Iterable[str] | None, status: str | Iterable[str] | None
    ) -> Any:
        statement = statement.where(Candidate.search_id == search_id)
        if phase is not None:
            statement = statement.where(_one_or_many(Candidate.phase, phase))
        if status is not None:
            statement = statement.where(_one_or_many(Candidate.status, status))
        return statement


# --- architectures -----------------------------------------------------------------------------------


class ArchitectureRepository:
    """Exported architectures by public id: what `GET /v1/architectures/{id}` serves."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        *,
        arch_hash: str,
        role: ArchitectureRole,
        spec: dict[str, Any],
        predicted_ms: float,
        params: int,
        madds: int,
        artifact_dir: str,
        files: dict[str, str] | None = None,
        search_id: int | None = None,
        owner: str | None = None,
        measured_ms: float | None = None,
        accuracy: float | None = None,
        public_id: str | None = None,
        test_accuracy: float | None = None,
        test_indices: Sequence[int] = (),
    ) -> Architecture:
        """Store an architecture; `files` maps "spec"/"onnx"/"weights" to paths relative to `artifact_dir`."""
        _check_known("architecture role", role, ARCHITECTURE_ROLES)
        architecture = Architecture(
            search_id=search_id,
            owner=owner,
            arch_hash=arch_hash,
            role=role,
            spec=dict(spec),
            predicted_ms=predicted_ms,
            measured_ms=measured_ms,
            accuracy=accuracy,
            params=params,
            madds=madds,
            artifact_dir=artifact_dir,
            files=dict(files or {}),
            created_at=_now(),
            test_accuracy=test_accuracy,
            test_indices=[int(i) for i in test_indices],
        )
        if public_id is not None:
            architecture.public_id = public_id
        self._session.add(architecture)
        self._session.flush()
        return architecture

    def get(self, public_id: str) -> Architecture | None:
        return self._session.scalars(
            select(Architecture).where(Architecture.public_id == public_id).execution_options(populate_existing=True)
        ).one_or_none()

    def require(self, public_id: str) -> Architecture:
        """The architecture with `public_id`; raises `ArchitectureNotFoundError` (the API answers 404)."""
        architecture = self.get(public_id)
        if architecture is None:
            raise ArchitectureNotFoundError(public_id)
        return architecture

    def for_search(self, search_id: int) -> list[Architecture]:
        return list(
            self._session.scalars(
                select(Architecture).where(Architecture.search_id == search_id).order_by(Architecture.id)
            )
        )

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> list[Architecture]:
        """A page of architectures, newest first, optionally of one owner."""
        statement = select(Architecture)
        if owner is not None:
            statement = statement.where(Architecture.owner == owner)
        statement = statement.order_by(Architecture.id.desc()).limit(limit).offset(offset)
        return list(self._session.scalars(statement))

    def count(self, owner: str | None = None) -> int:
        """How many architectures `list` would page through for `owner` (None: all)."""
        statement = select(func.count()).select_from(Architecture)
        if owner is not None:
            statement = statement.where(Architecture.owner == owner)
        return self._session.scalar(statement) or 0


# --- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRecord:
    """One line of a search's log; `id` is the SSE event id a client resumes after."""

    id: int
    search_id: int
    created_at: datetime
    level: EventLevel
    kind: str
    message: str
    data: dict[str, Any]


class EventRepository:
    """A search's log, read in id order: the SSE stream replays it after the client's `Last-Event-ID`.

    Ids come from one sequence, so they grow in insertion order; on PostgreSQL an id is visible only
    once its transaction commits, which keeps order as long as one writer (the claiming worker)
    logs for a search at a time.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        search_id: int,
        kind: str,
        message: str,
        level: EventLevel = "info",
        data: dict[str, Any] | None = None,
    ) -> int:
        """Append an event; returns its id."""
        _check_known("event level", level, EVENT_LEVELS)
        event = SearchEvent(
            search_id=search_id, kind=kind, message=message, level=level, data=dict(data or {}), created_at=_now()
        )
        self._session.add(event)
        self._session.flush()
        return event.id

    def after(self, search_id: int, last_id: int = 0, limit: int = 100) -> list[EventRecord]:
        """Up to `limit` events of the search with an id above `last_id`, oldest first."""
        rows = self._session.scalars(
            select(SearchEvent)
            .where(SearchEvent.search_id == search_id, SearchEvent.id > last_id)
            .order_by(SearchEvent.id)
            .limit(limit)
        )
        return [
            EventRecord(
                id=row.id,
                search_id=row.search_id,
                created_at=row.created_at,
                level=row.level,  # type: ignore[arg-type]
                kind=row.kind,
                message=row.message,
                data=dict(row.data),
            )
            for row in rows
        ]

    def count(self, search_id: int) -> int:
        statement = select(func.count()).select_from(SearchEvent).where(SearchEvent.search_id == search_id)
        return self._session.scalar(statement) or 0
