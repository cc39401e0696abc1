"""The search worker: claims queued searches from the database and runs them.

A worker claims a search atomically, heartbeats while it runs it, and records every candidate as
its trial finishes. If it dies, its heartbeat goes stale and another worker re-claims the search;
the runner rebuilds the strategy from the stored candidates, so no finished candidate is trained
twice. A worker that finds it has lost its claim (another worker took over) stops between trials.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from latency_lut.interpolation import interpolation_error_report
from latency_lut.kit_runner import TimingPolicy
from latency_lut.predictor import MissingKeysError
from latency_lut.table import LutEntry
from nas.latency import (
    adopt_legacy_devices,
    check_device,
    get_device,
    is_this_machine,
    load_predictor,
    local_pricing,
    profile_device,
)
from nas.measurement_jobs import cancel_search_jobs, remote_measure
from nas.netadapt.pricing import interpolate_from
from nas.remote_measurements import refit_calibration
from nas.search.request import SearchRequest
from nas.search.runner import (
    BudgetUnreachableError,
    CandidateRecord,
    SearchCancelled,
    run_search,
    search_space_for,
)
from nas.search.supernet_search import SupernetStore
from nas.settings import default_artifact_dir, machine_id
from nas.store import (
    ArchitectureRepository,
    CandidateData,
    CandidateRepository,
    EventRepository,
    SearchRepository,
    session_scope,
)
from search_spaces.arch_spec import ArchSpec
from search_spaces.counting import count_spec

log = logging.getLogger("hwnas.worker")
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def artifact_root() -> Path:
    return default_artifact_dir()


def new_worker_id() -> str:
    return f"{platform.node()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class DatabaseRecorder:
    """The runner's `SearchRecorder`, writing to the store as things happen."""

    sessions: sessionmaker[Session]
    public_id: str
    search_id: int
    worker_id: str
    lost_claim: threading.Event
    _last_cancel_check: float = 0.0
    _cancel: bool = False

    def stored_candidates(self, phase: str) -> list[CandidateRecord]:
        with session_scope(self.sessions) as session:
            rows = CandidateRepository(session).list(self.search_id, phase=phase)
        return [
            CandidateRecord(
                arch_hash=row.arch_hash,
                spec=ArchSpec.model_validate(row.spec),
                genome=list(row.genome) if row.genome is not None else None,
                phase=row.phase,
                status=row.status,
                predicted_ms=row.predicted_ms,
                accuracy=row.accuracy,
                accuracies=list(row.accuracies),
                train_seconds=row.train_seconds,
                trial_id=row.trial_id,
                error=row.error,
                evaluation=row.evaluation,
            )
            for row in rows
        ]

    def record_candidate(self, candidate: CandidateRecord) -> None:
        counts = count_spec(candidate.spec)
        data = CandidateData(
            arch_hash=candidate.arch_hash,
            spec=candidate.spec.model_dump(mode="json"),
            phase=candidate.phase,  # type: ignore[arg-type]
            status=candidate.status,  # type: ignore[arg-type]
            predicted_ms=candidate.predicted_ms,
            params=counts.params,
            madds=counts.madds,
            genome=tuple(candidate.genome) if candidate.genome is not None else None,
            accuracy=candidate.accuracy,
            accuracies=tuple(candidate.accuracies),
            trial_id=candidate.trial_id,
            train_seconds=candidate.train_seconds,
            error=candidate.error,
            evaluation=candidate.evaluation,  # type: ignore[arg-type]
        )
        with session_scope(self.sessions) as session:
            # Claim check and insert in one transaction: the UPDATE locks the search row (PostgreSQL) or
            # takes SQLite's write lock, so no other worker can claim the search in between. A worker
            # that lost its claim writes nothing; `should_stop` then ends its run.
            if not SearchRepository(session).heartbeat(self.public_id, self.worker_id):
                self.lost_claim.set()
                log.warning("search %s: claim lost; candidate %s not stored", self.public_id, data.arch_hash[:12])
                return
            CandidateRepository(session).add(self.search_id, data)

    def event(self, kind: str, message: str, data: dict | None = None, level: str = "info") -> None:
        log.info("search %s: %s", self.public_id, message)
        with session_scope(self.sessions) as session:
            EventRepository(session).add(self.search_id, kind[:32], message, level=level, data=_jsonable(data))

    def progress(self, phase: str, fraction: float, trials_done: int, trials_total: int, skipped: int) -> None:
        with session_scope(self.sessions) as session:
            owned = SearchRepository(session).update_progress(
                self.public_id,
                self.worker_id,
                phase=phase,
                progress=min(max(fraction, 0.0), 1.0),
                trials_done=trials_done,
                trials_total=trials_total,
                over_budget_skipped=skipped,
            )
        if not owned:
            self.lost_claim.set()

    def should_stop(self) -> bool:
        if self.lost_claim.is_set():
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= 0.5:
            self._last_cancel_check = now
            with session_scope(self.sessions) as session:
                self._cancel = SearchRepository(session).cancel_requested(self.public_id)
        return self._cancel


def _jsonable(data: dict | None) -> dict | None:
    if data is None:
        return None
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in data.items()}


def _heartbeat_loop(sessions: sessionmaker[Session], public_id: str, worker_id: str, stop: threading.Event,
                    lost: threading.Event, interval_s: float) -> None:  # fmt: skip
    while not stop.wait(interval_s):
        try:
            with session_scope(sessions) as session:
                alive = SearchRepository(session).heartbeat(public_id, worker_id)
        except Exception:  # noqa: BLE001 - a missed beat is retried; a lost claim is not
            log.warning("heartbeat for %s failed; retrying", public_id, exc_info=True)
            continue
        if not alive:
            lost.set()
            return


def execute_search(sessions: sessionmaker[Session], public_id: str, worker_id: str,
                   heartbeat_s: float = HEARTBEAT_S) -> str:  # fmt: skip
    """Run one claimed search to its end; returns the final status (or 'lost' if taken over)."""
    with session_scope(sessions) as session:
        row = SearchRepository(session).require(public_id)
        search_id, request = row.id, SearchRequest.model_validate(row.request)
        owner = row.owner
    lost = threading.Event()
    stop_beat = threading.Event()
    beat = threading.Thread(
        target=_heartbeat_loop, args=(sessions, public_id, worker_id, stop_beat, lost, heartbeat_s), daemon=True
    )
    beat.start()
    recorder = DatabaseRecorder(sessions, public_id, search_id, worker_id, lost)
    status, result, error = "failed", None, None
    try:
        if recorder.should_stop():
            raise SearchCancelled("cancel requested before the worker started")
        device = get_device(sessions, request.device)
        local = is_this_machine(device)
        predictor = _predictor_covering(sessions, request, local, recorder)

        interpolation_reported: list[bool] = []

        # Keys profiled together (one drift-reference timing per group of 16) and stored like any key.
        latency_for_missing, measure_here = local_pricing(sessions, request.device, request.resolution)

        def interpolated(keys: list[str]) -> dict[str, LutEntry]:
            if not interpolation_reported:
                interpolation_reported.append(True)
                report = interpolation_error_report(predictor.table)
                recorder.event(
                    "interpolate",
                    f"{request.device} is not this machine: keys NetAdapt needs are interpolated between measured "
                    f"channel counts; on this device's own table that lands {report['mean_abs_pct_error']:.1f}% "
                    f"(median {report['median_abs_pct_error']:.1f}%, max {report['max_abs_pct_error']:.1f}%) from "
                    f"the measurement ({report['n_interpolated']} keys, leave-one-out)",
                    {
                        k: (report[k] if math.isfinite(report[k]) else None)  # JSON (and JSONB) have no NaN
                        for k in ("n_interpolated", "mean_abs_pct_error", "median_abs_pct_error", "max_abs_pct_error")
                    },
                )
            interpolate = interpolate_from(predictor.table)
            return {key: interpolate(key) for key in keys}

        outcome = run_search(
            request,
            predictor,
            recorder,
            artifact_root() / public_id,
            measure_locally=local,
            threads=device.threads,
            # Keys NetAdapt or the baseline need beyond the table: measured here on this machine,
            # interpolated from the measured neighbours for a remote device.
            latency_for_missing=latency_for_missing if local else interpolated,
            # A remote device is asked to measure (a job its agent answers); the search waits for it.
            measure=measure_here if local else remote_measure(sessions, request.device, search_id, recorder),
            # trained supernets are shared by every search on the same data (one row + file each)
            supernets=SupernetStore(artifact_root() / "supernets", sessions),
        )
        with session_scope(sessions) as session:
            if not SearchRepository(session).heartbeat(public_id, worker_id):  # same transaction as the inserts
                lost.set()
                raise SearchCancelled("claim lost before the architectures were stored")
            architectures = ArchitectureRepository(session)
            ids = {}
            for record in (outcome.winner, outcome.baseline):
                if record is None:
                    continue
                counts = count_spec(record.spec)
                row = architectures.add(
                    arch_hash=record.spec.content_hash(),
                    role=record.role,
                    spec=record.spec.model_dump(mode="json"),
                    predicted_ms=record.predicted_ms,
                    params=counts.params,
                    madds=counts.madds,
                    artifact_dir=str(record.artifact_dir),
                    files=record.files,
                    search_id=search_id,
                    owner=owner,
                    measured_ms=record.measured_ms,
                    accuracy=record.accuracy,
                    test_accuracy=record.test_accuracy,
                    test_indices=record.test_indices,
                )
                ids[record.role] = row.public_id
        result = {**outcome.summary, "architectures": ids}
        status = "succeeded"
    except SearchCancelled:
        if lost.is_set():
            stop_beat.set()
            return "lost"
        status = "cancelled"
    except (BudgetUnreachableError, MissingKeysError, ValueError) as problem:
        error = str(problem)
    except Exception as problem:  # noqa: BLE001 - recorded on the search, never lost silently
        error = f"{type(problem).__name__}: {problem}"
        log.error("search %s failed:\n%s", public_id, traceback.format_exc())
    finally:
        stop_beat.set()
        if status != "succeeded" and not lost.is_set():
            cancel_search_jobs(sessions, search_id)  # no device should time a network nobody waits for
    if error:
        recorder.event("error", error, level="error")
    with session_scope(sessions) as session:
        SearchRepository(session).finish(public_id, worker_id, status, result=result, error=error)
    return status


def _predictor_covering(sessions: sessionmaker[Session], request: SearchRequest, local: bool,
                        recorder: DatabaseRecorder):  # noqa: ANN202 # fmt: skip
    """The device's predictor; on this machine, keys the space lacks are profiled first."""
    from nas.datasets import load_dataset

    num_classes = load_dataset(request.dataset).num_classes
    space = search_space_for(request, num_classes)
    predictor = load_predictor(sessions, request.device, space)
    missing = predictor.table.missing_keys(space.block_keys())
    if missing and local:
        recorder.event("profile", f"profiling {len(missing)} block keys the device's table lacks")
        profile_device(sessions, request.device, missing, TimingPolicy(), resolution=request.resolution)
        predictor = load_predictor(sessions, request.device, space)
    if not local and predictor.calibration.n_measurements == 0 and refit_calibration(sessions, request.device, space):
        recorder.event("calibrate", "calibrated the predictor on the device's measured calibration networks")
        predictor = load_predictor(sessions, request.device, space)
    if local and predictor.calibration.n_measurements == 0:
        # Never calibrated: measure a few networks of this space end to end first, so predictions
        # (and the budget check) include what isolated layer timings miss.
        recorder.event("calibrate", "calibrating the predictor on 16 networks measured end to end (+4 to score it)")
        report = check_device(sessions, request.device, space, n=4, n_calibration=16, seed=request.seed)
        calibrated = report.score("calibrated")
        recorder.event(
            "calibrate",
            f"calibrated: {calibrated.within_10pct:.0%} of 4 held-out networks within 10% "
            f"(raw LUT sum {report.score('lut_sum').within_10pct:.0%})",
        )
        predictor = load_predictor(sessions, request.device, space)
    return predictor


def run_worker(sessions: sessionmaker[Session], worker_id: str | None = None, *, once: bool = False,
               poll_s: float = 1.0, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S,
               stop: threading.Event | None = None) -> int:  # fmt: skip
    """Claim and run searches until `stop` is set (or, with `once`, until the queue is empty).

    Only searches this machine can serve are claimed: on a phone (measured through jobs) or on a device
    whose machine id is this machine's, so a device profiled by one worker is measured by that machine.
    """
    worker_id = worker_id or new_worker_id()
    machine = machine_id()
    adopt_legacy_devices(sessions)
    stop = stop or threading.Event()
    ran = 0
    while not stop.is_set():
        with session_scope(sessions) as session:
            claimed = SearchRepository(session).claim_next(worker_id, stale_after_s, machine_id=machine)
            public_id = claimed.public_id if claimed is not None else None
        if public_id is None:
            if once:
                break
            stop.wait(poll_s)
            continue
        log.info("worker %s claimed search %s", worker_id, public_id)
        execute_search(sessions, public_id, worker_id, heartbeat_s)
        ran += 1
    return ran
