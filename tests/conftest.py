"""Shared fixtures. Each section belongs to one part of hwnas; add new sections below, not inside."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from nas.store import db as store_db

# ---------------------------------------------------------------------------------------------------
# Store (database) fixtures: the same tests run on SQLite and on PostgreSQL.
# PostgreSQL runs only when HWNAS_TEST_POSTGRES_URL is set (`make test` sets it); each test gets its
# own schema, migrated from scratch and dropped afterwards, so tests never see each other's rows.
# ---------------------------------------------------------------------------------------------------

POSTGRES_URL_ENV = "HWNAS_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of the parametrised backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base_url = os.environ.get(POSTGRES_URL_ENV)
    if not base_url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set, so the PostgreSQL variant does not run")
    schema = f"t_{uuid.uuid4().hex}"
    admin = create_engine(base_url, poolclass=NullPool)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            # A leaked open transaction must fail the teardown, not hang it.
            connection.execute(text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on `db_url`, migrated to the newest revision."""
    engine = store_db.make_engine(db_url)
    store_db.upgrade_database(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return store_db.session_factory(engine)


# --------------------------------------- end of store fixtures ---------------------------------------
