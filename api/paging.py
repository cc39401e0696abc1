"""Query parameters shared by the list endpoints. Bounds keep every value inside what both databases
store (a larger offset or event id would overflow SQLite's and PostgreSQL's 64-bit integers: a 500)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query, Request

from nas.store import KeyIdentity, session_scope

MAX_OFFSET = 2**31 - 1
MAX_EVENT_ID = 2**62

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
EventAfter = Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="only events with a larger id")]
Limit = Annotated[int, Query(ge=1, le=200, description="rows per page")]


def owned_page(
    request: Request,
    identity: KeyIdentity,
    repository: Callable[[Any], Any],
    resource: Callable[[Any], dict[str, Any]],
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """One page of the rows `identity` may see (its own; an admin's: all), as `{items,total,limit,offset}`.
    `repository(session)` must offer `list(owner, limit, offset)` and `count(owner)`."""
    owner = None if identity.admin else identity.key_id
    with session_scope(request.app.state.sessions) as session:
        rows = repository(session)
        items = [resource(row) for row in rows.list(owner=owner, limit=limit, offset=offset)]
        total = rows.count(owner=owner)
    return {"items": items, "total": total, "limit": limit, "offset": offset}
