"""`GET /v1/health`: open (no key), says whether the database answers and what the queue holds."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.app import API_VERSION
from api.deps import AppSettings, Sessions
from api.schemas.health import Health, Unavailable
from nas.services import health as store_health

router = APIRouter(tags=["health"])


@router.get(
    "/v1/health",
    summary="Liveness and database check (no API key needed)",
    response_model=Health,
    responses={503: {"model": Unavailable, "description": "The database does not answer"}},
)
def health(request: Request, sessions: Sessions, settings: AppSettings) -> Health | Response:
    try:
        queued = store_health.queued_searches(sessions)
    except Exception as error:  # noqa: BLE001 - a health check reports, it does not raise
        unavailable = Unavailable(database=f"error: {type(error).__name__}")
        return JSONResponse(unavailable.model_dump(), status_code=503)
    return Health(
        version=API_VERSION,
        database=request.app.state.engine.dialect.name,
        queued_searches=queued,
        embedded_worker=settings.embedded_worker,
        worker_pid=getattr(request.app.state, "worker_process", None) and request.app.state.worker_process.pid,
    )
