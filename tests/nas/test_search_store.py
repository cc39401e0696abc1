"""Search persistence on SQLite and PostgreSQL: searches and their claims, candidates, architectures, events."""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nas.store import (
    Architecture,
    ArchitectureNotFoundError,
    ArchitectureRepository,
    Candidate,
    CandidateData,
    CandidateRepository,
    DeviceRepository,
    EventRepository,
    Search,
    SearchEvent,
    SearchNotFoundError,
    SearchRepository,
    SearchStateError,
    make_engine,
    session_scope,
)
from nas.store import db as store_db

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
STALE_S = 30.0


@pytest.fixture
def device_id(session_factory: sessionmaker[Session]) -> int:
    with session_scope(session_factory) as session:
        return DeviceRepository(session).add("pixel-7", runtime_version="1.18.0", threads=4).id


def new_search(session: Session, device_id: int, **changes: object) -> Search:
    arguments: dict[str, object] = {
        "device_id": device_id,
        "space": "mobilenet_v2",
        "dataset": "cifar10",
        "budget_ms": 12.5,
        "strategy": "evolution",
        "request": {"budget_ms": 12.5, "trials": 40, "space": "mobilenet_v2"},
        "trials_total": 40,
    }
    arguments.update(changes)
    return SearchRepository(session).create(**arguments)  # type: ignore[arg-type]


def candidate(arch_hash: str, accuracy: float | None = 0.5, predicted_ms: float = 10.0, **changes: object):
    data = CandidateData(
        arch_hash=arch_hash,
        spec={"resolution": 32, "blocks": [{"kind": "ir", "kernel": 3}]},
        phase="search",
        status="completed",
        predicted_ms=predicted_ms,
        params=2_000_000,
        madds=12_000_000_000,
        genome=(1, 0, 2),
        accuracy=accuracy,
        accuracies=(0.3, accuracy or 0.0),
        trial_id=f"trial-{arch_hash}",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=30),
        train_seconds=30.0,
    )
    return replace(data, **changes)


def add_architecture(session: Session, search_id: int | None, **changes: object) -> Architecture:
    arguments: dict[str, object] = {
        "arch_hash": "h1",
        "role": "winner",
        "spec": {"resolution": 32},
        "predicted_ms": 9.5,
        "params": 2_000_000,
        "madds": 12_000_000_000,
        "artifact_dir": "artifacts/abc",
        "files": {"spec": "spec.json", "onnx": "model.onnx", "weights": "weights.pt"},
        "search_id": search_id,
        "owner": "key-1",
    }
    arguments.update(changes)
    return ArchitectureRepository(session).add(**arguments)  # type: ignore[arg-type]


def claim(sessions: sessionmaker[Session], worker: str, now: datetime | None = None) -> Search | None:
    with session_scope(sessions) as session:
        return SearchRepository(session).claim_next(worker, STALE_S, now=now)


# --- searches ----------------------------------------------------------------------------------------


def test_create_search_fills_defaults(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        search = new_search(session, device_id, owner="key-1")
    assert len(search.public_id) == 32 and int(search.public_id, 16) >= 0
    assert (search.status, search.phase, search.progress, search.attempts) == ("queued", "queued", 0.0, 0)
    assert (search.trials_done, search.trials_total, search.over_budget_skipped) == (0, 40, 0)
    assert search.cancel_requested is False and search.worker_id is None and search.heartbeat_at is None
    assert search.created_at.tzinfo is not None and abs(search.created_at - datetime.now(UTC)) < timedelta(minutes=5)
    with session_scope(session_factory) as session:
        stored = SearchRepository(session).require(search.public_id)
        assert stored.request == {"budget_ms": 12.5, "trials": 40, "space": "mobilenet_v2"}
        assert stored.owner == "key-1" and stored.device.name == "pixel-7"
        # No result yet is SQL NULL, not the JSON value null.
        assert session.execute(text("SELECT count(*) FROM searches WHERE result IS NULL")).scalar_one() == 1


def test_search_budget_must_be_positive(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session, pytest.raises(ValueError, match="budget_ms"):
        new_search(session, device_id, budget_ms=0)
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(Search(device_id=device_id, space="s", dataset="d", budget_ms=-1.0, strategy="random", request={}))
        session.flush()


def test_searches_listed_filtered_and_counted(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        ids = [new_search(session, device_id, owner="alice" if i % 2 else "bob").public_id for i in range(5)]
    claim(session_factory, "w1")  # the oldest, ids[0] (bob), is now running
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        assert [s.public_id for s in searches.list()] == ids[::-1]
        assert [s.public_id for s in searches.list(order="oldest", limit=2, offset=1)] == ids[1:3]
        assert [s.public_id for s in searches.list(owner="alice")] == [ids[3], ids[1]]
        assert [s.public_id for s in searches.list(status="running")] == [ids[0]]
        assert [s.public_id for s in searches.list(owner="bob", status=["queued", "running"], order="oldest")] == [
            ids[0],
            ids[2],
            ids[4],
        ]
        assert searches.list(device_id=device_id + 1) == []
        assert (searches.count(), searches.count(owner="alice"), searches.count(status="queued")) == (5, 2, 4)
        assert searches.queue_length() == 4
        assert searches.counts_by_status() == {
            "queued": 4,
            "running": 1,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
        }
        assert searches.get("0" * 32) is None
        with pytest.raises(SearchNotFoundError, match="'nope'"):
            searches.require("nope")
        with pytest.raises(ValueError, match="order"):
            searches.list(order="sideways")  # type: ignore[arg-type]


# --- claims, heartbeats, progress and finishing ------------------------------------------------------


def test_claim_takes_the_oldest_queued_search_once(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        first = new_search(session, device_id).public_id
        second = new_search(session, device_id).public_id

    claimed = claim(session_factory, "w1", now=T0)
    assert claimed is not None and claimed.public_id == first
    assert (claimed.status, claimed.worker_id, claimed.attempts) == ("running", "w1", 1)
    assert claimed.claimed_at == claimed.heartbeat_at == claimed.started_at == T0

    again = claim(session_factory, "w2", now=T0)
    assert again is not None and again.public_id == second
    assert claim(session_factory, "w3", now=T0) is None
    with session_scope(session_factory) as session:
        assert SearchRepository(session).require(first).worker_id == "w1"


def test_stale_search_is_reclaimed_and_the_old_worker_locked_out(
    session_factory: sessionmaker[Session], device_id: int
) -> None:
    with session_scope(session_factory) as session:
        public_id = new_search(session, device_id).public_id
    assert claim(session_factory, "w1", now=T0) is not None

    # Fresh heartbeat: not claimable, not even just below the limit.
    assert claim(session_factory, "w2", now=T0 + timedelta(seconds=STALE_S - 1)) is None
    with session_scope(session_factory) as session:
        assert SearchRepository(session).heartbeat(public_id, "w1", now=T0 + timedelta(seconds=20))
    assert claim(session_factory, "w2", now=T0 + timedelta(seconds=45)) is None

    later = T0 + timedelta(seconds=20 + STALE_S + 1)
    taken = claim(session_factory, "w2", now=later)
    assert taken is not None and taken.public_id == public_id
    assert (taken.worker_id, taken.attempts, taken.claimed_at, taken.started_at) == ("w2", 2, later, T0)

    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        assert searches.heartbeat(public_id, "w1") is False
        assert searches.update_progress(public_id, "w1", trials_done=5) is False
        assert searches.finish(public_id, "w1", "succeeded") is False
        assert searches.heartbeat(public_id, "w2") is True
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
        assert (search.status, search.worker_id, search.trials_done) == ("running", "w2", 0)


def test_update_progress_is_stored_and_validated(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        public_id = new_search(session, device_id).public_id
    claim(session_factory, "w1", now=T0)
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        loaded = searches.require(public_id)  # an object already in the session is kept in step
        assert searches.update_progress(
            public_id, "w1", phase="search", progress=0.25, trials_done=10, over_budget_skipped=3, now=T0 + timedelta(1)
        )
        assert (loaded.phase, loaded.progress, loaded.trials_done, loaded.trials_total) == ("search", 0.25, 10, 40)
        assert searches.update_progress(public_id, "w1", phase="netadapt", trials_total=50)
        with pytest.raises(ValueError, match="progress"):
            searches.update_progress(public_id, "w1", progress=1.5)
        with pytest.raises(ValueError, match="phase"):
            searches.update_progress(public_id, "w1", phase="export")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="trials_done"):
            searches.update_progress(public_id, "w1", trials_done=-1)
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
    assert (search.phase, search.progress, search.trials_done, search.trials_total) == ("netadapt", 0.25, 10, 50)
    assert search.over_budget_skipped == 3 and search.heartbeat_at > T0 + timedelta(1)


def test_finish_only_by_the_owner(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        done_id = new_search(session, device_id).public_id
        failed_id = new_search(session, device_id).public_id
    claim(session_factory, "w1")
    claim(session_factory, "w2")
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        assert searches.finish(done_id, "w2", "succeeded") is False
        assert searches.require(done_id).status == "running"
        with pytest.raises(ValueError, match="final status"):
            searches.finish(done_id, "w1", "running")  # type: ignore[arg-type]
        assert searches.finish(done_id, "w1", "succeeded", result={"architecture": "abc", "accuracy": 0.9})
        assert searches.finish(failed_id, "w2", "failed", error="CUDA out of memory")
        assert searches.finish(done_id, "w1", "failed") is False  # finished is final
        assert searches.heartbeat(done_id, "w1") is False
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        done, failed = searches.require(done_id), searches.require(failed_id)
    assert (done.status, done.phase, done.progress, done.result, done.error) == (
        "succeeded",
        "done",
        1.0,
        {"architecture": "abc", "accuracy": 0.9},
        None,
    )
    assert done.finished_at is not None and done.finished
    assert (failed.status, failed.error, failed.result, failed.progress) == ("failed", "CUDA out of memory", None, 0.0)


def test_cancel_queued_running_and_finished(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        running_id = new_search(session, device_id).public_id
        queued_id = new_search(session, device_id).public_id
    claim(session_factory, "w1")
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        assert searches.request_cancel(queued_id) == "cancelled"
        assert searches.request_cancel(running_id) == "running"
        assert searches.request_cancel(running_id) == "running"
        assert searches.cancel_requested(running_id) is True
        with pytest.raises(SearchNotFoundError):
            searches.request_cancel("nope")
        with pytest.raises(SearchNotFoundError):
            searches.cancel_requested("nope")
    assert claim(session_factory, "w2") is None  # the cancelled one is not claimable
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        cancelled = searches.require(queued_id)
        assert (cancelled.status, cancelled.phase, cancelled.finished_at is not None) == ("cancelled", "done", True)
        # The worker sees the flag between trials and ends the search itself.
        assert searches.finish(running_id, "w1", "cancelled")
    with session_scope(session_factory) as session:
        searches = SearchRepository(session)
        for public_id in (queued_id, running_id):
            with pytest.raises(SearchStateError, match="it is cancelled") as raised:
                searches.request_cancel(public_id)
            assert raised.value.status == "cancelled"


def test_deleting_a_search_cascades(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        search = new_search(session, device_id)
        kept = new_search(session, device_id)
        for owner in (search, kept):
            CandidateRepository(session).add(owner.id, candidate("h1"))
            EventRepository(session).add(owner.id, "queued", "waiting for a worker")
            add_architecture(session, owner.id)
    with session_scope(session_factory) as session:
        SearchRepository(session).delete(search.public_id)
    with session_scope(session_factory) as session:
        assert SearchRepository(session).get(search.public_id) is None
        for model in (Candidate, SearchEvent, Architecture):
            assert session.scalars(select(model.search_id)).all() == [kept.id]
        # The database cascades by itself too (plain SQL, no ORM).
        session.execute(delete(Search).where(Search.id == kept.id))
    with session_scope(session_factory) as session:
        for model in (Candidate, SearchEvent, Architecture):
            assert session.scalar(select(func.count()).select_from(model)) == 0


def test_running_search_cannot_be_deleted(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        public_id = new_search(session, device_id).public_id
    claim(session_factory, "w1")
    with session_scope(session_factory) as session, pytest.raises(SearchStateError, match="delete"):
        SearchRepository(session).delete(public_id)
    with session_scope(session_factory) as session, pytest.raises(SearchNotFoundError):
        SearchRepository(session).delete("nope")


def test_device_with_searches_cannot_be_deleted(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        new_search(session, device_id)
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        DeviceRepository(session).delete("pixel-7")


# --- candidates --------------------------------------------------------------------------------------


def test_candidate_insert_is_idempotent(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        search_id = new_search(session, device_id).id
        other_id = new_search(session, device_id).id
        candidates = CandidateRepository(session)
        assert candidates.add(search_id, candidate("h1", 0.7)) is True
        assert candidates.add(search_id, candidate("h1", 0.1, status="failed")) is False  # the first record wins
        assert candidates.add(other_id, candidate("h1", 0.2)) is True  # unique per search only
        assert candidates.add(search_id, candidate("h2", None, genome=None, phase="netadapt")) is True
    with session_scope(session_factory) as session:
        candidates = CandidateRepository(session)
        stored = candidates.get_by_hash(search_id, "h1")
        assert stored is not None and (stored.search_id, stored.created_at.tzinfo) == (search_id, UTC)
        assert replace(stored) == stored and stored.accuracy == 0.7 and stored.status == "completed"
        assert CandidateData(**{k: getattr(stored, k) for k in CandidateData.__dataclass_fields__}) == candidate(
            "h1", 0.7
        )
        netadapt = candidates.get_by_hash(search_id, "h2")
        assert netadapt is not None and netadapt.genome is None and netadapt.phase == "netadapt"
        assert candidates.get_by_hash(search_id, "h3") is None
        assert candidates.hashes(search_id) == {"h1", "h2"}
        assert candidates.count(search_id) == 2 and candidates.count(other_id) == 1
        assert session.execute(text("SELECT count(*) FROM candidates WHERE genome IS NULL")).scalar_one() == 1
        with pytest.raises(ValueError, match="candidate status"):
            candidates.add(search_id, candidate("h4", status="great"))  # type: ignore[arg-type]
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        CandidateRepository(session).add(search_id + 1000, candidate("h9"))


def test_candidates_sorted_paged_filtered_and_best(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        search_id = new_search(session, device_id).id
        candidates = CandidateRepository(session)
        for data in (
            candidate("a", 0.60, 9.0),
            candidate("b", None, 30.0, status="over_budget"),
            candidate("c", 0.80, 11.0),
            candidate("d", 0.95, 8.0, status="pruned"),
            candidate("e", 0.80, 10.0),
            candidate("f", 0.70, 7.0, phase="netadapt"),
        ):
            candidates.add(search_id, data)
    with session_scope(session_factory) as session:
        candidates = CandidateRepository(session)

        def hashes(**options: object) -> list[str]:
            return [c.arch_hash for c in candidates.list(search_id, **options)]  # type: ignore[arg-type]

        assert hashes() == ["a", "b", "c", "d", "e", "f"]
        assert hashes(descending=True, limit=2) == ["f", "e"]
        # No accuracy sorts last in both directions; equal accuracies keep id order.
        assert hashes(order_by="accuracy", descending=True) == ["d", "c", "e", "f", "a", "b"]
        assert hashes(order_by="accuracy") == ["a", "f", "c", "e", "d", "b"]
        assert hashes(order_by="accuracy", descending=True, limit=2, offset=1) == ["c", "e"]
        assert hashes(order_by="predicted_ms") == ["f", "d", "a", "e", "c", "b"]
        assert hashes(phase="netadapt") == ["f"]
        assert hashes(status=["pruned", "over_budget"]) == ["b", "d"]
        assert candidates.count(search_id, phase="search", status="completed") == 3
        best = candidates.best(search_id)
        assert best is not None and best.arch_hash == "e"  # pruned "d" does not count; "e" beats "c" on latency
        best_netadapt = candidates.best(search_id, phase="netadapt")
        assert best_netadapt is not None and best_netadapt.arch_hash == "f"
        assert candidates.best(search_id, phase="final") is None
        with pytest.raises(ValueError, match="order_by"):
            candidates.list(search_id, order_by="madds")  # type: ignore[arg-type]


# --- architectures -----------------------------------------------------------------------------------


def test_architectures_added_and_found(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        search_id = new_search(session, device_id).id
        winner = add_architecture(session, search_id, measured_ms=9.8, accuracy=0.91)
        baseline = add_architecture(session, search_id, role="baseline", arch_hash="mbv2", files=None)
        loose = add_architecture(session, None, owner="key-2")
        with pytest.raises(ValueError, match="role"):
            add_architecture(session, search_id, role="loser")
    assert len(winner.public_id) == 32 and winner.created_at.tzinfo is not None
    with session_scope(session_factory) as session:
        architectures = ArchitectureRepository(session)
        stored = architectures.require(winner.public_id)
        assert (stored.role, stored.measured_ms, stored.accuracy, stored.madds) == ("winner", 9.8, 0.91, 12_000_000_000)
        assert stored.files == {"spec": "spec.json", "onnx": "model.onnx", "weights": "weights.pt"}
        assert architectures.require(baseline.public_id).files == {}
        assert [a.public_id for a in architectures.for_search(search_id)] == [winner.public_id, baseline.public_id]
        assert [a.public_id for a in architectures.list(owner="key-2")] == [loose.public_id]
        assert [a.public_id for a in architectures.list(limit=1, offset=1)] == [baseline.public_id]
        assert architectures.get("0" * 32) is None
        with pytest.raises(ArchitectureNotFoundError, match="'nope'"):
            architectures.require("nope")


# --- events ------------------------------------------------------------------------------------------


def test_events_are_read_in_order_after_an_id(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        search_id = new_search(session, device_id).id
        other_id = new_search(session, device_id).id
        events = EventRepository(session)
        ids = []
        for i in range(5):
            ids.append(events.add(search_id, "trial", f"trial {i} done", data={"trial": i}))
            events.add(other_id, "trial", "elsewhere")
        warning = events.add(search_id, "budget", "over budget", level="warning")
        with pytest.raises(ValueError, match="event level"):
            events.add(search_id, "x", "y", level="debug")  # type: ignore[arg-type]
    assert ids == sorted(ids) and warning > ids[-1]
    with session_scope(session_factory) as session:
        events = EventRepository(session)
        everything = events.after(search_id)
        assert [e.id for e in everything] == [*ids, warning]
        assert [e.message for e in events.after(search_id, ids[1], limit=2)] == ["trial 2 done", "trial 3 done"]
        last = events.after(search_id, ids[-1])
        assert [(e.level, e.kind, e.data) for e in last] == [("warning", "budget", {})]
        assert everything[0].data == {"trial": 0} and everything[0].created_at.tzinfo is not None
        assert events.after(search_id, warning) == []
        assert (events.count(search_id), events.count(other_id)) == (6, 5)


# --- concurrency -------------------------------------------------------------------------------------


def claim_until_empty(sessions: sessionmaker[Session], worker: str, start: threading.Barrier) -> list[str]:
    start.wait()
    claimed = []
    while (search := claim(sessions, worker)) is not None:
        claimed.append(search.public_id)
    return claimed


def test_concurrent_workers_claim_each_search_exactly_once(db_url: str, engine: Engine, device_id: int) -> None:
    sessions = store_db.session_factory(engine)
    workers = 4
    # One engine per worker: separate connections, as separate worker processes would have.
    engines = [make_engine(db_url) for _ in range(workers)]
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for round_number in range(3):
                with session_scope(sessions) as session:
                    queued = {new_search(session, device_id).public_id for _ in range(10)}
                start = threading.Barrier(workers)
                futures = [
                    pool.submit(claim_until_empty, store_db.session_factory(engines[index]), f"w{index}", start)
                    for index in range(workers)
                ]
                claimed = [future.result(timeout=60) for future in futures]
                everything = [public_id for worker in claimed for public_id in worker]
                assert sorted(everything) == sorted(queued), f"round {round_number}: {claimed}"
                with session_scope(sessions) as session:
                    searches = SearchRepository(session)
                    assert searches.queue_length() == 0
                    assert {s.attempts for s in searches.list(status="running", limit=100)} == {1}
    finally:
        for worker_engine in engines:
            worker_engine.dispose()
