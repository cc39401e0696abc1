"""`/v1/devices/{name}/jobs`: networks a search asks a remote device to measure end to end.

| method and path | what |
|---|---|
| GET /v1/devices/{name}/jobs?status=pending | the device's jobs, oldest first (what the agent polls) |
| GET /v1/devices/{name}/jobs/kit | a verification kit (zip) of the pending jobs, for a device off the network |
| POST /v1/devices/{name}/jobs/results | that kit's results file (validated against its manifest, all or nothing) |
| GET /v1/devices/{name}/jobs/{job_id} | one job |
| GET /v1/devices/{name}/jobs/{job_id}/onnx | the job's network as ONNX (X-Hwnas-Sha256, X-Hwnas-Input-Shape) |
| POST /v1/devices/{name}/jobs/{job_id}/result | the device's measurement of it |

Another device's job answers 404 like an unknown one (a device learns nothing about others' jobs);
a job answered (or cancelled) already answers 409.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.background import BackgroundTask

from api.auth import Key
from api.paging import Limit, Offset
from api.problems import Problem
from api.routes.devices import (
    DeviceName,
    _uploaded,
    checked_environment,
    kit_problem_field,
    printable,
    read_limited_body,
)
from latency_lut.kit import KitImportError
from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
from nas import latency, measurement_jobs
from nas.store import JobAnswer, MeasurementJobNotFoundError, MeasurementJobRecord, MeasurementJobStateError
from search_spaces.arch_spec import ArchSpec

router = APIRouter(tags=["measurement jobs"])

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _job_id(job_id: str) -> str:
    """The `{job_id}` path segment; one no job can have is a 404 at once."""
    if not _JOB_ID.fullmatch(job_id):
        raise Problem(404, str(MeasurementJobNotFoundError(job_id)), field="job_id")
    return job_id


JobId = Annotated[str, Depends(_job_id)]


class Job(BaseModel):
    id: str
    device_id: int = Field(exclude=True)
    search_id: str | None
    role: str
    arch_hash: str
    spec: dict[str, Any]
    input_shape: list[int]
    status: str
    created_at: datetime
    answered_at: datetime | None
    median_ms: float | None
    iqr_ms: float | None
    runs: int | None
    runtime_version: str | None
    environment: dict[str, Any] | None


class JobPage(BaseModel):
    device: str
    items: list[Job]
    total: int
    limit: int
    offset: int


class JobResult(BaseModel):
    """POST .../jobs/{job_id}/result: the job's network timed with the kit runner's protocol."""

    model_config = ConfigDict(extra="forbid", strict=True)

    median_ms: float = Field(gt=0, allow_inf_nan=False)
    iqr_ms: float = Field(ge=0, allow_inf_nan=False)
    runs: int = Field(ge=1, le=1_000_000)
    runtime_version: str = Field(min_length=1, max_length=50)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="checksum of the ONNX file that was timed")
    environment: dict[str, str] | None = Field(default=None, description="what it was measured on")

    @field_validator("runtime_version")
    @classmethod
    def _printable(cls, value: str) -> str:
        return printable(value, "runtime_version")

    @field_validator("environment")
    @classmethod
    def _small_environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else checked_environment(value)


class JobsImport(BaseModel):
    device: str
    kit_id: str
    answered: list[str] = Field(description="jobs this file answered")
    skipped: list[str] = Field(description="jobs answered or cancelled since the kit was made")
    total: int


def _job(record: MeasurementJobRecord) -> Job:
    spec = ArchSpec.model_validate(record.spec)
    return Job(
        id=record.public_id,
        device_id=record.device_id,
        search_id=record.search_id,
        role=record.role,
        arch_hash=record.arch_hash,
        spec=record.spec,
        input_shape=[1, spec.in_channels, spec.resolution, spec.resolution],
        status=record.status,
        created_at=record.created_at,
        answered_at=record.answered_at,
        median_ms=record.median_ms,
        iqr_ms=record.iqr_ms,
        runs=record.runs,
        runtime_version=record.runtime_version,
        environment=record.environment,
    )


def _device_job(request: Request, name: str, job_id: str) -> MeasurementJobRecord:
    try:
        return measurement_jobs.device_job(request.app.state.sessions, name, job_id)
    except MeasurementJobNotFoundError as error:
        raise Problem(404, str(error), field="job_id") from None


@router.get("/v1/devices/{name}/jobs", summary="The device's measurement jobs, oldest first")
def list_jobs(
    name: DeviceName,
    request: Request,
    _: Key,
    status: Annotated[str | None, Query(pattern="^(pending|done|cancelled)$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> JobPage:
    records, total = measurement_jobs.list_jobs(request.app.state.sessions, name, status, limit, offset)  # type: ignore[arg-type]
    return JobPage(device=name, items=[_job(r) for r in records], total=total, limit=limit, offset=offset)


@router.get(
    "/v1/devices/{name}/jobs/kit",
    summary="A verification kit (zip) of the device's pending jobs, for a device off the network",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def jobs_kit(
    name: DeviceName,
    request: Request,
    _: Key,
    quick: Annotated[bool, Query(description="fewer timed runs per model (smoke runs)")] = False,
) -> FileResponse:
    sessions = request.app.state.sessions
    latency.get_device(sessions, name)
    kits = Path(request.app.state.settings.artifact_dir) / "kits"
    kits.mkdir(parents=True, exist_ok=True)
    path = kits / f"{name}-jobs-{uuid.uuid4().hex}.zip"
    try:
        manifest = measurement_jobs.build_jobs_kit(sessions, name, path, QUICK_POLICY if quick else TimingPolicy())
    except ValueError as error:
        raise Problem(409, str(error), field="device") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{name}-jobs-{manifest.kit_id[:8]}.zip",
        headers={"X-Hwnas-Kit-Id": manifest.kit_id, "X-Hwnas-Kit-Models": str(len(manifest.models))},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.post("/v1/devices/{name}/jobs/results", summary="Upload a verification kit's results file")
async def upload_jobs_results(name: DeviceName, request: Request, _: Key) -> JobsImport:
    """Checked against the kit's manifest; one problem refuses the whole file (422) and answers nothing."""
    sessions = request.app.state.sessions
    await run_in_threadpool(latency.get_device, sessions, name)
    body = await read_limited_body(request, request.app.state.settings.max_upload_bytes)
    content, field = await _uploaded(request, body)
    if not content.strip():
        raise Problem(422, "the upload is empty: send the verification kit's results.json", field=field)
    try:
        answer = await run_in_threadpool(measurement_jobs.import_jobs_results, sessions, name, content)
    except KitImportError as error:
        first = error.problems[0] if error.problems else ""
        raise Problem(422, str(error), field=kit_problem_field(first, field), problems=error.problems) from None
    return JobsImport(device=name, **answer)


@router.get("/v1/devices/{name}/jobs/{job_id}", summary="One measurement job")
def get_job(name: DeviceName, job_id: JobId, request: Request, _: Key) -> Job:
    return _job(_device_job(request, name, job_id))


@router.get(
    "/v1/devices/{name}/jobs/{job_id}/onnx",
    summary="The job's network as ONNX (latency-neutral weights), to time on the device",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def job_onnx(name: DeviceName, job_id: JobId, request: Request, _: Key) -> Response:
    import hashlib

    job = _device_job(request, name, job_id)
    onnx_bytes, shape = measurement_jobs.job_onnx(ArchSpec.model_validate(job.spec))
    return Response(
        onnx_bytes,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="job-{job_id}.onnx"',
            "X-Hwnas-Input-Shape": ",".join(str(n) for n in shape),
            "X-Hwnas-Sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        },
    )


@router.post("/v1/devices/{name}/jobs/{job_id}/result", summary="The device's measurement of a job's network")
def post_job_result(name: DeviceName, job_id: JobId, body: JobResult, request: Request, _: Key) -> Job:
    answer = JobAnswer(body.median_ms, body.iqr_ms, body.runs, body.runtime_version, body.environment)
    try:
        record = measurement_jobs.answer_job(request.app.state.sessions, name, job_id, answer, body.sha256)
    except MeasurementJobNotFoundError as error:
        raise Problem(404, str(error), field="job_id") from None
    except MeasurementJobStateError as error:
        raise Problem(409, str(error), field="job_id", status_now=error.status) from None
    except measurement_jobs.JobChecksumError as error:
        raise Problem(422, str(error), field="sha256") from None
    return _job(record)
