"""Query parameters shared by the list endpoints. Bounds keep every value inside what both databases
store (a larger offset or event id would overflow SQLite's and PostgreSQL's 64-bit integers: a 500)."""

from typing import Annotated

from fastapi import Query

MAX_OFFSET = 2**31 - 1
MAX_EVENT_ID = 2**62

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
EventAfter = Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="only events with a larger id")]
