"""The service floor's refusals (`nas.services.errors`) as problem+json: one status per class.

Routers built with `route_class=ServiceRoute` let a route (or its dependencies) raise them freely.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.problems import Problem
from nas.services.errors import InvalidInput, NotFound, ServiceError, UnreadableInput, WrongState

STATUS: dict[type[ServiceError], int] = {
    UnreadableInput: 400,
    NotFound: 404,
    WrongState: 409,
    InvalidInput: 422,
}


def problem_for(error: ServiceError) -> Problem:
    status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 422)
    return Problem(status, error.message, field=error.field, **error.details)


class ServiceRoute(APIRoute):
    """A route whose `ServiceError`s become problems naming their field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as error:
                raise problem_for(error) from None

        return handle
