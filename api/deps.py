"""Dependencies the routers share: the store's sessions, the settings, the device a path names, the
search space the query chooses and an uploaded results file. Tests replace them through `app.dependency_overrides`.

Space-scoped endpoints take `space` plus optional repeatable `resolution`, `width` and `num_classes`,
exactly like the CLI's `--space/-r/-w/--num-classes`; every refusal names the query parameter at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import UploadFile

from api.auth import Key
from api.problems import Problem
from latency_lut.device import DEVICE_NAME_RE
from nas.services import devices
from nas.settings import Settings
from nas.store.errors import DeviceNotFoundError
from search_spaces.space import SPACES, SearchSpace

# Dependencies that never block are coroutines: FastAPI runs a plain function dependency in its thread
# pool, and under load every hop there is a queue to wait in.


async def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


Sessions = Annotated[sessionmaker[Session], Depends(get_sessions)]
AppSettings = Annotated[Settings, Depends(get_settings)]


# --- the device a path names ---------------------------------------------------------------------------


async def device_name(name: str) -> str:
    """The `{name}` path segment; a name no device can have is a 404 at once (and never reaches SQL)."""
    if not DEVICE_NAME_RE.fullmatch(name):
        raise DeviceNotFoundError(name)
    return name


def readable_device(name: Annotated[str, Depends(device_name)], sessions: Sessions, identity: Key) -> str:
    """A device the key may see (its own, a shared one, or any for an admin); others are a 404."""
    devices.check_access(sessions, name, identity)
    return name


def writable_device(name: Annotated[str, Depends(device_name)], sessions: Sessions, identity: Key) -> str:
    """A device the key may change: its owner's or, for an admin, any; another key's is a 403."""
    devices.check_access(sessions, name, identity, write=True)
    return name


DeviceName = Annotated[str, Depends(readable_device)]
WritableDevice = Annotated[str, Depends(writable_device)]


# --- the search space the query chooses ----------------------------------------------------------------

SpaceQuery = Annotated[str, Query(description="search space name (GET /v1/spaces)")]
OptionalSpaceQuery = Annotated[str | None, Query(description="search space name: report coverage of it")]
ResolutionQuery = Annotated[list[int] | None, Query(description="restrict to these resolutions (repeatable)")]
WidthQuery = Annotated[list[float] | None, Query(description="restrict to these width multipliers (repeatable)")]
ClassesQuery = Annotated[int | None, Query(description="classifier outputs (default: the space's)")]


def chosen_space(
    name: str, resolution: list[int] | None, width: list[float] | None, num_classes: int | None
) -> SearchSpace:
    """The named space narrowed like the CLI does; every refusal names the query parameter at fault."""
    space = SPACES.get(name)
    if space is None:
        raise Problem(422, f"unknown search space {name!r}; known: {', '.join(SPACES)}", field="space")
    narrowings: list[tuple[str, dict[str, Any]]] = []
    if resolution:
        narrowings.append(("resolution", {"resolutions": resolution}))
    if width:
        narrowings.append(("width", {"widths": width}))
    if num_classes is not None:
        narrowings.append(("num_classes", {"num_classes": num_classes}))
    for field, options in narrowings:  # one at a time, so a refusal names its own parameter
        try:
            space = space.with_options(**options)
        except ValueError as error:
            raise Problem(422, str(error), field=field) from None
    return space


def optional_space(
    name: str | None, resolution: list[int] | None, width: list[float] | None, num_classes: int | None
) -> SearchSpace | None:
    """`chosen_space`, or None when no space is named (then nothing may narrow one)."""
    if name is None:
        for field, value in (("resolution", resolution), ("width", width), ("num_classes", num_classes)):
            if value is not None and value != []:
                raise Problem(422, f"{field} narrows a space: give space as well", field="space")
        return None
    return chosen_space(name, resolution, width, num_classes)


def space_query(
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> SearchSpace:
    return chosen_space(space, resolution, width, num_classes)


def optional_space_query(
    space: OptionalSpaceQuery = None,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> SearchSpace | None:
    return optional_space(space, resolution, width, num_classes)


ChosenSpace = Annotated[SearchSpace, Depends(space_query)]
OptionalSpace = Annotated[SearchSpace | None, Depends(optional_space_query)]


# --- an uploaded results file ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Uploaded:
    """A results file as sent: a raw body (`part` "body") or a multipart form's `file` part."""

    content: bytes
    part: str


def _too_large(limit: int, size: int | None = None) -> Problem:
    told = f"the upload is {size:,} bytes" if size is not None else "the upload is larger than that"
    return Problem(
        413,
        f"{told}; the largest accepted is {limit:,} bytes (HWNAS_MAX_UPLOAD_MB)",
        field="file",
        max_upload_bytes=limit,
    )


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit`.

    Content-Length is checked before anything is read; the stream is counted while it is read, so a
    body without (or lying about) its length is never held beyond the limit either.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Problem(400, f"Content-Length {declared!r} is not a number", field="Content-Length") from None
        if size > limit:
            raise _too_large(limit, size)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _file_part(request: Request, body: bytes) -> bytes:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    except Exception as error:  # noqa: BLE001 - python-multipart raises several types on bad input
        raise Problem(400, f"the multipart body cannot be read: {error}", field="file") from None
    try:
        part = form.get("file")
        if part is None:
            raise Problem(422, "the multipart upload needs a part named 'file' (the results file)", field="file")
        if isinstance(part, UploadFile):
            return await part.read()
        return part.encode()
    finally:
        await form.close()


async def uploaded(request: Request, settings: AppSettings) -> Uploaded:
    """The results file of a raw body or of a multipart upload's `file` part, within the upload limit."""
    body = await read_limited_body(request, settings.max_upload_bytes)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return Uploaded(body, "body")
    return Uploaded(await _file_part(request, body), "file")


ResultsFile = Annotated[Uploaded, Depends(uploaded)]
