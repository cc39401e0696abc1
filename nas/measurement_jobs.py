"""Measurement jobs: a search asks a remote device to time a network end to end, and waits.

On this machine a search measures its winner itself; a phone can only be asked. The search worker
files a job (`request_measurement`), the device's agent polls its pending jobs, downloads each
network's ONNX file, times it with the kit runner's protocol and posts the result; a device off the
network gets the same jobs as a verification kit. `wait_for_measurement` polls the store until the
answer is there, the search is cancelled (its pending jobs are then cancelled), or the worker lost
its claim.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from latency_lut.kit import JOB_KEY_PREFIX, KitImport, KitImportError, KitManifest, build_kit, validate_results
from latency_lut.kit_runner import TimingPolicy
from nas.latency import e2e_measurement_data, get_device
from nas.remote_measurements import kit_manifest_for_results
from nas.store import (
    DeviceRepository,
    JobAnswer,
    KitRepository,
    MeasurementJobRecord,
    MeasurementJobRepository,
    MeasurementJobRole,
    MeasurementJobStatus,
    MeasurementRepository,
    Search,
    session_scope,
)
from search_spaces.arch_spec import ArchSpec

__all__ = [
    "JobChecksumError",
    "JobAnswer",
    "answer_job",
    "build_jobs_kit",
    "cancel_search_jobs",
    "import_jobs_results",
    "job_onnx",
    "list_jobs",
    "remote_measure",
    "request_measurement",
    "wait_for_measurement",
]

# A search reports how long it has waited at most this often (events and progress rows are writes).
WAIT_REPORT_EVERY_S = 15.0


class JobChecksumError(ValueError):
    """The result names another ONNX file than the job's network: it measured something else."""

    def __init__(self, job_id: str, got: str, expected: str) -> None:
        super().__init__(
            f"job {job_id!r}: 'sha256' {got!r} is not the checksum of the job's network ({expected!r}); "
            "download it again from .../jobs/{job_id}/onnx"
        )


class JobRecorder(Protocol):
    """What `remote_measure` needs of the search's recorder (nas.search.runner.SearchRecorder)."""

    def event(self, kind: str, message: str, data: dict | None = None, level: str = "info") -> None: ...

    def progress(self, phase: str, fraction: float, trials_done: int, trials_total: int, skipped: int) -> None: ...

    def should_stop(self) -> bool: ...


# --- the network a job measures -----------------------------------------------------------------------

_ONNX_LOCK = threading.Lock()  # torch's ONNX export is not thread-safe
_SHA256_BY_HASH: dict[str, str] = {}


def job_onnx(spec: ArchSpec) -> tuple[bytes, tuple[int, int, int, int]]:
    """The ONNX file (latency-neutral weights, reproducible bytes) a job's network is timed as."""
    from latency_lut.profiler import network_onnx

    with _ONNX_LOCK:
        onnx_bytes = network_onnx(spec)
    _SHA256_BY_HASH[spec.content_hash()] = hashlib.sha256(onnx_bytes).hexdigest()
    return onnx_bytes, (1, spec.in_channels, spec.resolution, spec.resolution)


def _expected_sha256(spec: ArchSpec) -> str:
    known = _SHA256_BY_HASH.get(spec.content_hash())
    return known if known is not None else hashlib.sha256(job_onnx(spec)[0]).hexdigest()


# --- filing and waiting (the search worker) -----------------------------------------------------------


def request_measurement(
    sessions: sessionmaker[Session], device_name: str, search_id: int | None, spec: ArchSpec, role: MeasurementJobRole
) -> str:
    """File a job for `spec` on the device (or reuse the search's pending/answered job of the same
    network); returns the job's public id."""
    arch_hash = spec.content_hash()
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(device_name).id
        jobs = MeasurementJobRepository(session)
        existing = jobs.reusable(device_id, search_id, arch_hash)
        if existing is not None:
            return existing.public_id
        return jobs.add(device_id, arch_hash, spec.model_dump(mode="json"), role, search_id).public_id


def _cancelled(message: str) -> Exception:
    from nas.search.runner import SearchCancelled  # imported here: the runner pulls in torch and Ray

    return SearchCancelled(message)


def wait_for_measurement(
    sessions: sessionmaker[Session],
    job_id: str,
    *,
    should_stop: Callable[[], bool],
    poll_s: float = 1.0,
    on_wait: Callable[[float], None] | None = None,
) -> float:
    """Block until the job is answered; its median in ms.

    Raises `nas.search.runner.SearchCancelled` when `should_stop()` turns true (the search was
    cancelled or the worker lost its claim) or the job was cancelled. `on_wait(seconds waited)` is
    called after every poll without an answer.
    """
    started = time.monotonic()
    while True:
        with session_scope(sessions) as session:
            job = MeasurementJobRepository(session).get(job_id)
        if job is None:
            raise LookupError(f"measurement job {job_id!r} disappeared (its device or search was deleted)")
        if job.status == "done" and job.median_ms is not None:
            return job.median_ms
        if job.status == "cancelled":
            raise _cancelled(f"measurement job {job_id} was cancelled")
        if should_stop():
            raise _cancelled(f"stopped while waiting for measurement job {job_id}")
        if on_wait is not None:
            on_wait(time.monotonic() - started)
        time.sleep(poll_s)


def cancel_search_jobs(sessions: sessionmaker[Session], search_id: int) -> int:
    """Cancel the search's unanswered jobs, so no device spends time on them."""
    with session_scope(sessions) as session:
        return MeasurementJobRepository(session).cancel_pending_of_search(search_id)


def remote_measure(
    sessions: sessionmaker[Session],
    device_name: str,
    search_id: int | None,
    recorder: JobRecorder,
    *,
    role: MeasurementJobRole = "candidate",
    poll_s: float = 1.0,
) -> Callable[[ArchSpec], float]:
    """The runner's `measure`: each call files a job for the network and waits for the device's answer.

    While waiting the search's phase reads "waiting_device" (progress keeps its last fraction).
    Stopping the search cancels its pending jobs.
    """

    def measure(spec: ArchSpec) -> float:
        job_id = request_measurement(sessions, device_name, search_id, spec, role)
        recorder.event(
            "waiting_device",
            f"waiting for device {device_name} to measure {spec.to_string()[:80]} (job {job_id}); "
            f"run `hwnas agent --device {device_name} --serve-jobs` there, or GET .../jobs/kit",
            {"job_id": job_id, "arch_hash": spec.content_hash(), "device": device_name},
        )
        last_report = [-WAIT_REPORT_EVERY_S]

        def on_wait(waited_s: float) -> None:
            if waited_s - last_report[0] >= WAIT_REPORT_EVERY_S:
                last_report[0] = waited_s
                _mark_waiting(sessions, recorder, search_id)

        try:
            measured = wait_for_measurement(
                sessions, job_id, should_stop=recorder.should_stop, poll_s=poll_s, on_wait=on_wait
            )
        except Exception:
            if search_id is not None:
                cancel_search_jobs(sessions, search_id)
            raise
        recorder.event(
            "measured",
            f"device {device_name} measured {measured:.4f} ms (job {job_id})",
            {"job_id": job_id, "measured_ms": measured},
        )
        return measured

    return measure


def _mark_waiting(sessions: sessionmaker[Session], recorder: JobRecorder, search_id: int | None) -> None:
    """Set the phase to "waiting_device", keeping the search's fraction and counts as they are."""
    counts = (0.82, 0, 0, 0)
    if search_id is not None:
        with session_scope(sessions) as session:
            row = session.get(Search, search_id)
            if row is not None:
                counts = (row.progress, row.trials_done, row.trials_total, row.over_budget_skipped)
    recorder.progress("waiting_device", *counts)


# --- the device's side (HTTP routes) ------------------------------------------------------------------


def list_jobs(
    sessions: sessionmaker[Session], device_name: str, status: MeasurementJobStatus | None, limit: int, offset: int
) -> tuple[list[MeasurementJobRecord], int]:
    """A page of the device's jobs (oldest first) and how many match in all."""
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(device_name).id
        jobs = MeasurementJobRepository(session)
        return jobs.list(device_id, status, limit, offset), jobs.count(device_id, status)


def device_job(sessions: sessionmaker[Session], device_name: str, job_id: str) -> MeasurementJobRecord:
    """The device's job; `MeasurementJobNotFoundError` for an unknown job or another device's."""
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(device_name).id
        return MeasurementJobRepository(session).require_for_device(device_id, job_id)


def answer_job(
    sessions: sessionmaker[Session], device_name: str, job_id: str, answer: JobAnswer, sha256: str
) -> MeasurementJobRecord:
    """Record the device's measurement of a pending job, after checking it timed the job's ONNX file.

    Raises `MeasurementJobNotFoundError` (unknown or another device's job), `MeasurementJobStateError`
    (answered or cancelled already) or `JobChecksumError`; nothing is stored then.
    """
    job = device_job(sessions, device_name, job_id)
    expected = _expected_sha256(ArchSpec.model_validate(job.spec))
    if sha256 != expected:
        raise JobChecksumError(job_id, sha256, expected)
    with session_scope(sessions) as session:
        answered = MeasurementJobRepository(session).answer(job.device_id, job_id, answer)
        _store_as_end_to_end(session, job.device_id, job.spec, answer)
        return answered


def _store_as_end_to_end(session: Session, device_id: int, spec: dict[str, Any], answer: JobAnswer) -> None:
    """A job's answer is also an end-to-end measurement of the device (listed with its others), in the
    same transaction as the answer."""
    network = ArchSpec.model_validate(spec)
    MeasurementRepository(session).upsert(device_id, e2e_measurement_data(network, answer, answer.environment))


# --- verification kits (a device off the network) ------------------------------------------------------


def build_jobs_kit(
    sessions: sessionmaker[Session], device_name: str, out_path: Path, policy: TimingPolicy = TimingPolicy()
) -> KitManifest:
    """A kit holding the device's pending jobs, keyed `job:<job id>`; its manifest is kept like any kit's."""
    device = get_device(sessions, device_name)
    pending, _ = list_jobs(sessions, device_name, "pending", limit=10_000, offset=0)
    if not pending:
        raise ValueError(f"device {device_name!r} has no pending measurement jobs; nothing to put in a kit")
    networks = [(f"{JOB_KEY_PREFIX}{job.public_id}", ArchSpec.model_validate(job.spec)) for job in pending]
    with _ONNX_LOCK:
        manifest = build_kit(device, [], out_path, policy, networks=networks)
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(device_name).id
        KitRepository(session).add(device_id, manifest.kit_id, manifest.kit_version, json.loads(manifest.to_json()))
    return manifest


def import_jobs_results(sessions: sessionmaker[Session], device_name: str, results: bytes | str) -> dict[str, Any]:
    """Answer jobs from a verification kit's results file, all or nothing.

    The file is checked against its kit's manifest (unknown keys, checksums, times, thread count);
    a kit that is not a verification kit of this device is refused. Jobs answered or cancelled since
    the kit was made are skipped and counted. Raises `KitImportError` listing every problem.
    """
    manifest = kit_manifest_for_results(sessions, device_name, results)
    if not manifest.models or not all(model.key.startswith(JOB_KEY_PREFIX) for model in manifest.models):
        raise KitImportError(
            [f"'kit_id' {manifest.kit_id!r} is a profiling kit, not a verification kit: upload it to .../lut"]
        )
    outcome: KitImport = validate_results(manifest, results)
    if not outcome.ok:
        raise KitImportError(outcome.problems)
    answered: list[str] = []
    skipped: list[str] = []
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(device_name).id
        jobs = MeasurementJobRepository(session)
        for key, entry in outcome.networks.items():
            job_id = key.removeprefix(JOB_KEY_PREFIX)
            job = jobs.require_for_device(device_id, job_id)
            if job.status != "pending":
                skipped.append(job_id)
                continue
            answer = JobAnswer(entry.median_ms, entry.iqr_ms, entry.runs, entry.runtime_version, outcome.environment)
            jobs.answer(device_id, job_id, answer)
            _store_as_end_to_end(session, device_id, job.spec, answer)
            answered.append(job_id)
    return {"kit_id": manifest.kit_id, "answered": answered, "skipped": skipped, "total": outcome.total}
