"""No response names a place on the server's disk: uploaded datasets are shown by id, searches by what
they found, architectures by their files' kinds. A real search on an uploaded dataset is read through
every endpoint (and its event stream), and none of the artifact directory, the datasets directory,
the test's temporary directory or the system's temporary directory appears in what comes back; the
same for what a worker might write with a path in it (errors, event messages and data, results)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nas.datasets import synthetic_dataset
from nas.store import (
    ArchitectureRepository,
    CandidateData,
    CandidateRepository,
    DeviceRepository,
    EventRepository,
    SearchRepository,
    session_scope,
)
from tests.api.search_helpers import fastest_ms, read_sse, search_body, wait_finished
from tests.markers import SQLITE_ONLY


def forbidden(server, tmp_path: Path) -> list[str]:
    """Every spelling of the server's directories a response must not contain."""
    places = {Path(server.settings.artifact_dir), Path(server.settings.dataset_dir), tmp_path,
              Path(tempfile.gettempdir())}  # fmt: skip
    spellings = set()
    for place in places:
        spellings |= {str(place), str(place.resolve())}
    return sorted(spellings)


def assert_no_paths(texts: dict[str, str], paths: list[str]) -> None:
    for where, text in texts.items():
        for path in paths:
            assert path not in text, f"{where} names the server path {path!r}: {text[:2000]}"
        assert "artifact_dir" not in text, where


def dataset_npz() -> bytes:
    data = synthetic_dataset(num_classes=3, per_class=24, resolution=16, seed=5)
    buffer = io.BytesIO()
    np.savez(buffer, x=data.images.transpose(0, 2, 3, 1), y=data.labels)
    return buffer.getvalue()


def read_everything(server, search_id: str) -> dict[str, str]:
    """Every JSON body (and the event stream) that says something about the search, by where it came from."""
    alice = server.client("alice")
    texts: dict[str, str] = {}

    def get(path: str, **params) -> dict | list:
        response = alice.get(path, params=params)
        assert response.status_code == 200, response.text
        texts[f"GET {path} {params}"] = response.text
        return response.json()

    get("/v1/searches")
    search = get(f"/v1/searches/{search_id}")
    get(f"/v1/searches/{search_id}/candidates", limit=500)
    get(f"/v1/searches/{search_id}/pareto")
    get(f"/v1/searches/{search_id}/events", format="json", limit=1000)
    for architecture in get("/v1/architectures")["items"]:
        get(f"/v1/architectures/{architecture['id']}")
    for dataset in get("/v1/datasets")["items"]:
        get(f"/v1/datasets/{dataset['id']}")
    stream = read_sse(f"{server.url}/v1/searches/{search_id}/events", server.headers("alice"))
    texts["SSE"] = json.dumps([(m.event, m.data) for m in stream.messages])
    again = alice.post(f"/v1/searches/{search_id}/cancel")  # finished: 409, a problem that must not leak either
    texts["cancel"] = again.text
    assert search["status"] in ("succeeded", "failed", "cancelled")
    return texts


# Redaction happens after the database read; the search journey runs on PostgreSQL.
@SQLITE_ONLY
def test_a_search_on_an_uploaded_dataset_shows_no_server_paths(search_server, tmp_path) -> None:
    alice = search_server.client("alice")
    uploaded = alice.post("/v1/datasets", files={"file": ("mine.npz", dataset_npz())})
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["id"]
    body = search_body(dataset=dataset_id, budget_ms=round(3.0 * fastest_ms(search_server), 6))
    submitted = alice.post("/v1/searches", json=body)
    assert submitted.status_code == 202, submitted.text
    final = wait_finished(alice, submitted.json()["id"])
    assert final["status"] == "succeeded", final["error"]
    assert final["dataset"] == dataset_id and final["winner_id"]

    texts = read_everything(search_server, final["id"])
    texts["upload"], texts["submit"] = uploaded.text, submitted.text
    assert_no_paths(texts, forbidden(search_server, tmp_path))
    # ... although the worker did write there, and the database knows where.
    with session_scope(search_server.sessions) as session:
        rows = ArchitectureRepository(session).list()
        assert rows and all(str(search_server.settings.artifact_dir) in row.artifact_dir for row in rows)


def test_paths_a_worker_wrote_are_not_shown(search_server, tmp_path) -> None:
    """A worker's error, events, candidate errors and result that mention the artifact directory, the
    temporary directory and the uploaded dataset's file are shown without them."""
    alice = search_server.client("alice")
    uploaded = alice.post("/v1/datasets", files={"file": ("mine.npz", dataset_npz())})
    dataset_id = uploaded.json()["id"]
    artifacts = Path(search_server.settings.artifact_dir)
    dataset_file = str((Path(search_server.settings.dataset_dir) / f"{dataset_id}.npz").resolve())
    supernet = artifacts / "supernets" / "abc.pt"
    trial_dir = Path(tempfile.gettempdir()) / "hwnas-tune-x" / "trial"
    owner = search_server.tokens["alice"].split("_")[1]
    with session_scope(search_server.sessions) as session:
        searches = SearchRepository(session)
        row = searches.create(
            device_id=DeviceRepository(session).require("local").id, space="api_tiny", dataset=dataset_id,
            budget_ms=1.0, strategy="supernet", request=search_body(dataset=dataset_file), owner=owner,
        )  # fmt: skip
        search_id = row.public_id
        assert searches.claim_next("stand-in", stale_after_s=600).public_id == search_id
        events = EventRepository(session)
        events.add(row.id, "supernet", f"stored supernet k unusable ({supernet} is corrupt); training it again",
                   data={"file": str(supernet)})  # fmt: skip
        events.add(row.id, "start", f"searching {dataset_file} from {trial_dir}", data={"dataset": dataset_file})
        described = {"name": "w", "accuracy": 0.5, "predicted_ms": 1.0, "artifact_dir": str(artifacts / "w")}
        events.add(row.id, "done", "done", data={"winner": described, "baseline": None})
        CandidateRepository(session).add(row.id, CandidateData(
            arch_hash="0" * 64, spec={}, phase="search", status="failed", predicted_ms=1.0, params=1, madds=1,
            error=f"OSError: [Errno 2] No such file or directory: '{trial_dir / 'result.json'}'",
        ))  # fmt: skip
        searches.finish(search_id, "stand-in", "failed", result={"winner": described, "architectures": {}},
                        error=f"RuntimeError: the supernet trial ended without a usable supernet: {supernet} is "
                        f"corrupt")  # fmt: skip

    texts = read_everything(search_server, search_id)
    assert_no_paths(texts, forbidden(search_server, tmp_path))
    shown = json.loads(texts[f"GET /v1/searches/{search_id} {{}}"])
    assert "<artifacts>/supernets/abc.pt is corrupt" in shown["error"]
    assert shown["result"]["winner"] == {"name": "w", "accuracy": 0.5, "predicted_ms": 1.0, "architecture_id": None}
    assert shown["dataset"] == dataset_id and shown["request"]["dataset"] == dataset_id
    messages = [event["message"] for event in json.loads(texts[next(k for k in texts if "format" in k)])]
    assert f"searching {dataset_id} from <tmp>/hwnas-tune-x/trial" in messages


@pytest.mark.parametrize("removed", [True, False])
def test_dataset_errors_name_no_server_path(search_server, tmp_path, removed) -> None:
    """A stored dataset gone from disk, or a broken upload: the error names the dataset, not its file."""
    with search_server.client() as client:
        if removed:
            dataset_id = client.post("/v1/datasets", files={"file": ("mine.npz", dataset_npz())}).json()["id"]
            (Path(search_server.settings.dataset_dir) / f"{dataset_id}.npz").unlink()
            response = client.post("/v1/searches", json=search_body(dataset=dataset_id))
            assert response.status_code == 422 and response.json()["field"] == "dataset", response.text
        else:
            response = client.post("/v1/datasets", files={"file": ("broken.npz", b"PK\x03\x04" + bytes(200))})
            assert response.status_code == 422 and response.json()["field"] == "file", response.text
    assert_no_paths({"error": response.text}, forbidden(search_server, tmp_path))
