"""`/v1/devices/{name}/networks`: the calibration networks a remote device's agent measures.

| method and path | what |
|---|---|
| GET /v1/devices/{name}/networks/missing?space= | the scope's calibration networks the device lacks |
| GET /v1/devices/{name}/networks/{arch_hash}/onnx?space= | one of them as ONNX (latency-neutral weights) |
| POST /v1/devices/{name}/networks?space= | their end-to-end measurements; refits when the set is complete |

Only networks of the scope's calibration set are served or accepted: the server picks them, so it
knows which ones fit the calibration and which ones score it.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import Key
from api.problems import Problem
from api.routes.devices import (
    ClassesQuery,
    DeviceName,
    ResolutionQuery,
    SpaceQuery,
    WidthQuery,
    _exporting,
    _finite,
    checked_environment,
    chosen_space,
    printable,
)
from nas import latency, remote_measurements
from nas.calibration_set import calibration_set
from search_spaces.arch_spec import ArchSpec

router = APIRouter(tags=["devices"])

MAX_NETWORKS_PER_UPLOAD = 1000
ArchHash = Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}$", description="the network's content hash")]


class MissingNetwork(BaseModel):
    arch_hash: str
    input_shape: list[int]
    held_out: bool = Field(description="scores the calibration instead of fitting it")


class MissingNetworks(BaseModel):
    device: str
    space: str
    total: int = Field(description="networks in the scope's calibration set")
    missing: list[MissingNetwork]


class NetworkMeasurementIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    arch_hash: ArchHash
    median_ms: float = Field(gt=0, allow_inf_nan=False)
    iqr_ms: float = Field(ge=0, allow_inf_nan=False)
    runs: int = Field(ge=1, le=1_000_000)
    runtime_version: str = Field(min_length=1, max_length=50)

    @field_validator("runtime_version")
    @classmethod
    def _printable(cls, value: str) -> str:
        return printable(value, "runtime_version")


class NetworkUpload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    measurements: list[NetworkMeasurementIn] = Field(min_length=1, max_length=MAX_NETWORKS_PER_UPLOAD)
    environment: dict[str, str] | None = Field(default=None, description="what the networks were measured on")

    @field_validator("environment")
    @classmethod
    def _small_environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else checked_environment(value)

    @field_validator("measurements")
    @classmethod
    def _distinct(cls, value: list[NetworkMeasurementIn]) -> list[NetworkMeasurementIn]:
        hashes = [measurement.arch_hash for measurement in value]
        for index, arch_hash in enumerate(hashes):
            if arch_hash in hashes[:index]:
                raise ValueError(f"measurements[{index}]: network {arch_hash!r} is duplicated (one per network)")
        return value


class NetworkUploadAnswer(BaseModel):
    device: str
    space: str
    stored: int
    missing: int = Field(description="calibration networks still unmeasured")
    calibrated: bool = Field(description="the calibration was refitted on the complete set")
    within_10pct: float | None = Field(description="held-out share within ±10% after the refit")


def _input_shape(spec: ArchSpec) -> list[int]:
    return [1, spec.in_channels, spec.resolution, spec.resolution]


@router.get("/v1/devices/{name}/networks/missing", summary="The space's calibration networks the device lacks")
def networks_missing(
    name: DeviceName,
    request: Request,
    _: Key,
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> MissingNetworks:
    sessions = request.app.state.sessions
    chosen = chosen_space(space, resolution, width, num_classes)
    networks = calibration_set(chosen)
    missing = remote_measurements.missing_networks(sessions, name, chosen)
    return MissingNetworks(
        device=name,
        space=chosen.name,
        total=len(networks.all),
        missing=[
            MissingNetwork(
                arch_hash=spec.content_hash(),
                input_shape=_input_shape(spec),
                held_out=networks.is_held_out(spec.content_hash()),
            )
            for spec in missing
        ],
    )


@router.get(
    "/v1/devices/{name}/networks/{arch_hash}/onnx",
    summary="One calibration network as ONNX (latency-neutral weights), as a kit holds it",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def network_onnx(
    name: DeviceName,
    arch_hash: str,
    request: Request,
    _: Key,
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> Response:
    from latency_lut.profiler import network_onnx as export_network

    latency.get_device(request.app.state.sessions, name)  # 404 for an unknown device
    chosen = chosen_space(space, resolution, width, num_classes)
    spec = calibration_set(chosen).hashes.get(arch_hash)
    if spec is None:
        raise Problem(
            404, f"{arch_hash!r} is no calibration network of space {chosen.name!r} as narrowed", field="arch_hash"
        )
    onnx_bytes = _exporting(export_network, spec)
    return Response(
        onnx_bytes,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{arch_hash[:16]}.onnx"',
            "X-Hwnas-Input-Shape": ",".join(str(n) for n in _input_shape(spec)),
            "X-Hwnas-Sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        },
    )


@router.post("/v1/devices/{name}/networks", summary="End-to-end measurements of calibration networks")
async def upload_networks(
    name: DeviceName,
    body: NetworkUpload,
    request: Request,
    _: Key,
    space: SpaceQuery,
    resolution: ResolutionQuery = None,
    width: WidthQuery = None,
    num_classes: ClassesQuery = None,
) -> NetworkUploadAnswer:
    """All or nothing: a hash outside the scope's calibration set refuses the whole upload (422)."""
    sessions = request.app.state.sessions
    await run_in_threadpool(latency.get_device, sessions, name)  # 404 before any 422
    chosen = chosen_space(space, resolution, width, num_classes)
    measurements = [
        remote_measurements.NetworkMeasurement(m.arch_hash, m.median_ms, m.iqr_ms, m.runs, m.runtime_version)
        for m in body.measurements
    ]
    try:
        stored, report = await run_in_threadpool(
            remote_measurements.store_network_measurements, sessions, name, chosen, measurements, body.environment
        )
    except remote_measurements.UnknownNetworkError as error:
        raise Problem(422, str(error), field=f"measurements.{error.index}.arch_hash") from None
    missing = await run_in_threadpool(remote_measurements.missing_networks, sessions, name, chosen)
    within: Any = _finite(report.score("calibrated").within_10pct) if report is not None else None
    return NetworkUploadAnswer(
        device=name,
        space=chosen.name,
        stored=stored,
        missing=len(missing),
        calibrated=report is not None,
        within_10pct=within,
    )
