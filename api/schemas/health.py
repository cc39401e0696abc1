"""`GET /v1/health`'s answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(description="the API version")
    database: str = Field(description="the store's dialect: sqlite or postgresql")
    queued_searches: int
    embedded_worker: bool = Field(description="this API runs a search worker (a child process, or a thread)")
    worker_pid: int | None = Field(
        default=None, description="the embedded worker's process id when it runs as a child process"
    )


class Unavailable(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    database: str = Field(description="what went wrong, e.g. 'error: OperationalError'")
