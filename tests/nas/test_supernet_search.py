"""The `supernet` strategy through the worker, for real: the supernet trained as a Ray Tune trial and
stored (row + file), evolution over members scored with inherited weights (every one a candidate), a
short list trained from scratch; a second search on the same data reuses the supernet; a corrupt
artifact is trained again, never a failure."""

from pathlib import Path

import pytest
import torch

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
            "initial_weights": search.result["winner"]["initial_weights"],
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
    # A member of the space (not narrowed by NetAdapt) starts its final training from the supernet's weights.
    member = first["winner"][0] in {c[3] for c in first["candidates"] if c[0] == "search"}
    assert first["initial_weights"] == ("supernet" if member else "random")
    assert any("starts from the supernet's weights" in m for m in first["messages"]) == member
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


def test_the_winner_starts_from_the_weights_it_inherits() -> None:
    """`inherited_network`: a member copied out of the supernet scores exactly its inherited accuracy
    (the final training starts there); a network NetAdapt narrowed is no member and has no such start."""
    import numpy as np

    from nas.evaluation.training import evaluate_accuracy
    from nas.netadapt.groups import apply_widths, candidate_widths, prunable_groups
    from nas.search.runner import load_split
    from nas.search.supernet_search import SupernetPhase
    from nas.supernet import InheritedEvaluator, SuperNet
    from tests.nas.test_search_e2e import TEST_SPACE

    request = _request(strategy="supernet")
    split = load_split(request)
    phase = SupernetPhase(request, TEST_SPACE, None, split, None, None, None, None, None)
    member = TEST_SPACE.decode(TEST_SPACE.sample_population(1, np.random.default_rng(4), np.int64)[0])
    assert phase.inherited_network(member) is None  # no supernet yet
    torch.manual_seed(0)
    phase.supernet = SuperNet(TEST_SPACE)
    network = phase.inherited_network(member)
    assert network is not None
    expected = InheritedEvaluator(phase.supernet, split, seed=request.seed).score(member).accuracy
    assert evaluate_accuracy(network, split.x_val, split.y_val, 16) == expected
    group = prunable_groups(member)[0]
    narrowed = apply_widths(member, group, candidate_widths(member, group)[0])
    assert narrowed.content_hash() != member.content_hash() and phase.inherited_network(narrowed) is None
