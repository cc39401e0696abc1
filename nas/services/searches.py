"""Searches: submit one under a latency budget, follow it, read what it found, cancel it.

A search belongs to the key that submitted it; another key's reads as not found. Every function
answers in the records of `nas.services.search_records`, which never show server paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from nas.datasets import DEFAULT_MAX_BYTES
from nas.search.request import SearchRequest
from nas.search.supernet_search import check_supernet_request
from nas.services import datasets
from nas.services.devices import check_access
from nas.services.errors import InvalidInput
from nas.services.records import Page, Viewer, may_see, owner_filter
from nas.services.search_records import (
    CandidateRecord,
    EventRecord,
    ParetoCandidate,
    ParetoFront,
    SearchProgress,
    SearchRecord,
    SearchSummary,
    candidate_record,
    event_record,
    progress_fields,
    redactor,
    search_record,
    summary_fields,
)
from nas.store import CandidateRepository, EventRepository, Search, SearchNotFoundError, SearchRepository, session_scope
from nas.strategies import Observation, pareto_front
from nas.submission import submit_search
from search_spaces.space import get_space

CandidateSort = Literal["accuracy", "-accuracy", "predicted_ms", "-predicted_ms", "created_at", "-created_at"]


def require_row(session: Session, public_id: str, viewer: Viewer) -> Search:
    """The search if `viewer` may see it; another key's search reads as not found."""
    row = SearchRepository(session).require(public_id)
    if not may_see(viewer, row.owner):
        raise SearchNotFoundError(public_id)
    return row


# --- submit ----------------------------------------------------------------------------------------------


def check_space_options(request: SearchRequest) -> None:
    """The resolution and widths fit the space, and a supernet search a space that can share weights."""
    try:
        space = get_space(request.space).with_options(resolutions=[request.resolution], widths=request.widths)
    except ValueError as error:
        raise InvalidInput(str(error), field="widths" if request.widths is not None else "resolution") from None
    if request.strategy == "supernet":
        try:
            check_supernet_request(space)
        except ValueError as error:
            raise InvalidInput(str(error), field="strategy") from None


def submit(
    sessions: sessionmaker[Session],
    request: SearchRequest,
    viewer: Viewer,
    *,
    max_dataset_bytes: int = DEFAULT_MAX_BYTES,
    artifact_dir: Path | None = None,
) -> SearchRecord:
    """Check and queue a search owned by `viewer` (the operator's when None); the one budget check is
    `nas.submission.submit_search`'s.

    `request.dataset` is what the client named: a built-in spec or an uploaded id (the operator may name
    a local file too); the stored request holds what the worker loads, the search shows the name.
    Raises `InvalidInput` or `DatasetError` (naming the field), the store's not-found errors
    (device, dataset), `MissingKeysError` or `BudgetUnreachableError`; nothing is stored then.
    """
    check_access(sessions, request.device, viewer)  # another key's private device reads as unknown
    with session_scope(sessions) as session:
        dataset, label = datasets.resolve_for_search(session, request.dataset, viewer)
    check_space_options(request)
    resolved = SearchRequest.model_validate({**request.model_dump(), "dataset": dataset})
    owner = None if viewer is None else viewer.key_id
    public_id = submit_search(sessions, resolved, owner=owner, dataset_label=label, max_dataset_bytes=max_dataset_bytes)
    with session_scope(sessions) as session:
        return search_record(session, SearchRepository(session).require(public_id), artifact_dir)


# --- read ------------------------------------------------------------------------------------------------


def list_page(
    sessions: sessionmaker[Session],
    viewer: Viewer,
    *,
    status: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    artifact_dir: Path | None = None,
) -> Page[SearchSummary]:
    """The searches `viewer` may see (its own; an admin's and the operator's: all), newest first."""
    owner = owner_filter(viewer)
    with session_scope(sessions) as session:
        repository = SearchRepository(session)
        rows = repository.list(owner=owner, status=status, limit=limit, offset=offset)
        items = [SearchSummary(**summary_fields(row, redactor(row, artifact_dir))) for row in rows]
        total = repository.count(owner=owner, status=status)
    return Page[SearchSummary](items=items, total=total, limit=limit, offset=offset)


def get(
    sessions: sessionmaker[Session], public_id: str, viewer: Viewer, *, artifact_dir: Path | None = None
) -> SearchRecord:
    with session_scope(sessions) as session:
        return search_record(session, require_row(session, public_id, viewer), artifact_dir)


def candidates(
    sessions: sessionmaker[Session],
    public_id: str,
    viewer: Viewer,
    *,
    sort: CandidateSort = "created_at",
    phase: Iterable[str] | None = None,
    status: Iterable[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    artifact_dir: Path | None = None,
) -> Page[CandidateRecord]:
    """A page of a search's candidates; a leading '-' in `sort` sorts descending, no accuracy sorts last."""
    phase = None if phase is None else list(phase)
    status = None if status is None else list(status)
    with session_scope(sessions) as session:
        search = require_row(session, public_id, viewer)
        redact = redactor(search, artifact_dir)
        repository = CandidateRepository(session)
        rows = repository.list(
            search.id,
            order_by=sort.lstrip("-"),  # type: ignore[arg-type]
            descending=sort.startswith("-"),
            limit=limit,
            offset=offset,
            phase=phase,
            status=status,
        )
        total = repository.count(search.id, phase=phase, status=status)
    return Page[CandidateRecord](
        items=[candidate_record(row, redact) for row in rows], total=total, limit=limit, offset=offset
    )


def pareto(
    sessions: sessionmaker[Session],
    public_id: str,
    viewer: Viewer,
    *,
    phase: Iterable[str] | None = None,
    artifact_dir: Path | None = None,
) -> ParetoFront:
    """The accuracy / latency Pareto front of the search's completed candidates (of `phase`: all by default)."""
    with session_scope(sessions) as session:
        search = require_row(session, public_id, viewer)
        redact = redactor(search, artifact_dir)
        budget_ms, status = search.budget_ms, search.status
        completed = CandidateRepository(session).list(
            search.id, phase=None if phase is None else list(phase), status="completed"
        )
    by_hash = {c.arch_hash: c for c in completed if c.accuracy is not None and math.isfinite(c.accuracy)}
    observations = [
        Observation(genome=(), arch_hash=h, accuracy=c.accuracy, latency_ms=c.predicted_ms, status="completed")
        for h, c in by_hash.items()
    ]
    items = []
    for observation in pareto_front(observations):
        stored = by_hash[observation.arch_hash]
        candidate = candidate_record(stored, redact)
        items.append(ParetoCandidate(**dict(candidate), within_budget=stored.predicted_ms <= budget_ms))
    return ParetoFront(search_id=public_id, status=status, budget_ms=budget_ms, items=items, total=len(items))


# --- cancel ----------------------------------------------------------------------------------------------


def cancel(
    sessions: sessionmaker[Session], public_id: str, viewer: Viewer, *, artifact_dir: Path | None = None
) -> SearchRecord:
    """Queued: cancelled at once. Running: flagged; its worker stops between trials, keeping its candidates.
    Finished: `SearchStateError`."""
    with session_scope(sessions) as session:
        require_row(session, public_id, viewer)
        SearchRepository(session).request_cancel(public_id)
    with session_scope(sessions) as session:
        return search_record(session, SearchRepository(session).require(public_id), artifact_dir)


# --- events ----------------------------------------------------------------------------------------------


def watch_id(sessions: sessionmaker[Session], public_id: str, viewer: Viewer) -> int:
    """The handle `poll` follows a visible search by (its row id)."""
    with session_scope(sessions) as session:
        return require_row(session, public_id, viewer).id


def poll(
    sessions: sessionmaker[Session], search_id: int, after: int, limit: int, *, artifact_dir: Path | None = None
) -> tuple[SearchProgress | None, list[EventRecord]]:
    """The search's progress (read first; None once it is deleted), then up to `limit` events after `after`.

    Reading the progress first matters: a search seen finished here had written all its events before
    finishing, so the events read next are all there is and a stream may end after them.
    """
    with session_scope(sessions) as session:
        row = session.get(Search, search_id, populate_existing=True)
        if row is None:
            return None, []
        redact = redactor(row, artifact_dir)
        progress = SearchProgress(**progress_fields(row, redact))
        events = [event_record(event, redact) for event in EventRepository(session).after(search_id, after, limit)]
    return progress, events


def events(
    sessions: sessionmaker[Session],
    public_id: str,
    viewer: Viewer,
    *,
    after: int = 0,
    limit: int = 500,
    artifact_dir: Path | None = None,
) -> list[EventRecord]:
    """Up to `limit` of the search's events with an id above `after`, oldest first (one session)."""
    with session_scope(sessions) as session:
        row = require_row(session, public_id, viewer)
        redact = redactor(row, artifact_dir)
        return [event_record(event, redact) for event in EventRepository(session).after(row.id, after, limit)]
