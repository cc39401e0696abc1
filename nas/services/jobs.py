"""Measurement jobs as a device answers them: networks a search asks a remote device to time end to end,
one by one (the agent) or as a verification kit (a device off the network).

Another device's job is not found like an unknown one (a device learns nothing about others' jobs);
a job answered (or cancelled) already takes no answer (`WrongState`, with its status now).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session, sessionmaker

from latency_lut.kit import KitImportError
from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
from nas import latency, measurement_jobs
from nas.services import kits
from nas.services.errors import InvalidInput, NotFound, WrongState
from nas.services.fields import TimedMeasurement, checked_environment
from nas.services.kits import KitFile, OnnxModel
from nas.store import JobAnswer, MeasurementJobNotFoundError, MeasurementJobRecord, MeasurementJobStateError
from nas.store.models import MeasurementJobStatus
from search_spaces.arch_spec import ArchSpec

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class Job(BaseModel):
    id: str
    search_id: str | None
    role: str = Field(description="candidate, winner or baseline")
    arch_hash: str
    spec: dict[str, Any] = Field(description="the network (an ArchSpec)")
    input_shape: list[int]
    status: str = Field(description="pending, done or cancelled")
    created_at: datetime
    answered_at: datetime | None
    median_ms: float | None
    iqr_ms: float | None
    runs: int | None
    runtime_version: str | None
    environment: dict[str, Any] | None


class JobPage(BaseModel):
    device: str
    items: list[Job] = Field(description="oldest first")
    total: int
    limit: int
    offset: int


class JobResult(TimedMeasurement):
    """A job's network timed with the kit runner's protocol."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="checksum of the ONNX file that was timed")
    environment: dict[str, str] | None = Field(default=None, description="what it was measured on")

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


def check_job_id(job_id: str) -> str:
    """`job_id` if a job can have it; one no job can have is not found at once (it never reaches SQL)."""
    if not JOB_ID.fullmatch(job_id):
        raise NotFound(str(MeasurementJobNotFoundError(job_id)), field="job_id")
    return job_id


def _device_job(sessions: sessionmaker[Session], name: str, job_id: str) -> MeasurementJobRecord:
    try:
        return measurement_jobs.device_job(sessions, name, check_job_id(job_id))
    except MeasurementJobNotFoundError as error:
        raise NotFound(str(error), field="job_id") from None


def page(sessions: sessionmaker[Session], name: str, status: str | None, limit: int, offset: int) -> JobPage:
    """The device's jobs (`status`: pending, done or cancelled; None: all), oldest first."""
    records, total = measurement_jobs.list_jobs(
        sessions, name, cast(MeasurementJobStatus | None, status), limit, offset
    )
    return JobPage(device=name, items=[_job(r) for r in records], total=total, limit=limit, offset=offset)


def get(sessions: sessionmaker[Session], name: str, job_id: str) -> Job:
    return _job(_device_job(sessions, name, job_id))


def job_model(sessions: sessionmaker[Session], name: str, job_id: str) -> OnnxModel:
    """The job's network as ONNX (latency-neutral weights): the file its answer must name by checksum."""
    job = _device_job(sessions, name, job_id)
    content, shape = measurement_jobs.job_onnx(ArchSpec.model_validate(job.spec))
    return OnnxModel(content, tuple(shape), f"job-{job_id}.onnx")


def answer(sessions: sessionmaker[Session], name: str, job_id: str, result: JobResult) -> Job:
    """Record the device's measurement of a pending job (also stored as an end-to-end measurement)."""
    measured = JobAnswer(result.median_ms, result.iqr_ms, result.runs, result.runtime_version, result.environment)
    try:
        record = measurement_jobs.answer_job(sessions, name, check_job_id(job_id), measured, result.sha256)
    except MeasurementJobNotFoundError as error:
        raise NotFound(str(error), field="job_id") from None
    except MeasurementJobStateError as error:
        raise WrongState(str(error), field="job_id", status_now=error.status) from None
    except measurement_jobs.JobChecksumError as error:
        raise InvalidInput(str(error), field="sha256") from None
    return _job(record)


def verification_kit(sessions: sessionmaker[Session], name: str, artifact_dir: Path, *, quick: bool = False) -> KitFile:
    """A kit of the device's pending jobs; `WrongState` naming `device` when it has none."""
    latency.get_device(sessions, name)
    path = kits.kit_path(artifact_dir, f"{name}-jobs")
    try:
        manifest = measurement_jobs.build_jobs_kit(sessions, name, path, QUICK_POLICY if quick else TimingPolicy())
    except ValueError as error:
        path.unlink(missing_ok=True)
        raise WrongState(str(error), field="device") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return KitFile(path, f"{name}-jobs-{manifest.kit_id[:8]}.zip", manifest.kit_id, len(manifest.models))


def import_results(sessions: sessionmaker[Session], name: str, content: bytes, part: str = "body") -> JobsImport:
    """Answer jobs from a verification kit's results file, all or nothing: checked against the kit's
    manifest, one problem refuses the whole file (`InvalidInput` naming the field, with every problem)."""
    latency.get_device(sessions, name)
    if not content.strip():
        raise InvalidInput("the upload is empty: send the verification kit's results.json", field=part)
    try:
        answered = measurement_jobs.import_jobs_results(sessions, name, content)
    except KitImportError as error:
        raise kits.refusal(error, part) from None
    return JobsImport(device=name, **answered)
