"""`GET /v1/health`: open (no key), says whether the database answers and what the queue holds."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.app import API_VERSION
from nas.store import SearchRepository, session_scope

router = APIRouter(tags=["health"])


@router.get("/v1/health", summary="Liveness and database check (no API key needed)")
def health(request: Request) -> JSONResponse:
    try:
        with session_scope(request.app.state.sessions) as session:
            session.execute(text("SELECT 1"))
            queued = SearchRepository(session).queue_length()
    except Exception as error:  # noqa: BLE001 - a health check reports, it does not raise
        return JSONResponse({"status": "unavailable", "database": f"error: {type(error).__name__}"}, status_code=503)
    settings = request.app.state.settings
    return JSONResponse(
        {
            "status": "ok",
            "version": API_VERSION,
            "database": request.app.state.engine.dialect.name,
            "queued_searches": queued,
            "embedded_worker": settings.embedded_worker,
        }
    )
