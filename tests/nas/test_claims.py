"""Who may claim a search and who may write to it, on SQLite and PostgreSQL.

A device profiled on a machine is measured by that machine: only a worker with its machine id claims
searches on it (a phone's searches, measured through jobs, go to any worker). A worker that lost its
claim (another worker re-claimed the search after its heartbeat went stale) writes no candidate and no
architecture.
"""

import threading
from datetime import timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from nas.search.runner import CandidateRecord
from nas.store import CandidateRepository, DeviceRepository, SearchRepository, session_scope
from nas.worker import DatabaseRecorder
from search_spaces.space import tiny_space
from tests.nas.test_search_store import STALE_S, T0, new_search


def _device(sessions: sessionmaker[Session], name: str, machine_id: str | None) -> int:
    with session_scope(sessions) as session:
        return DeviceRepository(session).add(name, runtime_version="1.20.0", threads=1, machine_id=machine_id).id


def _claim(sessions: sessionmaker[Session], worker: str, machine: str | None, now=T0):
    with session_scope(sessions) as session:
        found = SearchRepository(session).claim_next(worker, STALE_S, now=now, machine_id=machine)
        return None if found is None else found.public_id


def test_a_worker_claims_only_searches_its_machine_can_serve(session_factory) -> None:
    here, there, phone = (_device(session_factory, n, m) for n, m in [("a", "m-a"), ("b", "m-b"), ("p", None)])
    with session_scope(session_factory) as session:
        on_b = new_search(session, there).public_id
        on_a = new_search(session, here).public_id
        on_phone = new_search(session, phone).public_id

    # machine a takes its own device's search and the phone's, never machine b's
    assert _claim(session_factory, "w-a1", "m-a") == on_a
    assert _claim(session_factory, "w-a2", "m-a") == on_phone
    assert _claim(session_factory, "w-a3", "m-a") is None
    assert _claim(session_factory, "w-b", "m-b") == on_b
    # and a re-claim of a stale search follows the same rule
    later = T0 + timedelta(seconds=STALE_S + 1)
    assert _claim(session_factory, "w-c", "m-c", now=later) == on_phone
    assert _claim(session_factory, "w-a4", "m-a", now=later) == on_a


def _recorder(sessions, public_id: str, search_id: int, worker: str) -> DatabaseRecorder:
    return DatabaseRecorder(sessions, public_id, search_id, worker, threading.Event())


def test_a_worker_that_lost_its_claim_writes_no_candidate(session_factory) -> None:
    device = _device(session_factory, "phone", None)
    with session_scope(session_factory) as session:
        search = new_search(session, device)
        public_id, search_id = search.public_id, search.id
    assert _claim(session_factory, "old", None) == public_id
    # the old worker's heartbeat went stale; a new worker re-claims the search
    assert _claim(session_factory, "new", None, now=T0 + timedelta(seconds=STALE_S + 1)) == public_id

    space = tiny_space("claims", resolution=32, num_classes=3)
    spec = space.decode(space.sample(np.random.default_rng(0)))
    record = CandidateRecord(arch_hash=spec.content_hash(), spec=spec, genome=None, phase="search",
                             status="completed", predicted_ms=0.1, accuracy=0.5, accuracies=[0.5],
                             train_seconds=1.0)  # fmt: skip
    old = _recorder(session_factory, public_id, search_id, "old")
    old.record_candidate(record)
    assert old.lost_claim.is_set() and old.should_stop()
    new = _recorder(session_factory, public_id, search_id, "new")
    new.record_candidate(record)
    assert not new.lost_claim.is_set()
    with session_scope(session_factory) as session:
        stored = CandidateRepository(session).list(search_id)
    assert [row.arch_hash for row in stored] == [spec.content_hash()]
