"""`/v1/searches`: submit a search under a latency budget, follow it, read what it found, cancel it.

    POST /v1/searches                     SearchRequest fields as JSON -> 202 + Location, the search
    GET  /v1/searches                     own (admins: all), newest first: ?limit&offset&status
    GET  /v1/searches/{id}                status, phase, progress, counts, result (winner/baseline ids), links
    GET  /v1/searches/{id}/candidates     ?limit&offset&sort&phase&status -> {items,total,limit,offset}
    GET  /v1/searches/{id}/pareto         non-dominated completed candidates (accuracy up, latency down)
    GET  /v1/searches/{id}/events         Server-Sent Events (or ?format=json: a JSON list), resumable
    POST /v1/searches/{id}/cancel         202; queued -> cancelled now, running -> stops between trials

A search belongs to the key that submitted it; another key's reads as 404. `dataset` is a built-in
name (`digits`, `synthetic[:opts]`) or the id of a dataset uploaded with `POST /v1/datasets`, never a
path on the server. Everything is `nas.services.searches`; this module parses and streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Query, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Key
from api.deps import AppSettings, Sessions
from api.paging import MAX_EVENT_ID, EventAfter, Offset
from api.problems import Problem
from api.service_errors import ServiceRoute
from nas.datasets import DatasetError
from nas.search.request import SearchRequest
from nas.services import searches
from nas.services.records import Page, json_safe
from nas.services.searches import (
    CandidateRecord,
    CandidateSort,
    EventRecord,
    ParetoFront,
    SearchRecord,
    SearchSummary,
)
from nas.store import FINISHED_SEARCH_STATUSES
from nas.store.models import CandidatePhase, CandidateStatus, SearchStatus

router = APIRouter(tags=["searches"], route_class=ServiceRoute)

KEEPALIVE_S = 10.0
EVENT_BATCH = 500
MAX_FILTER_VALUES = 16  # a repeatable filter (?status=...&status=...) names at most this many values

SearchId = Annotated[str, PathParam(description="the search's id", max_length=64)]


class SearchSubmission(SearchRequest):
    """The body of `POST /v1/searches`: a `SearchRequest` whose dataset is a name or an uploaded id.

    Numbers and flags are strict: `"8"` or `true` for `budget_ms` is a client's mistake worth a 422,
    not something to guess at (integers are fine where a number is expected).
    """

    dataset: str = Field(
        min_length=1,
        max_length=200,
        description="'digits', 'synthetic[:opts]' (e.g. synthetic:classes=4,per_class=20), or the id of a "
        "dataset uploaded with POST /v1/datasets",
    )
    budget_ms: float = Field(gt=0, strict=True, description="latency budget on the device, milliseconds")
    seed: int = Field(default=0, ge=0, lt=2**31, strict=True)
    resolution: int = Field(
        default=32,
        ge=16,
        le=320,
        strict=True,
        description="deployment input resolution: latency, budget, export and reported accuracy",
    )
    train_resolution: int | None = Field(
        default=None,
        ge=16,
        le=320,
        strict=True,
        description="resolution the search's trials train at (default min(resolution, 32)); at most resolution",
    )
    netadapt: bool = Field(default=True, strict=True, description="shrink the best candidate with NetAdapt")
    baseline: bool = Field(default=True, strict=True, description="train MobileNetV3-Small scaled to the budget")
    max_over_budget_ratio: float = Field(default=1.25, ge=1.0, le=10.0, strict=True)


def _filter(description: str) -> Any:
    return Query(description=f"{description} (repeatable, at most {MAX_FILTER_VALUES})", max_length=MAX_FILTER_VALUES)


StatusFilter = Annotated[list[SearchStatus] | None, _filter("only these statuses")]
PhaseFilter = Annotated[list[CandidatePhase] | None, _filter("only these phases (default: all)")]
CandidateStatusFilter = Annotated[list[CandidateStatus] | None, _filter("only these statuses")]


# --- submit ------------------------------------------------------------------------------------------


@router.post(
    "/v1/searches",
    status_code=202,
    response_model=SearchRecord,
    summary="Submit a search under a latency budget",
    responses={
        202: {"description": "queued; Location names the search"},
        404: {"description": "unknown device or dataset"},
        422: {"description": "invalid request, budget below the fastest reachable latency, or LUT incomplete"},
    },
)
def submit(
    body: SearchSubmission, response: Response, identity: Key, sessions: Sessions, settings: AppSettings
) -> SearchRecord:
    try:
        search = searches.submit(
            sessions,
            body,
            identity,
            max_dataset_bytes=settings.max_upload_bytes,
            artifact_dir=settings.artifact_dir,
        )
    except DatasetError as error:  # too large a built-in dataset included: the request asks for it
        raise Problem(422, str(error), field="dataset") from None
    response.headers["Location"] = search.links["self"]
    return search


# --- read --------------------------------------------------------------------------------------------


@router.get(
    "/v1/searches", response_model=Page[SearchSummary], summary="List your searches (admins: all), newest first"
)
def list_searches(
    identity: Key,
    sessions: Sessions,
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
    status: StatusFilter = None,
) -> Page[SearchSummary]:
    return searches.list_page(
        sessions, identity, status=status, limit=limit, offset=offset, artifact_dir=settings.artifact_dir
    )


@router.get(
    "/v1/searches/{search_id}", response_model=SearchRecord, summary="One search: status, progress, result, links"
)
def get_search(search_id: SearchId, identity: Key, sessions: Sessions, settings: AppSettings) -> SearchRecord:
    return searches.get(sessions, search_id, identity, artifact_dir=settings.artifact_dir)


@router.get(
    "/v1/searches/{search_id}/candidates",
    response_model=Page[CandidateRecord],
    summary="A page of the search's candidates, sortable",
)
def list_candidates(
    search_id: SearchId,
    identity: Key,
    sessions: Sessions,
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
    sort: Annotated[CandidateSort, Query(description="a leading '-' sorts descending; no accuracy sorts last")] = (
        "created_at"
    ),
    phase: PhaseFilter = None,
    status: CandidateStatusFilter = None,
) -> Page[CandidateRecord]:
    return searches.candidates(
        sessions,
        search_id,
        identity,
        sort=sort,
        phase=phase,
        status=status,
        limit=limit,
        offset=offset,
        artifact_dir=settings.artifact_dir,
    )


@router.get(
    "/v1/searches/{search_id}/pareto",
    response_model=ParetoFront,
    summary="The accuracy / latency Pareto front of the candidates",
)
def get_pareto(
    search_id: SearchId, identity: Key, sessions: Sessions, settings: AppSettings, phase: PhaseFilter = None
) -> ParetoFront:
    return searches.pareto(sessions, search_id, identity, phase=phase, artifact_dir=settings.artifact_dir)


# --- cancel ------------------------------------------------------------------------------------------


@router.post(
    "/v1/searches/{search_id}/cancel",
    status_code=202,
    response_model=SearchRecord,
    summary="Cancel a search (queued: at once; running: between trials, keeping its candidates)",
    responses={409: {"description": "the search already finished"}},
)
def cancel(search_id: SearchId, identity: Key, sessions: Sessions, settings: AppSettings) -> SearchRecord:
    return searches.cancel(sessions, search_id, identity, artifact_dir=settings.artifact_dir)


# --- events ------------------------------------------------------------------------------------------


def sse_message(event: str, data: Any, event_id: int | None = None) -> str:
    """One Server-Sent Event. `data` is JSON on one line, so a single `data:` field carries it."""
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines += [f"event: {event}", f"data: {json.dumps(json_safe(data), separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"


async def event_stream(
    sessions: sessionmaker[Session], search_id: int, after: int, poll_s: float, artifact_dir: Path | None = None
) -> AsyncIterator[str]:
    """Stored events (with their ids), a `progress` event whenever the status changes, `end` at the end."""
    yield f"retry: {int(max(poll_s, 1.0) * 1000)}\n\n"
    last_id, sent = after, None
    last_write = time.monotonic()
    while True:
        snapshot, events = await run_in_threadpool(
            searches.poll, sessions, search_id, last_id, EVENT_BATCH, artifact_dir=artifact_dir
        )
        if snapshot is None:  # deleted while being watched
            yield sse_message("end", {"id": None, "status": "deleted"})
            return
        for event in events:
            yield sse_message(event.kind, event.model_dump(mode="json"), event.id)
            last_id = event.id
        wrote = bool(events)
        if snapshot != sent:
            yield sse_message("progress", snapshot.model_dump(mode="json"))
            sent, wrote = snapshot, True
        if len(events) == EVENT_BATCH:
            continue  # more are waiting: no pause
        if snapshot.status in FINISHED_SEARCH_STATUSES:
            yield sse_message("end", snapshot.model_dump(mode="json"))
            return
        now = time.monotonic()
        if wrote:
            last_write = now
        elif now - last_write >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_write = now
        await anyio.sleep(poll_s)


def _resume_point(after: int, last_event_id: str | None) -> int:
    if last_event_id is None or not last_event_id.strip():
        return after
    value = last_event_id.strip()
    if not value.isdigit() or int(value) > MAX_EVENT_ID:
        raise Problem(422, f"Last-Event-ID must be an event id (a non-negative integer), got {value!r}",
                      field="Last-Event-ID")  # fmt: skip
    return int(value)


@router.get(
    "/v1/searches/{search_id}/events",
    response_model=list[EventRecord],
    summary="The search's events as Server-Sent Events (or ?format=json), resumable with Last-Event-ID",
    responses={
        200: {
            "description": "format=sse: a text/event-stream of the stored events (`id`, `event` = the event's "
            "kind, `data` = the event as in the JSON list), a `progress` event (the search's progress) whenever "
            "it changes and an `end` event once it finished; format=json: the events as a JSON list",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def search_events(
    search_id: SearchId,
    identity: Key,
    sessions: Sessions,
    settings: AppSettings,
    after: EventAfter = 0,
    format: Annotated[Literal["sse", "json"], Query(description="sse: a live stream; json: a list")] = "sse",
    limit: Annotated[int, Query(ge=1, le=1000, description="format=json: at most this many")] = 500,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Any:
    start = _resume_point(after, last_event_id)
    if format == "json":  # one hop to the thread pool: under load every hop is a queue to wait in
        return await run_in_threadpool(
            searches.events, sessions, search_id, identity, after=start, limit=limit, artifact_dir=settings.artifact_dir
        )
    internal_id = await run_in_threadpool(searches.watch_id, sessions, search_id, identity)
    return StreamingResponse(
        event_stream(sessions, internal_id, start, float(settings.sse_poll_s), settings.artifact_dir),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
