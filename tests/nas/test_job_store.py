"""Measurement jobs in the store (SQLite and PostgreSQL), and migration 0005 on a database with data."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nas.store import (
    DeviceRepository,
    E2EMeasurementData,
    JobAnswer,
    LutEntryData,
    LutRepository,
    MeasurementJobNotFoundError,
    MeasurementJobRepository,
    MeasurementJobStateError,
    MeasurementRepository,
    SearchRepository,
    alembic_config,
    make_engine,
    session_scope,
    upgrade_database,
)

SPEC = {"resolution": 32, "blocks": []}
ENVIRONMENT = {"runtime": "onnxruntime 1.20.0", "threads": "2", "cpu": "Cortex-A76"}


@pytest.fixture
def devices(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    with session_scope(session_factory) as session:
        repository = DeviceRepository(session)
        return (
            repository.add("phone", runtime_version="1.20.0", threads=2).id,
            repository.add("other", runtime_version="1.20.0", threads=1).id,
        )


def _search(session: Session, device_id: int) -> tuple[int, str]:
    row = SearchRepository(session).create(
        device_id=device_id, space="tiny", dataset="digits", budget_ms=1.0, strategy="random", request={}
    )
    return row.id, row.public_id


def test_jobs_are_filed_listed_answered_once_and_reused(
    session_factory: sessionmaker[Session], devices: tuple[int, int]
) -> None:
    phone, other = devices
    with session_scope(session_factory) as session:
        search_id, search_public_id = _search(session, phone)
        jobs = MeasurementJobRepository(session)
        first = jobs.add(phone, "a" * 64, SPEC, "winner", search_id)
        second = jobs.add(phone, "b" * 64, SPEC, "baseline", None)
    assert (first.status, first.search_id, first.role, first.median_ms) == ("pending", search_public_id, "winner", None)
    with session_scope(session_factory) as session:
        jobs = MeasurementJobRepository(session)
        assert [job.public_id for job in jobs.list(phone, "pending")] == [first.public_id, second.public_id]
        assert jobs.list(other) == [] and jobs.count(phone, "pending") == 2
        assert jobs.reusable(phone, search_id, "a" * 64) == first
        assert jobs.reusable(phone, None, "a" * 64) is None  # another search's job is not reused
        with pytest.raises(MeasurementJobNotFoundError):
            jobs.require_for_device(other, first.public_id)
        answered = jobs.answer(phone, first.public_id, JobAnswer(1.5, 0.1, 40, "1.20.0", ENVIRONMENT))
    assert (answered.status, answered.median_ms, answered.runs, answered.environment) == ("done", 1.5, 40, ENVIRONMENT)
    assert answered.answered_at is not None
    with session_scope(session_factory) as session:
        jobs = MeasurementJobRepository(session)
        with pytest.raises(MeasurementJobStateError) as refused:
            jobs.answer(phone, first.public_id, JobAnswer(9.0, 0.1, 40, "1.20.0"))
        assert refused.value.status == "done"
        with pytest.raises(MeasurementJobNotFoundError):
            jobs.answer(other, second.public_id, JobAnswer(9.0, 0.1, 40, "1.20.0"))
        assert jobs.reusable(phone, search_id, "a" * 64).median_ms == 1.5  # a done job is reused too
        assert jobs.list(phone, "pending")[0].public_id == second.public_id
        assert jobs.list(phone, limit=1, offset=1)[0].public_id == second.public_id


def test_cancelling_a_search_cancels_only_its_pending_jobs(
    session_factory: sessionmaker[Session], devices: tuple[int, int]
) -> None:
    phone, _ = devices
    with session_scope(session_factory) as session:
        search_id, _ = _search(session, phone)
        jobs = MeasurementJobRepository(session)
        done = jobs.add(phone, "a" * 64, SPEC, "winner", search_id)
        jobs.answer(phone, done.public_id, JobAnswer(1.0, 0.0, 10, "1.20.0"))
        pending = jobs.add(phone, "b" * 64, SPEC, "baseline", search_id)
        unrelated = jobs.add(phone, "c" * 64, SPEC, "candidate", None)
    with session_scope(session_factory) as session:
        assert MeasurementJobRepository(session).cancel_pending_of_search(search_id) == 1
    with session_scope(session_factory) as session:
        jobs = MeasurementJobRepository(session)
        statuses = [jobs.get(job.public_id).status for job in (done, pending, unrelated)]
        assert statuses == ["done", "cancelled", "pending"]
        with pytest.raises(MeasurementJobStateError):
            jobs.answer(phone, pending.public_id, JobAnswer(1.0, 0.0, 10, "1.20.0"))


def test_the_database_refuses_impossible_jobs(session_factory: sessionmaker[Session], devices: tuple[int, int]) -> None:
    phone, _ = devices
    with pytest.raises(ValueError, match="role"), session_scope(session_factory) as session:
        MeasurementJobRepository(session).add(phone, "a" * 64, SPEC, "judge", None)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        job = MeasurementJobRepository(session).add(phone, "a" * 64, SPEC, "winner", None)
        session.execute(text("UPDATE measurement_jobs SET median_ms = 0 WHERE public_id = :id"), {"id": job.public_id})
    with session_scope(session_factory) as session:
        assert MeasurementJobRepository(session).count(phone) == 0


def test_measurements_keep_their_environment(session_factory: sessionmaker[Session], devices: tuple[int, int]) -> None:
    phone, _ = devices
    with session_scope(session_factory) as session:
        LutRepository(session).upsert_many(
            phone,
            [
                LutEntryData("k1", 1.0, 0.1, 10, "1.20.0", "agent", environment=ENVIRONMENT),
                LutEntryData("k2", 1.0, 0.1, 10, "1.20.0", "agent", environment=ENVIRONMENT),
                LutEntryData("k3", 1.0, 0.1, 10, "1.20.0", "profiler"),
            ],
        )
        MeasurementRepository(session).upsert(
            phone, E2EMeasurementData("h" * 64, SPEC, 2.0, 0.1, 10, "1.20.0", 1000, environment=ENVIRONMENT)
        )
    with session_scope(session_factory) as session:
        assert LutRepository(session).entries(phone)["k1"].environment == ENVIRONMENT
        assert LutRepository(session).environments(phone) == [(ENVIRONMENT, 2), (None, 1)]
        assert MeasurementRepository(session).list(phone)[0].environment == ENVIRONMENT
        assert MeasurementRepository(session).environments(phone) == [(ENVIRONMENT, 1)]


def test_migration_0005_keeps_every_search_row_and_allows_waiting_device(db_url: str) -> None:
    engine: Engine = make_engine(db_url)
    try:
        upgrade_database(engine, "0004")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO devices (name, runtime_version, threads) VALUES ('d', '1', 1)"))
            connection.execute(
                text(
                    "INSERT INTO searches (public_id, device_id, space, dataset, budget_ms, strategy, request) "
                    "VALUES ('p', (SELECT id FROM devices), 's', 'd', 1.0, 'random', '{}')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO candidates (search_id, arch_hash, spec, phase, status, predicted_ms, params, madds) "
                    "VALUES ((SELECT id FROM searches), 'h', '{}', 'search', 'completed', 1.0, 1, 1)"
                )
            )
        upgrade_database(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE searches SET phase = 'waiting_device'"))
            assert connection.execute(text("SELECT count(*) FROM candidates")).scalar() == 1
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text("UPDATE searches SET phase = 'dreaming'"))
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0004")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT phase FROM searches")).scalar() == "final"
            assert connection.execute(text("SELECT count(*) FROM candidates")).scalar() == 1
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text("UPDATE searches SET phase = 'waiting_device'"))
    finally:
        engine.dispose()
