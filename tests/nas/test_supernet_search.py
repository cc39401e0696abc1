"""The `supernet` strategy through the worker, for real: the supernet trained as a Ray Tune trial and
stored (row + file), evolution over members scored with inherited weights (every one a candidate), a
short list trained from scratch; a second search on the same data reuses the supernet; a corrupt
artifact is trained again, never a failure."""

from pathlib import Path

import pytest

from nas.store import ArchitectureRepository, CandidateRepository, EventRepository, SearchRepository, session_scope
from nas.store.models import Supernet
from nas.submission import submit_search
from nas.worker import run_worker
from tests.markers import SQLITE_ONLY
from tests.nas.test_search_e2e import _budget, _request, local_device, registered_space, tiny16_lut  # noqa: F401


def _run(session_factory, **changes) -> dict:
    public_id = submit_search(session_factory, _request(strategy="supernet", **changes))
    assert run_worker(session_factory, "worker-s", once=True) == 1
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
        candidates = CandidateRepository(session).list(search.id)
        events = EventRepository(session).after(search.id, 0, 1000)
        winner = next(a for a in ArchitectureRepository(session).for_search(search.id) if a.role == "winner")
        return {
            "status": search.status,
            "error": search.error,
            "candidates": [(c.phase, c.evaluation, c.accuracy, c.arch_hash) for c in candidates],
            "messages": [e.message for e in events],
            "winner": (winner.arch_hash, winner.accuracy, winner.test_accuracy),
        }


def _supernets(session_factory) -> list[tuple[str, str, str | None]]:
    with session_scope(session_factory) as session:
        return [(row.key, row.status, row.path) for row in session.query(Supernet).all()]


# The schema (supernets, candidates.evaluation) is checked on both databases by test_store; three whole
# searches on SQLite are enough here.
@SQLITE_ONLY
@pytest.mark.usefixtures("local_device")
def test_supernet_search_trains_once_and_is_reused(session_factory, tmp_path) -> None:
    budget = _budget(session_factory, 1.6)
    first = _run(session_factory, budget_ms=budget)
    assert first["status"] == "succeeded", first["error"]
    inherited = [c for c in first["candidates"] if c[1] == "inherited"]
    trained = [c for c in first["candidates"] if c[0] == "search" and c[1] == "trained"]
    assert len(inherited) >= 10  # every member scored is a candidate row
    assert all(c[0] == "search" and 0.0 <= c[2] <= 1.0 for c in inherited)
    assert len(trained) >= 1 and all(c[2] is not None for c in trained)  # the short list, trained from scratch
    hashes = [c[3] for c in first["candidates"]]
    assert len(hashes) == len(set(hashes))
    assert any("training a supernet" in m for m in first["messages"])
    assert first["winner"][2] is not None  # test accuracy reported
    [(key, status, path)] = _supernets(session_factory)
    assert status == "ready" and path == f"{key}/supernet.pt"
    artifact = Path(tmp_path / "artifacts" / "supernets" / path)
    assert artifact.is_file()

    # Another budget on the same data: no supernet training, the stored one is reused.
    second = _run(session_factory, budget_ms=budget * 1.2)
    assert second["status"] == "succeeded", second["error"]
    assert any("reusing the supernet" in m for m in second["messages"])
    assert not any("training a supernet" in m for m in second["messages"])
    assert len(_supernets(session_factory)) == 1

    # A corrupt artifact is trained again, and the search still succeeds.
    artifact.write_bytes(b"not a supernet")
    third = _run(session_factory, budget_ms=budget * 1.1)
    assert third["status"] == "succeeded", third["error"]
    assert any("unusable" in m for m in third["messages"])
    assert any("training a supernet" in m for m in third["messages"])
    assert _supernets(session_factory) == [(key, "ready", path)]


@pytest.mark.usefixtures("local_device")
def test_a_supernet_search_needs_three_splits(session_factory) -> None:
    from nas.datasets import DatasetError

    with pytest.raises(DatasetError, match="at least 3 images"):
        submit_search(session_factory, _request(strategy="supernet", dataset="synthetic:classes=3,per_class=2"))
