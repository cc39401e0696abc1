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
path on the server.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Key, owner_filter
from api.paging import MAX_EVENT_ID, EventAfter, Offset
from api.problems import Problem
from api.routes.architectures import architecture_links, json_safe, spec_string
from nas.datasets import BUILTIN_DATASETS, DatasetError
from nas.search.request import DEFAULT_TRAIN_RESOLUTION, SearchRequest
from nas.search.supernet_search import check_supernet_request
from nas.store import (
    FINISHED_SEARCH_STATUSES,
    ArchitectureRepository,
    CandidateRecord,
    CandidateRepository,
    DatasetRepository,
    EventRecord,
    EventRepository,
    KeyIdentity,
    Search,
    SearchNotFoundError,
    SearchRepository,
    session_scope,
)
from nas.store.models import CandidatePhase, CandidateStatus, SearchStatus
from nas.strategies import Observation, pareto_front
from nas.submission import submit_search
from search_spaces.space import get_space

router = APIRouter(tags=["searches"])

# An uploaded dataset's id (uuid4 hex), as `POST /v1/datasets` hands it out.
DATASET_ID = re.compile(r"[0-9a-f]{32}")
KEEPALIVE_S = 10.0
EVENT_BATCH = 500

SearchId = Annotated[str, PathParam(description="the search's id", max_length=64)]
CandidateSort = Literal["accuracy", "-accuracy", "predicted_ms", "-predicted_ms", "created_at", "-created_at"]


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


# --- resources ---------------------------------------------------------------------------------------


def search_links(public_id: str, result: dict[str, Any] | None = None) -> dict[str, str]:
    base = f"/v1/searches/{public_id}"
    links = {
        "self": base,
        "candidates": f"{base}/candidates",
        "pareto": f"{base}/pareto",
        "events": f"{base}/events",
        "cancel": f"{base}/cancel",
    }
    for role in ("winner", "baseline"):
        entry = (result or {}).get(role)
        if isinstance(entry, dict) and entry.get("architecture_id"):
            links[role] = f"/v1/architectures/{entry['architecture_id']}"
    return links


def search_status(row: Search) -> dict[str, Any]:
    """What changes while a search runs: the data of every SSE `progress` event."""
    return {
        "id": row.public_id,
        "status": row.status,
        "phase": row.phase,
        "progress": row.progress,
        "trials_done": row.trials_done,
        "trials_total": row.trials_total,
        "over_budget_skipped": row.over_budget_skipped,
        "cancel_requested": row.cancel_requested,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "error": row.error,
    }


def public_result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The worker's result summary with architecture ids in place of server paths."""
    if not result:
        return None
    ids = dict(result.get("architectures") or {})
    public = {key: value for key, value in result.items() if key not in ("architectures", "winner", "baseline")}
    for role in ("winner", "baseline"):
        entry = result.get(role)
        if isinstance(entry, dict):
            entry = {key: value for key, value in entry.items() if key != "artifact_dir"}
            entry["architecture_id"] = ids.get(role)
        public[role] = entry
    return public


def _architecture_id(result: dict[str, Any] | None, role: str) -> str | None:
    entry = (result or {}).get(role)
    return entry.get("architecture_id") if isinstance(entry, dict) else None


def search_resource(row: Search, session: Session | None = None) -> dict[str, Any]:
    """A search as the API shows it; with `session`, also its exported architectures."""
    request = dict(row.request or {})
    result = public_result(row.result)
    resource = {
        **search_status(row),
        "budget_ms": row.budget_ms,
        "device": row.device.name,
        "space": row.space,
        "dataset": row.dataset,
        "strategy": row.strategy,
        "effort": request.get("effort"),
        "resolution": request.get("resolution"),
        "train_resolution": request.get("train_resolution")
        or min(int(request.get("resolution") or DEFAULT_TRAIN_RESOLUTION), DEFAULT_TRAIN_RESOLUTION),
        "owner": row.owner,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "request": {**request, "dataset": row.dataset},
        "result": result,
        "winner_id": _architecture_id(result, "winner"),
        "baseline_id": _architecture_id(result, "baseline"),
        "links": search_links(row.public_id, result),
    }
    if session is not None:
        resource["architectures"] = [
            {
                "id": architecture.public_id,
                "role": architecture.role,
                "accuracy": architecture.accuracy,
                "predicted_ms": architecture.predicted_ms,
                "measured_ms": architecture.measured_ms,
                "links": architecture_links(architecture.public_id),
            }
            for architecture in ArchitectureRepository(session).for_search(row.id)
        ]
    return json_safe(resource)


def candidate_resource(candidate: CandidateRecord) -> dict[str, Any]:
    return json_safe(
        {
            "id": candidate.id,
            "arch_hash": candidate.arch_hash,
            "phase": candidate.phase,
            "status": candidate.status,
            "predicted_ms": candidate.predicted_ms,
            "accuracy": candidate.accuracy,
            "evaluation": candidate.evaluation,
            "accuracies": list(candidate.accuracies),
            "params": candidate.params,
            "madds": candidate.madds,
            "train_seconds": candidate.train_seconds,
            "spec": spec_string(candidate.spec),
            "trial_id": candidate.trial_id,
            "error": candidate.error,
            "created_at": candidate.created_at,
        }
    )


def event_resource(event: EventRecord) -> dict[str, Any]:
    return json_safe(
        {
            "id": event.id,
            "kind": event.kind,
            "level": event.level,
            "message": event.message,
            "data": event.data,
            "created_at": event.created_at,
        }
    )


def visible_search(session: Session, public_id: str, identity: KeyIdentity) -> Search:
    """The search if `identity` may see it; another key's search reads as not found."""
    row = SearchRepository(session).require(public_id)
    if not identity.may_see(row.owner):
        raise SearchNotFoundError(public_id)
    return row


# --- submit ------------------------------------------------------------------------------------------


def resolve_dataset(session: Session, value: str, identity: KeyIdentity) -> tuple[str, str | None]:
    """(what the worker loads, what the search shows): a built-in spec as it is, an uploaded id as its path.

    Paths from clients are refused: a search may only read what was uploaded through the API.
    """
    value = value.strip()
    if "/" in value or "\\" in value or value.lower().endswith((".npz", ".zip")):
        raise Problem(
            422,
            f"dataset {value!r} looks like a file path; the server reads no paths from clients: upload the file "
            "with POST /v1/datasets (hwnas search submit --dataset FILE does) and pass its id",
            field="dataset",
        )
    if value.partition(":")[0] in BUILTIN_DATASETS:
        return value, None
    if DATASET_ID.fullmatch(value):
        row = DatasetRepository(session).require(value, viewer=identity)
        return row.path, row.public_id
    raise Problem(
        422,
        f"unknown dataset {value!r}: expected {', '.join(BUILTIN_DATASETS)} (with options, e.g. "
        "synthetic:classes=4,per_class=20) or the id of a dataset uploaded with POST /v1/datasets",
        field="dataset",
    )


def _check_space_options(body: SearchSubmission) -> None:
    try:
        space = get_space(body.space).with_options(resolutions=[body.resolution], widths=body.widths)
    except ValueError as error:
        raise Problem(422, str(error), field="widths" if body.widths is not None else "resolution") from None
    if body.strategy == "supernet":
        try:
            check_supernet_request(space)
        except ValueError as error:
            raise Problem(422, str(error), field="strategy") from None


@router.post(
    "/v1/searches",
    status_code=202,
    summary="Submit a search under a latency budget",
    responses={
        202: {"description": "queued; Location names the search"},
        404: {"description": "unknown device or dataset"},
        422: {"description": "invalid request, budget below the fastest reachable latency, or LUT incomplete"},
    },
)
def submit(body: SearchSubmission, request: Request, response: Response, identity: Key) -> dict[str, Any]:
    sessions = request.app.state.sessions
    with session_scope(sessions) as session:
        dataset, label = resolve_dataset(session, body.dataset, identity)
    _check_space_options(body)
    search_request = SearchRequest.model_validate({**body.model_dump(), "dataset": dataset})
    try:
        public_id = submit_search(sessions, search_request, owner=identity.key_id, dataset_label=label)
    except DatasetError as error:
        raise Problem(422, str(error), field="dataset") from None
    with session_scope(sessions) as session:
        resource = search_resource(SearchRepository(session).require(public_id), session)
    response.headers["Location"] = resource["links"]["self"]
    return resource


# --- read --------------------------------------------------------------------------------------------


@router.get("/v1/searches", summary="List your searches (admins: all), newest first")
def list_searches(
    request: Request,
    identity: Key,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
    status: Annotated[list[SearchStatus] | None, Query(description="repeatable")] = None,
) -> dict[str, Any]:
    owner = owner_filter(identity)
    with session_scope(request.app.state.sessions) as session:
        repository = SearchRepository(session)
        rows = repository.list(owner=owner, status=status, limit=limit, offset=offset)
        items = [search_resource(row) for row in rows]
        total = repository.count(owner=owner, status=status)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/v1/searches/{search_id}", summary="One search: status, progress, result, links")
def get_search(search_id: SearchId, request: Request, identity: Key) -> dict[str, Any]:
    with session_scope(request.app.state.sessions) as session:
        return search_resource(visible_search(session, search_id, identity), session)


@router.get("/v1/searches/{search_id}/candidates", summary="A page of the search's candidates, sortable")
def list_candidates(
    search_id: SearchId,
    request: Request,
    identity: Key,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
    sort: Annotated[CandidateSort, Query(description="a leading '-' sorts descending; no accuracy sorts last")] = (
        "created_at"
    ),
    phase: Annotated[list[CandidatePhase] | None, Query(description="repeatable")] = None,
    status: Annotated[list[CandidateStatus] | None, Query(description="repeatable")] = None,
) -> dict[str, Any]:
    with session_scope(request.app.state.sessions) as session:
        search = visible_search(session, search_id, identity)
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
    return {"items": [candidate_resource(row) for row in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/v1/searches/{search_id}/pareto", summary="The accuracy / latency Pareto front of the candidates")
def get_pareto(
    search_id: SearchId,
    request: Request,
    identity: Key,
    phase: Annotated[list[CandidatePhase] | None, Query(description="only these phases (default: all)")] = None,
) -> dict[str, Any]:
    with session_scope(request.app.state.sessions) as session:
        search = visible_search(session, search_id, identity)
        budget_ms, status = search.budget_ms, search.status
        completed = CandidateRepository(session).list(search.id, phase=phase, status="completed")
    by_hash = {c.arch_hash: c for c in completed if c.accuracy is not None and math.isfinite(c.accuracy)}
    observations = [
        Observation(genome=(), arch_hash=h, accuracy=c.accuracy, latency_ms=c.predicted_ms, status="completed")
        for h, c in by_hash.items()
    ]
    items = []
    for observation in pareto_front(observations):
        item = candidate_resource(by_hash[observation.arch_hash])
        item["within_budget"] = item["predicted_ms"] <= budget_ms
        items.append(item)
    return {"search_id": search_id, "status": status, "budget_ms": budget_ms, "items": items, "total": len(items)}


# --- cancel ------------------------------------------------------------------------------------------


@router.post(
    "/v1/searches/{search_id}/cancel",
    status_code=202,
    summary="Cancel a search (queued: at once; running: between trials, keeping its candidates)",
    responses={409: {"description": "the search already finished"}},
)
def cancel(search_id: SearchId, request: Request, identity: Key) -> dict[str, Any]:
    with session_scope(request.app.state.sessions) as session:
        visible_search(session, search_id, identity)
        SearchRepository(session).request_cancel(search_id)
    with session_scope(request.app.state.sessions) as session:
        return search_resource(SearchRepository(session).require(search_id), session)


# --- events ------------------------------------------------------------------------------------------


def _poll(sessions: sessionmaker[Session], search_id: int, after: int, limit: int) -> tuple[dict | None, list]:
    """The search's status (read first), then its events after `after`.

    Reading the status first matters: a search seen finished here had written all its events before
    finishing, so the events read next are all there is and the stream may end after them.
    """
    with session_scope(sessions) as session:
        row = session.get(Search, search_id, populate_existing=True)
        snapshot = None if row is None else jsonable_encoder(search_status(row))
        events = EventRepository(session).after(search_id, after, limit)
    return snapshot, events


def sse_message(event: str, data: Any, event_id: int | None = None) -> str:
    """One Server-Sent Event. `data` is JSON on one line, so a single `data:` field carries it."""
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines += [f"event: {event}", f"data: {json.dumps(json_safe(jsonable_encoder(data)), separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"


async def event_stream(
    sessions: sessionmaker[Session], search_id: int, after: int, poll_s: float
) -> AsyncIterator[str]:
    """Stored events (with their ids), a `progress` event whenever the status changes, `end` at the end."""
    yield f"retry: {int(max(poll_s, 1.0) * 1000)}\n\n"
    last_id, sent = after, None
    last_write = time.monotonic()
    while True:
        snapshot, events = await run_in_threadpool(_poll, sessions, search_id, last_id, EVENT_BATCH)
        if snapshot is None:  # deleted while being watched
            yield sse_message("end", {"id": None, "status": "deleted"})
            return
        for event in events:
            yield sse_message(event.kind, event_resource(event), event.id)
            last_id = event.id
        wrote = bool(events)
        if snapshot != sent:
            yield sse_message("progress", snapshot)
            sent, wrote = snapshot, True
        if len(events) == EVENT_BATCH:
            continue  # more are waiting: no pause
        if snapshot["status"] in FINISHED_SEARCH_STATUSES:
            yield sse_message("end", snapshot)
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
    summary="The search's events as Server-Sent Events (or ?format=json), resumable with Last-Event-ID",
    responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}},
)
async def search_events(
    search_id: SearchId,
    request: Request,
    identity: Key,
    after: EventAfter = 0,
    format: Annotated[Literal["sse", "json"], Query(description="sse: a live stream; json: a list")] = "sse",
    limit: Annotated[int, Query(ge=1, le=1000, description="format=json: at most this many")] = 500,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Any:
    sessions = request.app.state.sessions
    start = _resume_point(after, last_event_id)

    def lookup() -> int:
        with session_scope(sessions) as session:
            return visible_search(session, search_id, identity).id

    internal_id = await run_in_threadpool(lookup)
    if format == "json":
        _, events = await run_in_threadpool(_poll, sessions, internal_id, start, limit)
        return [event_resource(event) for event in events]
    poll_s = float(request.app.state.settings.sse_poll_s)
    return StreamingResponse(
        event_stream(sessions, internal_id, start, poll_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
