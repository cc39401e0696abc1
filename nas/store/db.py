"""Engines, migrations and sessions: how the rest of hwnas reaches its database.

One URL picks the backend. The embedded default is a SQLite file under `./.hwnas/` so `hwnas serve`
needs nothing installed; docker-compose points `HWNAS_DATABASE_URL` at PostgreSQL. Both get the
same schema from the same Alembic migrations and the same transactional behaviour.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from nas.settings import DATABASE_URL_ENV, default_database_url  # noqa: F401 (re-exported)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def database_url() -> str:
    """The configured database URL: `HWNAS_DATABASE_URL`, else a SQLite file in `./.hwnas/`.

    Read at call time (not import time) so tests and the CLI can change the environment. The
    `.hwnas` directory is created by `make_engine`, when the database is actually opened.
    """
    return default_database_url()


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: `database_url()`) with each backend's settings made safe.

    SQLite gets foreign keys (otherwise ON DELETE CASCADE is ignored), WAL and a busy timeout (the
    API and the worker write concurrently), and real BEGINs (the sqlite3 driver's legacy mode would
    autocommit DDL and savepoints). PostgreSQL gets pre-ping, so a restarted server costs no request.
    """
    parsed = make_url(url or database_url())
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if _is_in_memory_sqlite(parsed):
        # Every thread must see the same in-memory database, so share its single connection.
        options["poolclass"] = StaticPool
    else:
        _ensure_sqlite_directory(parsed)
    engine = create_engine(parsed, **options)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _is_in_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def _ensure_sqlite_directory(url: URL) -> None:
    database = url.database or ""
    if url.query.get("uri") or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    # Take transaction control away from the driver; `_begin_sqlite_transaction` issues BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front. A deferred transaction that reads and then writes
    # fails at once with "database is locked" (no busy wait) if another connection wrote in between,
    # which is exactly what a worker's heartbeat thread and a progress reader do to each other.
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` built in code, pointing at the migrations shipped inside the package.

    No alembic.ini is read, so migrations run the same from a checkout, a wheel or a container. A
    given `connection` is handed to `env.py`, which then migrates exactly that database (this is
    what lets an in-memory or already-open engine be migrated).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_database(target: Engine | str | None = None, revision: str = "head") -> None:
    """Bring the database at `target` (engine, URL, or the configured URL) up to `revision`.

    Runs inside one transaction, so on PostgreSQL (and SQLite, thanks to explicit BEGIN) a failing
    migration leaves the schema as it was. Already at `revision`: nothing happens.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        if engine is not target:
            engine.dispose()


def database_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None if it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision the shipped migrations define: what `upgrade_database` migrates to."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine` whose objects stay readable after commit.

    `expire_on_commit=False` because repositories hand ORM rows to callers that serialise them
    after the session has closed (API responses, CLI tables).
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit if the block finishes, roll back if anything escapes it.

    Every write in hwnas goes through this, so a failure half way through a batch leaves the
    database exactly as it was before the block began.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
