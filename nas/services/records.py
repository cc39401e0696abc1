"""Pieces every service record shares: timestamps as the API has always written them, pages of a list,
and numbers JSON can carry."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from nas.store import KeyIdentity

Viewer = KeyIdentity | None
"""Who asks: an API key (sees its own rows; an admin key: all), or None for the operator (the CLI and
the worker on the server), who sees everything."""

Timestamp = Annotated[
    datetime,
    # `isoformat()` ("+00:00", as the API wrote times before it had response models), not pydantic's "Z".
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list, newest first unless the list says otherwise."""

    items: list[Item]
    total: int = Field(description="rows the whole list holds")
    limit: int
    offset: int


def owner_filter(viewer: Viewer) -> str | None:
    """The `owner` a list is filtered by: None (everything) for the operator and admins, else the key's id."""
    return None if viewer is None or viewer.admin else viewer.key_id


def may_see(viewer: Viewer, owner: str | None) -> bool:
    return viewer is None or viewer.may_see(owner)


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None: JSON has no such numbers (a browser's
    JSON.parse refuses them, and Starlette refuses to encode them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
