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
a job answered (or cancelled) already answers 409 (`nas.services.jobs`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse

from api.auth import Key
from api.deps import AppSettings, DeviceName, ResultsFile, Sessions, WritableDevice
from api.paging import Limit, Offset
from api.schemas.files import KIT_FILE, ONNX_FILE, kit_response, onnx_response
from api.service_errors import ServiceRoute
from nas.services import jobs
from nas.services.jobs import Job, JobPage, JobResult, JobsImport

router = APIRouter(tags=["measurement jobs"], route_class=ServiceRoute)

JobId = Annotated[str, Depends(jobs.check_job_id)]


@router.get("/v1/devices/{name}/jobs", summary="The device's measurement jobs, oldest first")
def list_jobs(
    name: DeviceName,
    sessions: Sessions,
    _: Key,
    status: Annotated[str | None, Query(pattern="^(pending|done|cancelled)$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> JobPage:
    return jobs.page(sessions, name, status, limit, offset)


@router.get(
    "/v1/devices/{name}/jobs/kit",
    summary="A verification kit (zip) of the device's pending jobs, for a device off the network",
    response_class=FileResponse,
    responses=KIT_FILE,
)
def jobs_kit(
    name: DeviceName,
    sessions: Sessions,
    settings: AppSettings,
    _: Key,
    quick: Annotated[bool, Query(description="fewer timed runs per model (smoke runs)")] = False,
) -> FileResponse:
    return kit_response(jobs.verification_kit(sessions, name, settings.artifact_dir, quick=quick))


@router.post("/v1/devices/{name}/jobs/results", summary="Upload a verification kit's results file")
def upload_jobs_results(name: WritableDevice, upload: ResultsFile, sessions: Sessions, _: Key) -> JobsImport:
    """Checked against the kit's manifest; one problem refuses the whole file (422) and answers nothing."""
    return jobs.import_results(sessions, name, upload.content, upload.part)


@router.get("/v1/devices/{name}/jobs/{job_id}", summary="One measurement job")
def get_job(name: DeviceName, job_id: JobId, sessions: Sessions, _: Key) -> Job:
    return jobs.get(sessions, name, job_id)


@router.get(
    "/v1/devices/{name}/jobs/{job_id}/onnx",
    summary="The job's network as ONNX (latency-neutral weights), to time on the device",
    response_class=Response,
    responses=ONNX_FILE,
)
def job_onnx(name: DeviceName, job_id: JobId, sessions: Sessions, _: Key) -> Response:
    return onnx_response(jobs.job_model(sessions, name, job_id))


@router.post("/v1/devices/{name}/jobs/{job_id}/result", summary="The device's measurement of a job's network")
def post_job_result(name: WritableDevice, job_id: JobId, body: JobResult, sessions: Sessions, _: Key) -> Job:
    return jobs.answer(sessions, name, job_id, body)
