"""Errors as RFC 9457 problem details (`application/problem+json`), naming the offending field.

Every failure a client can cause becomes a 4xx problem; anything else becomes a 500 problem with no
traceback (the traceback goes to the log). Domain errors from the store and the services are mapped
here once, so routers raise them freely.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("hwnas.api")

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
}


class Problem(Exception):
    """Raise from a route: becomes a problem+json response.

    `field`: the request field at fault (JSON path, query or form name). `extra` members are added
    to the body (RFC 9457 extension members), e.g. `fastest_ms` or `missing_keys`.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "budget_ms")` -> `budget_ms`; `("query", "limit")` -> `limit`; nested -> `a.b.0`."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for error in errors:
        message = str(error.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append({"field": _location(error.get("loc", ())), "message": message})
    return out


def _validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    items = validation_errors(errors)
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = "the request body is not valid JSON"
        return problem_response(400, detail, instance=request.url.path, field="body", errors=items)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in items) or "invalid request"
    field = items[0]["field"] if items else None
    return problem_response(422, detail, instance=request.url.path, field=field, errors=items)


def domain_problem(error: Exception) -> Problem | None:
    """The problem a known domain error stands for, or None."""
    from latency_lut.predictor import MissingKeysError
    from nas.search.runner import BudgetUnreachableError
    from nas.store.errors import (
        ArchitectureNotFoundError,
        DatasetNotFoundError,
        DeviceAccessError,
        DeviceExistsError,
        DeviceNotFoundError,
        SearchNotFoundError,
        SearchStateError,
    )

    if isinstance(error, DeviceNotFoundError):
        return Problem(404, str(error), field="device")
    if isinstance(error, SearchNotFoundError):
        return Problem(404, str(error), field="search_id")
    if isinstance(error, ArchitectureNotFoundError):
        return Problem(404, str(error), field="architecture_id")
    if isinstance(error, DatasetNotFoundError):
        return Problem(404, str(error), field="dataset")
    if isinstance(error, DeviceAccessError):
        return Problem(403, str(error), field="device")
    if isinstance(error, DeviceExistsError):
        return Problem(409, str(error), field="name")
    if isinstance(error, SearchStateError):
        return Problem(409, str(error), field="status", status_now=error.status)
    if isinstance(error, BudgetUnreachableError):
        return Problem(422, str(error), field="budget_ms", fastest_ms=error.fastest_ms)
    if isinstance(error, MissingKeysError):
        missing = list(getattr(error, "missing", []) or [])
        if error.space is not None and error.resolution is not None:
            device = quote(error.device, safe="")
            return Problem(
                422,
                str(error),
                field="resolution",
                missing_keys=len(missing),
                missing_examples=missing[:5],
                profile={
                    "space": error.space,
                    "resolution": error.resolution,
                    "kit": f"/v1/devices/{device}/kit?space={error.space}&resolution={error.resolution}",
                    "agent": f"hwnas agent --device {error.device} --space {error.space} "
                    f"--resolution {error.resolution}",
                },
            )
        return Problem(
            422,
            f"{error} Profile them: run `hwnas agent --device <id>` on the device, or download "
            "GET /v1/devices/{id}/kit, run it there and upload its results to POST /v1/devices/{id}/lut.",
            field="device",
            missing_keys=len(missing),
            missing_examples=missing[:5],
        )
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(
            error.status,
            error.detail,
            instance=request.url.path,
            title=error.title,
            headers=error.headers,
            field=error.field,
            **error.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_problem(request, list(error.errors()))

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, error: ValidationError) -> JSONResponse:
        return _validation_problem(request, list(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            error.status_code, str(error.detail), instance=request.url.path, headers=getattr(error, "headers", None)
        )

    async def _domain(request: Request, error: Exception) -> JSONResponse:
        mapped = domain_problem(error)
        if mapped is None:
            mapped = Problem(422, str(error))
        return await _problem(request, mapped)

    from latency_lut.predictor import MissingKeysError
    from nas.store.errors import StoreError

    # Specific classes go through Starlette's ExceptionMiddleware (handled, not re-raised).
    for error_class in (StoreError, MissingKeysError, ValueError):
        app.add_exception_handler(error_class, _domain)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "the server failed to handle this request; see its log", instance=request.url.path)
