"""`/v1/devices`: journey 1, "profile a new phone", over HTTP.

Devices and their lookup tables are shared by every key (a device is hardware, not a user's data).

| method and path | what |
|---|---|
| POST /v1/devices | register a device (`local`: this server's machine) -> 201 + Location |
| GET /v1/devices | every device with its LUT size |
| GET /v1/devices/{name} | one device; with `?space=` its coverage of that space |
| GET /v1/devices/{name}/lut | LUT entries, paginated |
| GET /v1/devices/{name}/lut/missing | keys of a space the LUT still lacks (what the agent pulls) |
| GET /v1/devices/{name}/keys/onnx?key= | the ONNX model of one block key, as a kit holds it |
| GET /v1/devices/{name}/kit | a profiling kit (zip) for the missing keys and calibration networks |
| POST /v1/devices/{name}/lut | upload a kit's results file or the agent's measurements (validated, all or nothing) |
| GET /v1/devices/{name}/accuracy | predictor accuracy from the stored end-to-end measurements |

Space-scoped endpoints take `space` plus optional repeatable `resolution`, `width` and `num_classes`,
exactly like the CLI's `--space/-r/-w/--num-classes`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session, sessionmaker
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from api.auth import Key
from api.paging import Offset
from api.problems import Problem
from latency_lut.device import DEVICE_NAME_RE, Device, check_device_name
from latency_lut.kit import KitImportError, environment_problems
from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
from latency_lut.table import LutEntry
from nas import latency, remote_measurements
from nas.store import DeviceRepository, LutRepository, MeasurementRepository, session_scope
from nas.store.errors import DeviceNotFoundError
from search_spaces.arch_spec import LayerKey
from search_spaces.counting import layer_counts
from search_spaces.space import SPACES, SearchSpace

router = APIRouter(tags=["devices"])

T = TypeVar("T")

# torch's ONNX exporter (and `warnings.catch_warnings` inside it) is not thread-safe; exports of
# block keys for kits and for the agent take turns, which also keeps a small server responsive.
_EXPORT_LOCK = threading.Lock()

# A key the server is asked to build must be a plausible layer of a mobile network: bounds on its input
# tensor and its size keep one request from costing minutes of CPU or gigabytes of memory.
MAX_KEY_SIDE = 1024
MAX_KEY_INPUT_ELEMENTS = 1 << 24
MAX_KEY_PARAMS = 10_000_000  # a 40 MB model; V3-Large's head at width 1.25 has about 3 million
MAX_KEY_MADDS = 5_000_000_000
MAX_MEASUREMENTS_PER_UPLOAD = 10_000


# --- request bodies ----------------------------------------------------------------------------------


def printable(value: str, what: str) -> str:
    """Refuse control characters (PostgreSQL cannot even store NUL in text or JSON)."""
    if not value.isprintable():
        raise ValueError(f"{what} must be printable text, got {value!r}")
    return value


class DeviceCreate(BaseModel):
    """POST /v1/devices."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="unique; letters, digits, '.', '_' or '-', at most 100 characters")
    threads: int = Field(default=1, ge=1, le=256, description="ONNX Runtime intra-op threads")
    local: bool = Field(default=False, description="this server's machine (the server can profile it)")
    facts: dict[str, str] = Field(default_factory=dict, max_length=64, description="e.g. soc, os, phone model")
    runtime_version: str | None = Field(
        default=None, min_length=1, max_length=50, description="a remote device's onnxruntime version"
    )
    execution_provider: str = Field(default="CPUExecutionProvider", min_length=1, max_length=100)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("facts")
    @classmethod
    def _valid_facts(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not key.strip() or len(key) > 64:
                raise ValueError(f"fact names must be 1-64 characters, got {key!r}")
            printable(key, "fact names")
            if len(text) > 500:
                raise ValueError(f"fact {key!r} is longer than 500 characters")
            printable(text, f"fact {key!r}")
            if key == latency.THIS_MACHINE_FACT:
                raise ValueError(f"fact {key!r} is set by the server for local devices; send local=true instead")
        return value

    @field_validator("runtime_version", "execution_provider")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else printable(value, "the value")


def checked_environment(value: dict[str, str]) -> dict[str, str]:
    """A measurement environment as stored: a small flat map of short printable strings."""
    problems = environment_problems(value, "environment")
    if problems:
        raise ValueError(problems[0])
    return value


class AgentMeasurement(BaseModel):
    """One block key timed by the agent with the kit runner's protocol."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(min_length=1, max_length=200)
    median_ms: float = Field(gt=0, allow_inf_nan=False)
    iqr_ms: float = Field(ge=0, allow_inf_nan=False)
    runs: int = Field(ge=1, le=1_000_000)
    runtime_version: str = Field(min_length=1, max_length=50)

    @field_validator("key")
    @classmethod
    def _well_formed(cls, value: str) -> str:
        LayerKey.parse(value)  # raises ValueError naming the key
        return value

    @field_validator("runtime_version")
    @classmethod
    def _printable(cls, value: str) -> str:
        return printable(value, "runtime_version")


class AgentUpload(BaseModel):
    """The agent's form of POST /v1/devices/{name}/lut."""

    model_config = ConfigDict(extra="forbid", strict=True)

    measurements: list[AgentMeasurement] = Field(min_length=1, max_length=MAX_MEASUREMENTS_PER_UPLOAD)
    threads: int | None = Field(default=None, ge=1, le=256, description="threads the agent timed with")
    environment: dict[str, str] | None = Field(
        default=None, description="what the batch was measured on (latency_lut.kit_runner.machine_environment)"
    )

    @field_validator("environment")
    @classmethod
    def _small_environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else checked_environment(value)

    @field_validator("measurements")
    @classmethod
    def _distinct(cls, value: list[AgentMeasurement]) -> list[AgentMeasurement]:
        seen: set[str] = set()
        for index, measurement in enumerate(value):
            if measurement.key in seen:
                raise ValueError(f"measurements[{index}]: key {measurement.key!r} is duplicated (one per key)")
            seen.add(measurement.key)
        return value


# --- helpers -----------------------------------------------------------------------------------------


def _device_name(name: str) -> str:
    """The `{name}` path segment; a name no device can have is a 404 at once (and never reaches SQL)."""
    if not DEVICE_NAME_RE.fullmatch(name):
        raise Problem(404, str(DeviceNotFoundError(name)), field="device")
    return name


DeviceName = Annotated[str, Depends(_device_name)]


def _sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


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


def _optional_space(
    name: str | None, resolution: list[int] | None, width: list[float] | None, num_classes: int | None
) -> SearchSpace | None:
    if name is None:
        for field, value in (("resolution", resolution), ("width", width), ("num_classes", num_classes)):
            if value is not None and value != []:
                raise Problem(422, f"{field} narrows a space: give space as well", field="space")
        return None
    return chosen_space(name, resolution, width, num_classes)


def space_coverage(sessions: sessionmaker[Session], device: str, space: SearchSpace) -> dict[str, Any]:
    keys = space.block_keys()
    missing = latency.missing_keys(sessions, device, keys)
    return {
        "space": space.name,
        "resolutions": list(space.resolutions),
        "widths": list(space.widths),
        "num_classes": space.num_classes,
        "keys": len(keys),
        "missing": len(missing),
        "coverage": (len(keys) - len(missing)) / len(keys) if keys else 1.0,
    }


def _device_json(device: Device, lut_entries: int, e2e_measurements: int) -> dict[str, Any]:
    return {
        **device.model_dump(mode="json"),
        "local": latency.is_this_machine(device),
        "lut_entries": lut_entries,
        "e2e_measurements": e2e_measurements,
    }


def _read_device(sessions: sessionmaker[Session], name: str) -> dict[str, Any]:
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        return _device_json(
            latency.device_from_row(row),
            LutRepository(session).count(row.id),
            MeasurementRepository(session).count(row.id),
        )


def _environments(sessions: sessionmaker[Session], name: str) -> list[dict[str, Any]]:
    """What the device's measurements ran on: each distinct environment with its counts, most used first
    (None: measured before environments were recorded)."""
    seen: dict[str, dict[str, Any]] = {}
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        for what, found in (
            ("lut_entries", LutRepository(session).environments(row.id)),
            ("e2e_measurements", MeasurementRepository(session).environments(row.id)),
        ):
            for environment, count in found:
                token = json.dumps(environment, sort_keys=True)
                item = seen.setdefault(token, {"environment": environment, "lut_entries": 0, "e2e_measurements": 0})
                item[what] += count
    return sorted(seen.values(), key=lambda item: -(item["lut_entries"] + item["e2e_measurements"]))


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers (e.g. an undefined Spearman rho) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _exporting(function: Callable[..., T], *args: Any) -> T:
    with _EXPORT_LOCK:
        return function(*args)


# --- devices -----------------------------------------------------------------------------------------


@router.post("/v1/devices", status_code=201, summary="Register a device")
def create_device(body: DeviceCreate, request: Request, response: Response, _: Key) -> dict[str, Any]:
    sessions = _sessions(request)
    latency.add_device(
        sessions,
        body.name,
        threads=body.threads,
        local=body.local,
        facts=dict(body.facts),
        runtime_version=body.runtime_version,
        execution_provider=body.execution_provider,
    )
    response.headers["Location"] = f"/v1/devices/{body.name}"
    return _read_device(sessions, body.name)


@router.get("/v1/devices", summary="List devices with the size of their lookup tables")
def list_devices(request: Request, _: Key) -> list[dict[str, Any]]:
    with session_scope(_sessions(request)) as session:
        lut, measurements = LutRepository(session), MeasurementRepository(session)
        return [
            _device_json(latency.device_from_row(row), lut.count(row.id), measurements.count(row.id))
            for row in DeviceRepository(session).list()
        ]


@router.get("/v1/devices/{name}", summary="One device; with ?space= its LUT coverage of that space")
def get_device(
    name: DeviceName,
    request: Request,
    _: Key,
    space: OptionalSpaceQuery = None,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> dict[str, Any]:
    sessions = _sessions(request)
    body = _read_device(sessions, name)
    body["environments"] = _environments(sessions, name)
    chosen = _optional_space(space, resolution, width, num_classes)
    body["coverage"] = space_coverage(sessions, name, chosen) if chosen is not None else None
    return body


# --- the lookup table --------------------------------------------------------------------------------


@router.get("/v1/devices/{name}/lut", summary="The device's lookup-table entries (paginated, by key)")
def lut_entries(
    name: DeviceName,
    request: Request,
    _: Key,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Offset = 0,
) -> dict[str, Any]:
    with session_scope(_sessions(request)) as session:
        row = DeviceRepository(session).require(name)
        entries = LutRepository(session).entries(row.id)
    page = list(entries.values())[offset : offset + limit]
    return {
        "device": name,
        "total": len(entries),
        "limit": limit,
        "offset": offset,
        "entries": [
            {
                "key": entry.key,
                "median_ms": entry.median_ms,
                "iqr_ms": entry.iqr_ms,
                "runs": entry.runs,
                "runtime_version": entry.runtime_version,
                "source": entry.source,
                "measured_at": entry.measured_at.isoformat() if entry.measured_at else None,
            }
            for entry in page
        ],
    }


@router.get("/v1/devices/{name}/lut/missing", summary="Keys of a space the device's lookup table lacks")
def lut_missing(
    name: DeviceName,
    request: Request,
    _: Key,
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    chosen = chosen_space(space, resolution, width, num_classes)
    keys = chosen.block_keys()
    missing = latency.missing_keys(_sessions(request), name, keys)
    return {
        "device": name,
        "space": chosen.name,
        "total_keys": len(keys),
        "total_missing": len(missing),
        "limit": limit,
        "offset": offset,
        "keys": missing[offset : offset + limit],
    }


def parse_key(key: str) -> LayerKey:
    """A key the server will build, or a 422 naming `key`: malformed, or larger than any mobile layer."""
    try:
        parsed = LayerKey.parse(key)
    except ValueError as error:
        raise Problem(422, str(error), field="key") from None
    batch, channels, height, width = parsed.input_shape
    if min(channels, height, width) < 1:
        raise Problem(422, f"key {key!r} has an empty input ({height}x{width}x{channels})", field="key")
    counts = layer_counts(parsed)
    if (
        max(height, width) > MAX_KEY_SIDE
        or batch * channels * height * width > MAX_KEY_INPUT_ELEMENTS
        or counts.params > MAX_KEY_PARAMS
        or counts.madds > MAX_KEY_MADDS
    ):
        raise Problem(
            422,
            f"key {key!r} is no layer of a mobile network (input {height}x{width}x{channels}, "
            f"{counts.params:,} parameters, {counts.madds:,} multiply-adds); the server does not build it",
            field="key",
        )
    return parsed


@router.get(
    "/v1/devices/{name}/keys/onnx",
    summary="The ONNX model of one block key (latency-neutral weights), as a profiling kit holds it",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def key_onnx(
    name: DeviceName,
    request: Request,
    _: Key,
    key: Annotated[str, Query(max_length=200, description="a block key, e.g. ir_k5_s2_e72_c40_se_hs@56x56x24")],
    space: OptionalSpaceQuery = None,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> Response:
    from latency_lut.profiler import layer_onnx

    latency.get_device(_sessions(request), name)  # 404 for an unknown device
    parsed = parse_key(key)
    chosen = _optional_space(space, resolution, width, num_classes)
    if chosen is not None and key not in set(chosen.block_keys()):
        raise Problem(422, f"key {key!r} is not a block key of space {chosen.name!r} as narrowed", field="key")
    onnx_bytes, shape = _exporting(layer_onnx, parsed)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    return Response(
        onnx_bytes,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{safe}.onnx"',
            "X-Hwnas-Key": key,
            "X-Hwnas-Input-Shape": ",".join(str(n) for n in shape),
            "X-Hwnas-Sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        },
    )


@router.get(
    "/v1/devices/{name}/kit",
    summary="A profiling kit (zip: ONNX per missing key, manifest, stand-alone runner) for a device off the network",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def kit(
    name: DeviceName,
    request: Request,
    _: Key,
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
    quick: Annotated[bool, Query(description="fewer timed runs per model (smoke runs)")] = False,
    networks: Annotated[
        bool, Query(description="also the space's calibration networks the device has not measured end to end")
    ] = True,
) -> FileResponse:
    sessions = _sessions(request)
    latency.get_device(sessions, name)
    chosen = chosen_space(space, resolution, width, num_classes)
    keys = chosen.block_keys()
    missing_networks = remote_measurements.missing_networks(sessions, name, chosen) if networks else []
    if not latency.missing_keys(sessions, name, keys) and not missing_networks:
        raise Problem(
            409,
            f"device {name!r} already has all {len(keys)} keys of space {chosen.name!r} "
            f"(resolutions {list(chosen.resolutions)}, widths {list(chosen.widths)})"
            + (" and all its calibration networks" if networks else "")
            + "; nothing to put in a kit",
            field="space",
        )
    kits = Path(request.app.state.settings.artifact_dir) / "kits"
    kits.mkdir(parents=True, exist_ok=True)
    path = kits / f"{name}-{uuid.uuid4().hex}.zip"
    policy = QUICK_POLICY if quick else TimingPolicy()
    try:
        manifest = _exporting(
            remote_measurements.create_kit, sessions, name, keys, path, True, None, policy, chosen if networks else None
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{name}-kit-{manifest.kit_id[:8]}.zip",
        headers={"X-Hwnas-Kit-Id": manifest.kit_id, "X-Hwnas-Kit-Models": str(len(manifest.models))},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


# --- uploads -----------------------------------------------------------------------------------------


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


async def _uploaded(request: Request, body: bytes) -> tuple[bytes, str]:
    """(file content, field name) of a raw body or of a multipart upload's `file` part."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return body, "body"

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
            return await part.read(), "file"
        return part.encode(), "file"
    finally:
        await form.close()


# A result names "results[i] KEY: ..."; keys hold no spaces but may hold colons (net:..., job:...).
_RESULT_PROBLEM = re.compile(r"results\[(?P<index>\d+)\](?: \S+)?: (?:missing )?'(?P<field>\w+)'")
_RESULT_ENTRY = re.compile(r"results\[(?P<index>\d+)\]")
_HEADER_PROBLEM = re.compile(r"(?:missing )?'(?P<field>\w+)'")


def kit_problem_field(problem: str, default: str) -> str:
    """The results-file field a kit import problem names, as a dotted path (`results.0.sha256`)."""
    if match := _RESULT_PROBLEM.match(problem):
        return f"results.{match['index']}.{match['field']}"
    if match := _RESULT_ENTRY.match(problem):
        return f"results.{match['index']}"
    if match := _HEADER_PROBLEM.match(problem):
        return match["field"]
    return default


def _store_agent_measurements(sessions: sessionmaker[Session], name: str, upload: AgentUpload) -> tuple[int, int]:
    device = latency.get_device(sessions, name)
    if upload.threads is not None and upload.threads != device.threads:
        raise Problem(
            422,
            f"measured with {upload.threads} thread(s), but device {name!r} uses {device.threads}: "
            "another thread count is another device",
            field="threads",
        )
    entries = {m.key: LutEntry(m.median_ms, m.iqr_ms, m.runs, m.runtime_version, "agent") for m in upload.measurements}
    present = set(entries) - set(latency.missing_keys(sessions, name, list(entries)))
    stored = latency.store_lut_entries(sessions, name, entries, upload.environment)
    return stored, len(present)


def _import_kit(sessions: sessionmaker[Session], name: str, content: bytes, field: str) -> dict[str, Any]:
    latency.get_device(sessions, name)
    payload = json.loads(content)  # the caller checked it is a JSON object
    results = payload.get("results")
    keys = (
        [r["key"] for r in results if isinstance(r, dict) and isinstance(r.get("key"), str)]
        if isinstance(results, list)
        else []
    )
    present = set(keys) - set(latency.missing_keys(sessions, name, keys))
    try:
        outcome = remote_measurements.import_kit_results(sessions, name, content)
    except KitImportError as error:
        raise Problem(
            422,
            str(error),
            field=kit_problem_field(error.problems[0], field) if error.problems else field,
            problems=error.problems,
        ) from None
    return {
        "imported": len(outcome.entries),
        "networks_imported": len(outcome.networks),
        "already_present": len(present & set(outcome.entries)),
        "kit": {
            "kit_id": payload.get("kit_id"),
            "covered": outcome.covered,
            "total": outcome.total,
            "coverage": outcome.coverage,
        },
    }


@router.post(
    "/v1/devices/{name}/lut",
    summary="Upload measurements: a kit's results file (multipart `file` or raw JSON) or the agent's JSON",
)
async def upload_lut(
    name: DeviceName,
    request: Request,
    _: Key,
    space: OptionalSpaceQuery = None,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> dict[str, Any]:
    """Everything is validated before anything is stored: one problem refuses the whole upload.

    - a kit's results file (from the kit's runner.py): checked against the kit's manifest (unknown or
      duplicated keys, non-finite or non-positive times, checksums, kit id, thread count);
    - the agent's `{"measurements": [{key, median_ms, iqr_ms, runs, runtime_version}], "threads": T}`.

    `imported` counts the entries written, `already_present` those of them that replaced an entry
    already in the table. With `?space=` the answer includes the device's new coverage of that space.
    """
    sessions = _sessions(request)
    chosen = _optional_space(space, resolution, width, num_classes)
    body = await read_limited_body(request, request.app.state.settings.max_upload_bytes)
    content, field = await _uploaded(request, body)
    if not content.strip():
        raise Problem(422, "the upload is empty: send a kit's results file or the agent's measurements", field=field)
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError) as error:
        raise Problem(400, f"the upload is not valid JSON: {error}", field=field) from None
    if not isinstance(payload, dict):
        raise Problem(422, f"the upload must be a JSON object, got {type(payload).__name__}", field=field)

    if "measurements" in payload:
        upload = AgentUpload.model_validate(payload)  # a ValidationError is a 422 naming the field
        imported, already_present = await run_in_threadpool(_store_agent_measurements, sessions, name, upload)
        answer: dict[str, Any] = {"source": "agent", "imported": imported, "already_present": already_present}
    elif "kit_id" in payload or "results" in payload:
        answer = {"source": "kit", **await run_in_threadpool(_import_kit, sessions, name, content, field)}
    else:
        raise Problem(
            422,
            "the upload is neither a kit's results file (with 'kit_id' and 'results') nor the agent's "
            "measurements (with 'measurements')",
            field=field,
        )
    answer["device"] = name
    answer["lut_entries"] = (await run_in_threadpool(_read_device, sessions, name))["lut_entries"]
    answer["coverage"] = await run_in_threadpool(space_coverage, sessions, name, chosen) if chosen is not None else None
    return answer


# --- accuracy ----------------------------------------------------------------------------------------


@router.get("/v1/devices/{name}/accuracy", summary="How well the LUT predicts the stored end-to-end measurements")
def accuracy(
    name: DeviceName,
    request: Request,
    _: Key,
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
    n_calibration: Annotated[
        int | None, Query(ge=0, le=10_000, description="networks to fit on (default: as the stored calibration)")
    ] = None,
) -> dict[str, Any]:
    sessions = _sessions(request)
    latency.get_device(sessions, name)
    chosen = chosen_space(space, resolution, width, num_classes)
    stored = remote_measurements.stored_accuracy_report(sessions, name, chosen, n_calibration)
    if stored is None:
        flags = " ".join(f"-r {r}" for r in chosen.resolutions) + " " + " ".join(f"-w {w:g}" for w in chosen.widths)
        raise Problem(
            409,
            f"no end-to-end measurements of {chosen.name!r} networks are stored for device {name!r}; measure "
            f"some on the device itself: `hwnas lut check {name} --space {chosen.name} {flags}` "
            "(a local device: run it on the machine it describes)",
            field="device",
        )
    report, n_measurements = stored
    return _finite(
        {
            **report.to_dict(),
            "space": chosen.name,
            "resolutions": list(chosen.resolutions),
            "widths": list(chosen.widths),
            "n_measurements": n_measurements,
        }
    )
