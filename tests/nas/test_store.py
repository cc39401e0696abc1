"""The store on SQLite and PostgreSQL: schema from migrations, repositories, transactions."""

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Engine, delete, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from nas.store import (
    Base,
    CalibrationRepository,
    Device,
    DeviceExistsError,
    DeviceNotFoundError,
    DeviceRepository,
    E2EMeasurementData,
    LutEntry,
    LutEntryData,
    LutRepository,
    MeasurementRepository,
    alembic_config,
    database_revision,
    database_url,
    head_revision,
    make_engine,
    session_scope,
    upgrade_database,
)

MEASURED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def lut_entry(key: str, median_ms: float = 1.0, **changes: object) -> LutEntryData:
    entry = LutEntryData(
        key=key,
        median_ms=median_ms,
        iqr_ms=0.1,
        runs=20,
        runtime_version="1.18.0",
        source="profiler",
        measured_at=MEASURED,
    )
    return replace(entry, **changes)


def measurement(arch_hash: str, median_ms: float = 5.0) -> E2EMeasurementData:
    return E2EMeasurementData(
        arch_hash=arch_hash,
        spec_json={"resolution": 32, "blocks": [{"kind": "ir", "kernel": 3}]},
        median_ms=median_ms,
        iqr_ms=0.2,
        runs=30,
        runtime_version="1.18.0",
        madds=12_000_000_000,
        measured_at=MEASURED,
    )


@pytest.fixture
def device_id(session_factory: sessionmaker[Session]) -> int:
    with session_scope(session_factory) as session:
        return DeviceRepository(session).add("pixel-7", runtime_version="1.18.0", threads=4).id


# --- migrations --------------------------------------------------------------------------------------


def test_migrations_create_exactly_the_model_tables(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set(Base.metadata.tables)


def test_migrations_and_models_have_no_difference(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrations_create_the_models_check_constraints(engine: Engine) -> None:
    # Alembic's comparison ignores CHECK constraints, so compare their names directly.
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        assert {c["name"] for c in inspector.get_check_constraints(table.name)} == expected, table.name


def test_upgrading_twice_changes_nothing(engine: Engine, session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
    tables_before = sorted(inspect(engine).get_table_names())

    upgrade_database(engine)

    assert database_revision(engine) == head_revision() == "0007"
    assert sorted(inspect(engine).get_table_names()) == tables_before
    with session_scope(session_factory) as session:
        assert [device.name for device in DeviceRepository(session).list()] == ["laptop"]


def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds(engine: Engine) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert database_revision(engine) is None

    upgrade_database(engine)
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set(Base.metadata.tables)


def test_upgrade_database_accepts_a_url(db_url: str) -> None:
    upgrade_database(db_url)
    engine = make_engine(db_url)
    try:
        assert database_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_in_memory_database_is_migrated_and_shared_across_threads() -> None:
    engine = make_engine("sqlite://")
    upgrade_database(engine)
    sessions = sessionmaker(engine)
    with session_scope(sessions) as session:
        DeviceRepository(session).add("memory", runtime_version="1.18.0", threads=1)
    seen: list[str] = []

    def list_devices() -> None:
        with session_scope(sessions) as session:
            seen.extend(device.name for device in DeviceRepository(session).list())

    thread = threading.Thread(target=list_devices)
    thread.start()
    thread.join()
    engine.dispose()
    assert seen == ["memory"]


# --- devices -----------------------------------------------------------------------------------------


def test_add_device_fills_defaults(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        device = DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
    # Readable after the session closed: repositories hand rows to serialisers.
    assert device.id is not None
    assert (device.runtime, device.execution_provider, device.facts) == (
        "onnxruntime",
        "CPUExecutionProvider",
        {},
    )
    assert device.created_at.tzinfo is not None
    assert abs(device.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_devices_listed_by_name_and_found(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        devices = DeviceRepository(session)
        zeta = devices.add("zeta", runtime_version="1.18.0", threads=1, facts={"cpu": "arm"})
        devices.add("alpha", runtime_version="1.17.3", threads=8, execution_provider="XnnpackExecutionProvider")
    with session_scope(session_factory) as session:
        devices = DeviceRepository(session)
        assert [device.name for device in devices.list()] == ["alpha", "zeta"]
        assert devices.get(zeta.id) is not None and devices.get(zeta.id).facts == {"cpu": "arm"}
        assert devices.get(zeta.id + 1000) is None
        assert devices.get_by_name("nope") is None
        assert devices.require("alpha").execution_provider == "XnnpackExecutionProvider"
        assert devices.require_id(zeta.id).name == "zeta"
        with pytest.raises(DeviceNotFoundError, match="'nope'"):
            devices.require("nope")


def test_duplicate_device_name_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
    with session_scope(session_factory) as session, pytest.raises(DeviceExistsError, match="'laptop'"):
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=4)


def test_duplicate_lost_race_is_reported_and_session_stays_usable(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(session_factory) as session:
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
    with session_scope(session_factory) as session:
        devices = DeviceRepository(session)
        devices.add("phone", runtime_version="1.18.0", threads=4)
        real_get_by_name = devices.get_by_name
        calls: list[str] = []

        def get_by_name_missing_once(name: str) -> Device | None:
            # The pre-check misses the name, as if another writer took it just afterwards.
            calls.append(name)
            return None if len(calls) == 1 else real_get_by_name(name)

        monkeypatch.setattr(devices, "get_by_name", get_by_name_missing_once)
        with pytest.raises(DeviceExistsError) as raised:
            devices.add("laptop", runtime_version="1.18.0", threads=4)
        assert isinstance(raised.value.__cause__, IntegrityError)
    with session_scope(session_factory) as session:
        assert [device.name for device in DeviceRepository(session).list()] == ["laptop", "phone"]


def test_device_needs_at_least_one_thread(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session, pytest.raises(ValueError, match="threads"):
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=0)


def test_device_facts_changed_in_place_are_saved(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
    with session_scope(session_factory) as session:
        device = DeviceRepository(session).require("laptop")  # held: the session refers to it weakly
        device.facts["cores"] = 8
    with session_scope(session_factory) as session:
        assert DeviceRepository(session).require("laptop").facts == {"cores": 8}


def test_session_scope_rolls_back_on_error(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
        raise RuntimeError("boom")
    with session_scope(session_factory) as session:
        assert DeviceRepository(session).list() == []


# --- LUT entries -------------------------------------------------------------------------------------


def test_lut_upsert_inserts_then_replaces(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        written = LutRepository(session).upsert_many(device_id, [lut_entry("a", 1.0), lut_entry("b", 2.0)])
    assert written == 2
    with session_scope(session_factory) as session:
        lut = LutRepository(session)
        before = lut.entries(device_id)
        written = lut.upsert_many(device_id, [lut_entry("b", 2.5, source="agent"), lut_entry("c", 3.0)])
        assert written == 2
        assert lut.entries(device_id) == {
            "a": lut_entry("a", 1.0),
            "b": lut_entry("b", 2.5, source="agent"),
            "c": lut_entry("c", 3.0),
        }
    assert before["b"] == lut_entry("b", 2.0)
    with session_scope(session_factory) as session:
        lut = LutRepository(session)
        assert lut.measured_keys(device_id) == {"a", "b", "c"}
        assert lut.count(device_id) == 3


def test_lut_batch_with_repeated_key_keeps_the_last(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        lut = LutRepository(session)
        assert lut.upsert_many(device_id, iter([lut_entry("a", 1.0), lut_entry("a", 4.0)])) == 1
        assert lut.entries(device_id)["a"].median_ms == 4.0
        assert lut.upsert_many(device_id, []) == 0


def test_lut_entry_without_time_is_stamped_now(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        LutRepository(session).upsert_many(device_id, [lut_entry("a", measured_at=None)])
    with session_scope(session_factory) as session:
        measured_at = LutRepository(session).entries(device_id)["a"].measured_at
    assert measured_at is not None and measured_at.tzinfo is not None
    assert abs(measured_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_lut_refuses_naive_timestamps(session_factory: sessionmaker[Session], device_id: int) -> None:
    with pytest.raises(StatementError, match="naive datetime"), session_scope(session_factory) as session:
        LutRepository(session).upsert_many(device_id, [lut_entry("a", measured_at=datetime(2025, 1, 1))])


def test_lut_tables_are_per_device(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        other = DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2).id
        lut = LutRepository(session)
        lut.upsert_many(device_id, [lut_entry("a", 1.0)])
        lut.upsert_many(other, [lut_entry("a", 9.0), lut_entry("b", 9.0)])
    with session_scope(session_factory) as session:
        lut = LutRepository(session)
        assert lut.entries(device_id) == {"a": lut_entry("a", 1.0)}
        assert lut.count(other) == 2


def test_lut_delete_keys(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        lut = LutRepository(session)
        lut.upsert_many(device_id, [lut_entry(key) for key in ("a", "b", "c")])
        assert lut.delete_keys(device_id, ["a", "c", "missing", "a"]) == 2
        assert lut.measured_keys(device_id) == {"b"}


def test_deleting_a_device_cascades(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        LutRepository(session).upsert_many(device_id, [lut_entry("a"), lut_entry("b")])
        MeasurementRepository(session).upsert(device_id, measurement("h1"))
        CalibrationRepository(session).save(device_id, "linear", {"scale": 1.1}, n_measurements=1)
    with session_scope(session_factory) as session:
        DeviceRepository(session).delete("pixel-7")
    with session_scope(session_factory) as session:
        assert LutRepository(session).count(device_id) == 0
        assert MeasurementRepository(session).count(device_id) == 0
        assert CalibrationRepository(session).get(device_id) is None
        with pytest.raises(DeviceNotFoundError):
            DeviceRepository(session).delete("pixel-7")


def test_database_enforces_the_cascade_without_the_orm(session_factory: sessionmaker[Session], device_id: int) -> None:
    # Plain SQL DELETE: only the foreign key's ON DELETE CASCADE (SQLite: PRAGMA foreign_keys) acts.
    with session_scope(session_factory) as session:
        LutRepository(session).upsert_many(device_id, [lut_entry("a")])
    with session_scope(session_factory) as session:
        session.execute(delete(Device).where(Device.id == device_id))
    with session_scope(session_factory) as session:
        assert session.scalars(select(LutEntry)).all() == []


def test_lut_entry_for_unknown_device_is_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        LutRepository(session).upsert_many(12345, [lut_entry("a")])


@pytest.mark.parametrize(
    "bad_change",
    [{"runs": 0}, {"median_ms": None}, {"source": "guess"}, {"key": None}],
    ids=["runs-check", "median-not-null", "source-check", "key-not-null"],
)
def test_failed_batch_leaves_stored_entries_unchanged(
    session_factory: sessionmaker[Session], device_id: int, bad_change: dict[str, object]
) -> None:
    with session_scope(session_factory) as session:
        LutRepository(session).upsert_many(device_id, [lut_entry("a", 1.0), lut_entry("b", 2.0)])
    with session_scope(session_factory) as session:
        before = LutRepository(session).entries(device_id)

    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        lut = LutRepository(session)
        lut.upsert_many(device_id, [lut_entry("a", 10.0)])  # an earlier, valid write in the same unit
        batch = [lut_entry("b", 20.0), lut_entry("c", 3.0), replace(lut_entry("d", 4.0), **bad_change)]
        lut.upsert_many(device_id, batch)

    with session_scope(session_factory) as session:
        assert LutRepository(session).entries(device_id) == before


# --- end-to-end measurements and calibration ---------------------------------------------------------


def test_measurements_upsert_and_list(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        measurements = MeasurementRepository(session)
        measurements.upsert(device_id, measurement("h1", 5.0))
        measurements.upsert(device_id, measurement("h2", 7.0))
    with session_scope(session_factory) as session:
        measurements = MeasurementRepository(session)
        assert measurements.list(device_id) == [measurement("h1", 5.0), measurement("h2", 7.0)]
        measurements.upsert(device_id, measurement("h1", 6.0))
        assert measurements.list(device_id) == [measurement("h1", 6.0), measurement("h2", 7.0)]
        assert measurements.count(device_id) == 2
        assert measurements.list(device_id + 1) == []


def test_calibration_save_replaces(session_factory: sessionmaker[Session], device_id: int) -> None:
    with session_scope(session_factory) as session:
        calibrations = CalibrationRepository(session)
        assert calibrations.get(device_id) is None
        saved = calibrations.save(device_id, "linear", {"scale": 1.1, "offset_ms": 0.3}, n_measurements=12)
        assert calibrations.get(device_id) == saved
    with session_scope(session_factory) as session:
        calibrations = CalibrationRepository(session)
        calibrations.save(device_id, "isotonic", {"knots": [1, 2]}, n_measurements=40, fitted_at=MEASURED)
    with session_scope(session_factory) as session:
        current = CalibrationRepository(session).get(device_id)
        rows = session.execute(text("SELECT count(*) FROM calibrations")).scalar_one()
    assert current is not None
    assert (current.method, current.coefficients, current.n_measurements, current.fitted_at) == (
        "isotonic",
        {"knots": [1, 2]},
        40,
        MEASURED,
    )
    assert rows == 1


# --- configuration -----------------------------------------------------------------------------------


def test_database_url_defaults_to_sqlite_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HWNAS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    url = database_url()
    assert url == f"sqlite:///{tmp_path / '.hwnas' / 'hwnas.db'}"
    assert not (tmp_path / ".hwnas").exists()

    engine = make_engine()
    try:
        upgrade_database(engine)
        assert (tmp_path / ".hwnas" / "hwnas.db").is_file()
    finally:
        engine.dispose()


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWNAS_DATABASE_URL", "postgresql+psycopg://u:p@db:5432/hwnas")
    assert database_url() == "postgresql+psycopg://u:p@db:5432/hwnas"


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    finally:
        engine.dispose()
