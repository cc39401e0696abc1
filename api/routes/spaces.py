"""`/v1/spaces`: the search spaces a search may name, with their choices and sizes."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import Key
from api.service_errors import ServiceRoute
from nas.services import spaces
from nas.services.spaces import SpaceDescription, SpaceSummary

router = APIRouter(tags=["spaces"], route_class=ServiceRoute)


@router.get("/v1/spaces", summary="List the search spaces")
def list_spaces(_: Key) -> list[SpaceSummary]:
    return spaces.summaries()


@router.get("/v1/spaces/{name}", summary="One search space: stages, choices, size")
def get_space(name: str, _: Key) -> SpaceDescription:
    return spaces.describe(name)
