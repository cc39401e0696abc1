"""Shared fixtures. Each section belongs to one part of hwnas; add new sections below, not inside."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
    with postgres_schema(base_url, "t") as url:
        yield url


@contextmanager
def postgres_schema(base_url: str, prefix: str) -> Iterator[str]:
    """A URL to a fresh, empty schema of the PostgreSQL server at `base_url`, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex}"
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


# ---------------------------------------------------------------------------------------------------
# Latency service and CLI fixtures (tests/nas/test_latency_service.py, tests/api/test_cli.py).
# A tiny search space whose 34 block keys (32x32 input) profile in about a second, and a timing policy
# quick enough for tests. Measurements are real ONNX Runtime timings, never mocked; the session-scoped
# ones are measured once and only read afterwards. Imports stay inside the fixtures so this section can
# sit at the end of the file.
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_lut_space():
    """A `SearchSpace` of two stages (1-2 blocks each), 2 kernels x 2 expansions x SE, one width, 32 px."""
    from search_spaces.space import tiny_space

    return tiny_space("tiny", resolution=32, num_classes=10)


@pytest.fixture(scope="session")
def fast_policy():
    """A `TimingPolicy` quicker than QUICK_POLICY: a tiny key takes milliseconds, a tiny network < 0.1 s."""
    from latency_lut.kit_runner import TimingPolicy

    return TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)


@pytest.fixture(scope="session")
def tiny_lut(tiny_lut_space, fast_policy):
    """`{key: LutEntry}`: every key of `tiny_lut_space` measured once here at 1 thread (read it, never change it).

    For tests that need a complete table without testing profiling itself; store it with
    `nas.latency.store_lut_entries` under a 1-thread device of this machine.
    """
    from latency_lut.profiler import measure_key
    from latency_lut.table import LutEntry

    entries = {}
    for key in tiny_lut_space.block_keys():
        measured = measure_key(key, 1, fast_policy)
        entries[key] = LutEntry(measured.median_ms, measured.iqr_ms, measured.runs, measured.runtime_version)
    return entries


# ------------------------------------ end of latency service fixtures ------------------------------------


# ---------------------------------------------------------------------------------------------------
# HTTP service fixtures (tests/api/): a real uvicorn server on 127.0.0.1 (random port) in a thread of
# this process, on the parametrised database, with one embedded worker and three API keys. Searches
# run through the process's one Ray instance (started on first use, shared by the whole session).
# ---------------------------------------------------------------------------------------------------


class LiveServer:
    """What a test needs to talk to the running service."""

    def __init__(self, url: str, sessions, settings, tokens: dict[str, str], app=None) -> None:
        self.url = url
        self.app = app
        self.sessions = sessions
        self.settings = settings
        self.tokens = tokens  # "admin", "alice", "bob"

    def headers(self, who: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self, who: str | None = "alice", timeout: float = 30.0):
        import httpx

        return httpx.Client(base_url=self.url, headers=self.headers(who) if who else {}, timeout=timeout)


@pytest.fixture
def live_server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    from api.app import create_app
    from api.settings import Settings
    from nas.store import ApiKeyRepository, session_scope

    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("HWNAS_ARTIFACT_DIR", str(artifacts))
    settings = Settings(
        database_url=db_url,
        artifact_dir=artifacts,
        max_upload_bytes=4 * 2**20,
        embedded_worker=True,
        worker_mode="thread",  # tests patch spaces and constants in this process; the worker must see them
        log_format="text",
        heartbeat_s=1.0,
        sse_poll_s=0.2,
    )
    app = create_app(settings)
    tokens = {}
    with session_scope(app.state.sessions) as session:
        keys = ApiKeyRepository(session)
        tokens["admin"] = keys.create("admin", admin=True)[1]
        tokens["alice"] = keys.create("alice")[1]
        tokens["bob"] = keys.create("bob")[1]
    from api.server import serve_in_thread

    running = serve_in_thread(app)
    try:
        yield LiveServer(running.url, app.state.sessions, settings, tokens, app)
    finally:
        running.stop()


# --------------------------------------- end of HTTP service fixtures ---------------------------------------


# ---------------------------------------------------------------------------------------------------
# Search journey fixtures (tests/api/test_search_*.py, tests/api/test_datasets_api.py,
# tests/api/test_cli_searches.py): a tiny space registered under a name the server resolves (the
# server runs in this process), its 16 px lookup table measured once per session for real, and a
# 1-thread device of this machine holding it in the live server's database. A search on it with
# effort "smoke" and the synthetic dataset below runs to the end in seconds.
# ---------------------------------------------------------------------------------------------------

API_SEARCH_DATASET = "synthetic:classes=3,per_class=24,resolution=16"


@pytest.fixture(scope="session")
def api_search_space():
    from search_spaces.space import tiny_space

    return tiny_space("api_tiny", resolution=16, num_classes=3)


@pytest.fixture(scope="session")
def api_search_lut(api_search_space, fast_policy):
    """`{key: LutEntry}` of every key of `api_search_space` at 16 px, measured here at 1 thread (read only)."""
    from latency_lut.profiler import profile_keys
    from latency_lut.table import LutEntry

    measured = profile_keys(api_search_space.block_keys(), threads=1, policy=fast_policy)
    return {key: LutEntry(m.median_ms, m.iqr_ms, m.runs, m.runtime_version) for key, m in measured.items()}


@pytest.fixture
def search_server(live_server, api_search_space, api_search_lut, monkeypatch: pytest.MonkeyPatch):
    """`live_server` with the tiny space registered and device "local" (this machine, 1 thread, full LUT)."""
    import torch

    from nas.latency import add_device, store_lut_entries
    from search_spaces import space as space_module

    monkeypatch.setitem(space_module.SPACES, api_search_space.name, api_search_space)
    torch.set_num_threads(1)
    add_device(live_server.sessions, "local", threads=1)
    store_lut_entries(live_server.sessions, "local", api_search_lut)
    return live_server


# ------------------------------------ end of search journey fixtures ------------------------------------
