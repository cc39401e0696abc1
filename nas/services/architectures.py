"""Architectures: the networks a search exported (its winner and baseline), and their files.

An architecture belongs to the key whose search made it; another key's reads as not found, exactly
like one that does not exist. Records name files by kind, never by where they lie on the server:
only `artifact_file` (for a download) and `artifact_dirs` (for the operator's CLI) give paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from nas.services.errors import NotFound
from nas.services.records import Page, Timestamp, Viewer, json_safe, may_see, owner_filter
from nas.store import (
    Architecture,
    ArchitectureNotFoundError,
    ArchitectureRepository,
    ArchitectureRole,
    SearchRepository,
    session_scope,
)
from search_spaces.arch_spec import ArchSpec

ArtifactKind = Literal["spec", "onnx", "onnx_uint8", "weights"]
# kind -> (download name, media type); a kind's URL segment is its name with '-' for '_'
ARTIFACTS: dict[str, tuple[str, str]] = {
    "spec": ("spec.json", "application/json"),
    "onnx": ("model.onnx", "application/octet-stream"),
    "onnx_uint8": ("model_uint8.onnx", "application/octet-stream"),
    "weights": ("weights.pt", "application/octet-stream"),
}


class ArtifactMissingError(NotFound):
    """The architecture has no such file (never exported, or gone from the artifact directory)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="kind")


class ArchitectureSummary(BaseModel):
    """An architecture as lists show it (no spec JSON)."""

    id: str
    role: ArchitectureRole
    search_id: str | None
    arch_hash: str
    spec_string: str = Field(description="the blocks in their short form ('' if the spec no longer parses)")
    accuracy: float | None = Field(description="validation accuracy at the deployment resolution")
    test_accuracy: float | None = Field(description="on held-out images nothing was selected on")
    predicted_ms: float
    measured_ms: float | None
    params: int
    madds: int
    created_at: Timestamp
    files: list[ArtifactKind] = Field(description="the kinds of file there are to download")
    links: dict[str, str] = Field(description="self, one per file kind, and search when it came from one")


class ArchitectureRecord(ArchitectureSummary):
    """An architecture in full: the summary, its spec as JSON and the positions of its test images."""

    spec: dict[str, Any]
    test_indices: list[int] = Field(
        description="positions, in the dataset as the service loaded it, of the held-out images test_accuracy "
        "is scored on"
    )


class SearchArchitecture(BaseModel):
    """An architecture as its search lists it."""

    id: str
    role: ArchitectureRole
    accuracy: float | None
    predicted_ms: float
    measured_ms: float | None
    links: dict[str, str]


@dataclass(frozen=True)
class ArtifactFile:
    """A file to stream: where it lies, and the name and media type a download gives it."""

    path: Path
    filename: str
    media_type: str


def spec_string(spec: dict[str, Any]) -> str:
    """The short readable form of a stored spec (`ir_k5_s2_e72_c40_se_hs ...`); '' if it no longer parses."""
    try:
        return ArchSpec.model_validate(spec).to_string()
    except ValueError:
        return ""


def architecture_links(public_id: str) -> dict[str, str]:
    base = f"/v1/architectures/{public_id}"
    return {"self": base, **{kind: f"{base}/{kind.replace('_', '-')}" for kind in ARTIFACTS}}


def _summary_fields(row: Architecture) -> dict[str, Any]:
    return json_safe(
        {
            "id": row.public_id,
            "role": row.role,
            "search_id": row.search.public_id if row.search is not None else None,
            "arch_hash": row.arch_hash,
            "spec_string": spec_string(row.spec),
            "accuracy": row.accuracy,
            "test_accuracy": row.test_accuracy,
            "predicted_ms": row.predicted_ms,
            "measured_ms": row.measured_ms,
            "params": row.params,
            "madds": row.madds,
            "created_at": row.created_at,
            "files": sorted(kind for kind in ARTIFACTS if kind in (row.files or {})),
            "links": architecture_links(row.public_id),
        }
    )


def summary(row: Architecture) -> ArchitectureSummary:
    return ArchitectureSummary(**_summary_fields(row))


def record(row: Architecture) -> ArchitectureRecord:
    fields = _summary_fields(row)
    if fields["search_id"] is not None:
        fields["links"]["search"] = f"/v1/searches/{fields['search_id']}"
    return ArchitectureRecord(**fields, spec=json_safe(dict(row.spec)), test_indices=list(row.test_indices or []))


def for_search(session: Session, search_id: int) -> list[SearchArchitecture]:
    """The architectures a search exported (inside the caller's session; `search_id` is the row's id)."""
    return [
        SearchArchitecture(
            **json_safe(
                {
                    "id": row.public_id,
                    "role": row.role,
                    "accuracy": row.accuracy,
                    "predicted_ms": row.predicted_ms,
                    "measured_ms": row.measured_ms,
                    "links": architecture_links(row.public_id),
                }
            )
        )
        for row in ArchitectureRepository(session).for_search(search_id)
    ]


def require_row(session: Session, public_id: str, viewer: Viewer) -> Architecture:
    """The architecture if `viewer` may see it; another key's reads as not found."""
    row = ArchitectureRepository(session).require(public_id)
    if not may_see(viewer, row.owner):
        raise ArchitectureNotFoundError(public_id)
    return row


# --- the journey ---------------------------------------------------------------------------------------


def list_page(
    sessions: sessionmaker[Session], viewer: Viewer, limit: int = 50, offset: int = 0
) -> Page[ArchitectureSummary]:
    """The architectures `viewer` may see (its own; an admin's and the operator's: all), newest first."""
    owner = owner_filter(viewer)
    with session_scope(sessions) as session:
        repository = ArchitectureRepository(session)
        items = [summary(row) for row in repository.list(owner=owner, limit=limit, offset=offset)]
        total = repository.count(owner=owner)
    return Page[ArchitectureSummary](items=items, total=total, limit=limit, offset=offset)


def get(sessions: sessionmaker[Session], public_id: str, viewer: Viewer) -> ArchitectureRecord:
    with session_scope(sessions) as session:
        return record(require_row(session, public_id, viewer))


def artifact_file(sessions: sessionmaker[Session], public_id: str, kind: str, viewer: Viewer) -> ArtifactFile:
    """The `kind` file of an architecture, checked to lie inside its own artifact directory."""
    with session_scope(sessions) as session:
        row = require_row(session, public_id, viewer)
        name, directory_name = (row.files or {}).get(kind), row.artifact_dir
    missing = ArtifactMissingError(f"architecture {public_id!r} has no {kind} file")
    if not name:
        raise missing
    directory = Path(directory_name).resolve()
    path = (directory / str(name)).resolve()
    if directory not in path.parents:  # a stored name may never point outside its directory
        raise missing
    if not path.is_file():
        raise ArtifactMissingError(
            f"the {kind} file of architecture {public_id!r} is missing from the artifact directory"
        )
    filename, media_type = ARTIFACTS[kind]
    return ArtifactFile(path, filename, media_type)


def artifact_dirs(sessions: sessionmaker[Session], search_public_id: str) -> dict[str, Path]:
    """Role -> the directory holding that architecture's files, for the operator on the server (the CLI's
    `search run` prints where the winner was written); never shown over HTTP."""
    with session_scope(sessions) as session:
        search = SearchRepository(session).require(search_public_id)
        return {row.role: Path(row.artifact_dir) for row in ArchitectureRepository(session).for_search(search.id)}
