"""`hwnas serve`'s embedded worker runs as a child process of the API (SQLite; the default mode).

The search runs in the child (its worker id carries the child's pid, not the API's), spaces registered
in the API process reach it, and a child that dies is replaced.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from api.app import create_app
from api.server import serve_in_thread
from api.settings import Settings
from nas.latency import add_device, store_lut_entries
from nas.store import ApiKeyRepository, SearchRepository, session_scope
from search_spaces import space as space_module
from tests.api.search_helpers import search_body, wait_finished


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_the_embedded_worker_is_a_child_process_that_runs_searches_and_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_search_space, api_search_lut
) -> None:
    import httpx

    monkeypatch.setitem(space_module.SPACES, api_search_space.name, api_search_space)
    monkeypatch.setenv("HWNAS_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hwnas.db'}",
        artifact_dir=tmp_path / "artifacts",
        embedded_worker=True,
        worker_mode="process",
        log_format="text",
        heartbeat_s=1.0,
    )
    app = create_app(settings)
    with session_scope(app.state.sessions) as session:
        token = ApiKeyRepository(session).create("alice")[1]
    add_device(app.state.sessions, "local", threads=1)
    store_lut_entries(app.state.sessions, "local", api_search_lut)
    running = serve_in_thread(app)
    try:
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            worker = app.state.worker_process
            first_pid = worker.pid
            assert first_pid is not None and first_pid != os.getpid()
            assert api.get("/v1/health").json()["worker_pid"] == first_pid

            submitted = api.post("/v1/searches", json=search_body(baseline=False))
            assert submitted.status_code == 202, submitted.text
            search_id = submitted.json()["id"]
            assert wait_finished(api, search_id, timeout=240)["status"] == "succeeded"
            with session_scope(app.state.sessions) as session:
                worker_id = SearchRepository(session).require(search_id).worker_id
            assert f"-{first_pid}-" in worker_id  # the child ran it, not the API process

            os.kill(first_pid, signal.SIGKILL)
            new_pid = _wait(lambda: worker.alive() and worker.pid != first_pid and worker.pid, 30, "a restart")
            assert worker.restarts == 1 and new_pid != first_pid
    finally:
        running.stop()
    assert not worker.alive()
