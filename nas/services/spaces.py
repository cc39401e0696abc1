"""The search spaces a search may name, as the API lists and describes them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from nas.services.errors import NotFound
from search_spaces import SPACES


class SpaceSummary(BaseModel):
    name: str
    description: str
    num_architectures: float = Field(description="how many networks the space holds (a float: it is huge)")
    num_block_keys: int = Field(description="lookup-table keys a device needs to cover it")


class StageRecord(BaseModel):
    out_channels: int
    stride: int
    depths: list[int]


class SpaceDescription(BaseModel):
    """One space's choices: stages, per-block options, widths and resolutions, and its size."""

    name: str
    description: str
    stages: list[StageRecord]
    fixed_blocks: list[str]
    kernels: list[int]
    expansions: list[int]
    se: list[bool]
    activations: list[str]
    widths: list[float]
    resolutions: list[int]
    num_classes: int
    genome_length: int
    num_architectures: float = Field(description="how many networks the space holds (a float: it is huge)")
    num_block_keys: int = Field(description="lookup-table keys a device needs to cover it")


def summaries() -> list[SpaceSummary]:
    return [
        SpaceSummary(
            name=space.name,
            description=space.description,
            num_architectures=float(space.size()),
            num_block_keys=len(space.block_keys()),
        )
        for space in SPACES.values()
    ]


def describe(name: str) -> SpaceDescription:
    """The named space; `NotFound` naming `name` for an unknown one."""
    space = SPACES.get(name)
    if space is None:
        raise NotFound(f"unknown search space {name!r}; known: {', '.join(SPACES)}", field="name")
    info = space.describe()
    info["num_architectures"] = float(info["num_architectures"])
    return SpaceDescription.model_validate(info)
