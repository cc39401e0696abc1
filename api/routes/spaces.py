"""`/v1/spaces`: the search spaces a search may name, with their choices and sizes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import Key
from api.problems import Problem
from search_spaces import SPACES

router = APIRouter(tags=["spaces"])


@router.get("/v1/spaces", summary="List the search spaces")
def list_spaces(_: Key) -> list[dict[str, Any]]:
    return [
        {
            "name": space.name,
            "description": space.description,
            "num_architectures": float(space.size()),
            "num_block_keys": len(space.block_keys()),
        }
        for space in SPACES.values()
    ]


@router.get("/v1/spaces/{name}", summary="One search space: stages, choices, size")
def get_space(name: str, _: Key) -> dict[str, Any]:
    space = SPACES.get(name)
    if space is None:
        raise Problem(404, f"unknown search space {name!r}; known: {', '.join(SPACES)}", field="name")
    info = space.describe()
    info["num_architectures"] = float(info["num_architectures"])
    return info
