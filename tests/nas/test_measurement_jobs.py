"""The search worker's side of measurement jobs (SQLite and PostgreSQL): filing, waiting for the
device's answer, and cancelling when the search stops."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import pytest
from sqlalchemy.orm import Session, sessionmaker

from nas.calibration_set import sample_specs
from nas.latency import add_device
from nas.measurement_jobs import remote_measure, request_measurement, wait_for_measurement
from nas.search.runner import SearchCancelled
from nas.store import DeviceRepository, JobAnswer, MeasurementJobRepository, SearchRepository, session_scope
from search_spaces.space import tiny_space


@dataclass
class FakeRecorder:
    """The runner's recorder as far as remote_measure uses it."""

    stop: threading.Event = field(default_factory=threading.Event)
    events: list[tuple[str, str]] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)

    def event(self, kind: str, message: str, data: dict | None = None, level: str = "info") -> None:
        self.events.append((kind, message))

    def progress(self, phase: str, fraction: float, trials_done: int, trials_total: int, skipped: int) -> None:
        self.phases.append(phase)

    def should_stop(self) -> bool:
        return self.stop.is_set()


@pytest.fixture
def search(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    add_device(session_factory, "phone", threads=2, local=False)
    with session_scope(session_factory) as session:
        device_id = DeviceRepository(session).require("phone").id
        row = SearchRepository(session).create(
            device_id=device_id, space="tiny", dataset="digits", budget_ms=1.0, strategy="random", request={}
        )
        return device_id, row.id


SPECS = sample_specs(tiny_space(resolution=16, num_classes=3), 2, seed=1)


def _answer_soon(sessions: sessionmaker[Session], device_id: int, median_ms: float) -> threading.Thread:
    """Answer the first pending job once it appears, as a device's agent would."""

    def answer() -> None:
        for _ in range(200):
            with session_scope(sessions) as session:
                jobs = MeasurementJobRepository(session)
                pending = jobs.list(device_id, "pending")
                if pending:
                    jobs.answer(device_id, pending[0].public_id, JobAnswer(median_ms, 0.01, 20, "1.20.0"))
                    return
            threading.Event().wait(0.02)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_remote_measure_waits_for_the_device_and_reuses_the_answer(
    session_factory: sessionmaker[Session], search: tuple[int, int]
) -> None:
    device_id, search_id = search
    recorder = FakeRecorder()
    measure = remote_measure(session_factory, "phone", search_id, recorder, poll_s=0.02)
    answering = _answer_soon(session_factory, device_id, 0.123)
    assert measure(SPECS[0]) == 0.123
    answering.join()
    assert [kind for kind, _ in recorder.events] == ["waiting_device", "measured"]
    assert "waiting for device phone to measure" in recorder.events[0][1]
    assert recorder.phases and set(recorder.phases) == {"waiting_device"}
    # The same network in the same search is not measured twice.
    assert measure(SPECS[0]) == 0.123
    with session_scope(session_factory) as session:
        assert MeasurementJobRepository(session).count(device_id) == 1


def test_stopping_the_search_cancels_its_pending_jobs(
    session_factory: sessionmaker[Session], search: tuple[int, int]
) -> None:
    device_id, search_id = search
    recorder = FakeRecorder()
    measure = remote_measure(session_factory, "phone", search_id, recorder, poll_s=0.02)
    threading.Timer(0.2, recorder.stop.set).start()
    with pytest.raises(SearchCancelled):
        measure(SPECS[1])
    with session_scope(session_factory) as session:
        assert [job.status for job in MeasurementJobRepository(session).list(device_id)] == ["cancelled"]


def test_wait_for_a_cancelled_job_raises(session_factory: sessionmaker[Session], search: tuple[int, int]) -> None:
    device_id, search_id = search
    job_id = request_measurement(session_factory, "phone", search_id, SPECS[0], "winner")
    assert request_measurement(session_factory, "phone", search_id, SPECS[0], "winner") == job_id
    waited: list[float] = []
    threading.Timer(0.1, lambda: _cancel(session_factory, search_id)).start()
    with pytest.raises(SearchCancelled, match="cancelled"):
        wait_for_measurement(session_factory, job_id, should_stop=lambda: False, poll_s=0.02, on_wait=waited.append)
    assert waited and waited == sorted(waited)


def _cancel(sessions: sessionmaker[Session], search_id: int) -> None:
    with session_scope(sessions) as session:
        MeasurementJobRepository(session).cancel_pending_of_search(search_id)


def test_an_answered_job_is_also_an_end_to_end_measurement_of_the_device(
    session_factory: sessionmaker[Session], search: tuple[int, int]
) -> None:
    from nas.measurement_jobs import answer_job, job_onnx
    from nas.store import MeasurementRepository

    device_id, search_id = search
    job_id = request_measurement(session_factory, "phone", search_id, SPECS[0], "winner")
    sha256 = hashlib.sha256(job_onnx(SPECS[0])[0]).hexdigest()
    answer_job(session_factory, "phone", job_id, JobAnswer(0.25, 0.01, 30, "1.20.0", {"threads": "2"}), sha256)
    with session_scope(session_factory) as session:
        [stored] = MeasurementRepository(session).list(device_id)
    assert stored.arch_hash == SPECS[0].content_hash()
    assert (stored.median_ms, stored.runs, stored.environment) == (0.25, 30, {"threads": "2"})
