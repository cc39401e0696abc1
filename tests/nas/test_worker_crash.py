"""Kill a worker process (SIGKILL) in the middle of a search; another worker finishes it, and no
architecture is trained twice. Real processes, real Ray, on SQLite and PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latency_lut.table import LutEntry
from nas.latency import add_device, store_lut_entries
from nas.search.request import SearchRequest
from nas.store import CandidateRepository, EventRepository, SearchRepository, session_scope
from nas.submission import submit_search
from search_spaces import get_space
from tests.markers import SQLITE_ONLY
from tests.modelled_lut import modelled_lut

HWNAS = str(Path(sys.executable).with_name("hwnas"))
REQUEST = {
    "device": "local",
    "space": "mobilenet_v3_small",
    "dataset": "synthetic:classes=3,per_class=24,resolution=16",
    "effort": "quick",
    "resolution": 16,
    "widths": (0.75,),
    "netadapt": False,
    "baseline": False,
    "strategy": "evolution",
    "seed": 5,
}


@pytest.fixture(scope="module")
def small16_lut() -> dict[str, LutEntry]:
    """Modelled block times (tests/modelled_lut.py): what is tested is the crash, not latency; the
    search still measures its winner end to end."""
    return modelled_lut(get_space("mobilenet_v3_small").with_options(resolutions=[16], widths=[0.75], num_classes=3))


def _worker(db_url: str, tmp_path: Path, stale_after_s: float) -> subprocess.Popen:
    env = {**os.environ, "HWNAS_DATABASE_URL": db_url, "HWNAS_ARTIFACT_DIR": str(tmp_path / "artifacts")}
    command = [HWNAS, "worker", "--once", "--poll-s", "0.2", "--stale-after-s", str(stale_after_s)]
    log = open(tmp_path / f"worker-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(tmp_path.glob("worker-*.log")))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


# On PostgreSQL a SIGKILLed worker is the deployment check's (tests/deploy/test_processes.py).
@SQLITE_ONLY
def test_killed_worker_is_replaced_and_nothing_is_trained_twice(
    db_url: str, session_factory, small16_lut, tmp_path: Path
) -> None:
    add_device(session_factory, "local", threads=1)
    store_lut_entries(session_factory, "local", small16_lut)
    from nas.latency import load_predictor

    space = get_space("mobilenet_v3_small").with_options(resolutions=[16], widths=[0.75], num_classes=3)
    # 3x the fastest: without NetAdapt only networks within budget are trained, and at 2x evolution could run
    # out of feasible children (it did once training changed: 3 trials, then 5,791 proposals over budget).
    budget = 3.0 * load_predictor(session_factory, "local", space).pricer(space).fastest()[0]
    public_id = submit_search(session_factory, SearchRequest(**REQUEST, budget_ms=budget))
    trials = SearchRequest(**REQUEST, budget_ms=budget).preset.trials

    first = _worker(db_url, tmp_path, stale_after_s=600)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with session_scope(session_factory) as session:
                search = SearchRepository(session).require(public_id)
                done = CandidateRepository(session).count(search.id, phase="search")
            if done >= 2:
                break
            assert first.poll() is None, _logs(tmp_path)
            time.sleep(0.2)
        else:
            pytest.fail("the first worker stored no candidates within 240 s")
    finally:
        _kill_group(first)
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
        assert search.status == "running" and search.worker_id is not None
        before = {c.arch_hash: c.trial_id for c in CandidateRepository(session).list(search.id, phase="search")}
    assert 2 <= len(before) < trials

    second = _worker(db_url, tmp_path, stale_after_s=1.0)
    try:
        second.wait(timeout=420)
    finally:
        _kill_group(second)
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
        candidates = CandidateRepository(session).list(search.id, phase="search")
        trial_events = [e for e in EventRepository(session).after(search.id, 0, 10_000) if e.kind == "trial"]
        kinds = {e.kind for e in EventRepository(session).after(search.id, 0, 10_000)}
        status, attempts, error = search.status, search.attempts, search.error
    assert status == "succeeded", f"{error}\n{_logs(tmp_path)}"
    assert attempts == 2 and "resume" in kinds
    assert len(candidates) == trials
    # Every finished trial logs one event with its hash (just after storing it): a hash trained twice
    # would appear twice. The kill may fall between a store and its event, hence trials - 1.
    trained = [e.data["arch_hash"] for e in trial_events]
    assert len(trained) == len(set(trained)) >= trials - 1
    assert set(trained) <= {c.arch_hash for c in candidates}
    # The first worker's candidates were kept as they were, not re-evaluated.
    after = {c.arch_hash: c.trial_id for c in candidates}
    assert all(after[h] == trial_id for h, trial_id in before.items())
