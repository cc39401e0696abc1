"""Every way a search request (and its read endpoints) can be wrong: a 4xx problem+json naming the
field at fault, and nothing stored. No search runs here."""

from __future__ import annotations

import math

import pytest

from nas.latency import add_device, store_lut_entries
from nas.store import DatasetRepository, SearchRepository, session_scope
from tests.api.search_helpers import fastest_ms, search_body

PROBLEM = "application/problem+json"


def problem(response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["detail"] and body["title"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def stored_searches(server) -> int:
    with session_scope(server.sessions) as session:
        return SearchRepository(session).count()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget_ms": None}, "budget_ms"),
        ({"device": None}, "device"),
        ({"dataset": None}, "dataset"),
        ({"budget_ms": "eight"}, "budget_ms"),
        ({"budget_ms": [8]}, "budget_ms"),
        ({"budget_ms": "8"}, "budget_ms"),  # numbers and flags are strict
        ({"budget_ms": True}, "budget_ms"),
        ({"seed": True}, "seed"),
        ({"resolution": "16"}, "resolution"),
        ({"netadapt": 1}, "netadapt"),
        ({"budget_ms": 0}, "budget_ms"),
        ({"budget_ms": -3.5}, "budget_ms"),
        ({"device": 7}, "device"),
        ({"device": ""}, "device"),
        ({"strategy": "genetic"}, "strategy"),
        ({"effort": "huge"}, "effort"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"resolution": 8}, "resolution"),
        ({"netadapt": "maybe"}, "netadapt"),
        ({"widths": [5.0]}, "widths"),
        ({"widths": []}, "widths"),
        ({"space": "mobilenet_v9"}, "space"),
        ({"colour": "blue"}, "colour"),
        ({"dataset": "x" * 201}, "dataset"),
        ({"test_fraction": 0.9}, "test_fraction"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"augment": "rotate"}, "augment"),
        ({"augment": True}, "augment"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(search_server, changes, field) -> None:
    body = {key: value for key, value in {**search_body(), **changes}.items() if value is not None}
    with search_server.client() as client:
        response = client.post("/v1/searches", json=body)
    found = problem(response, 422, field)
    assert any(error["field"] == field for error in found.get("errors", [found]))
    assert stored_searches(search_server) == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_budget_that_is_not_finite_is_422(search_server, value) -> None:
    raw = '{"device": "local", "space": "api_tiny", "dataset": "digits", "budget_ms": %s}' % value  # noqa: UP031
    with search_server.client() as client:
        response = client.post("/v1/searches", content=raw, headers={"Content-Type": "application/json"})
    assert "budget_ms" in problem(response, 422, "budget_ms")["detail"]
    assert stored_searches(search_server) == 0


@pytest.mark.parametrize(
    ("content", "status", "field"),
    [
        ('{"device": "local", "budget_ms": 5', 400, "body"),
        ("not json at all", 400, "body"),
        ("[1, 2, 3]", 422, "body"),
        ('"a string"', 422, "body"),
        ("", 422, "body"),
    ],
)
def test_a_malformed_body_is_refused(search_server, content, status, field) -> None:
    with search_server.client() as client:
        response = client.post("/v1/searches", content=content, headers={"Content-Type": "application/json"})
    problem(response, status, field)
    assert stored_searches(search_server) == 0


def test_a_budget_below_the_fastest_reachable_latency_says_the_fastest(search_server) -> None:
    fastest = fastest_ms(search_server)
    with search_server.client() as client:
        response = client.post("/v1/searches", json=search_body(budget_ms=fastest / 2))
    body = problem(response, 422, "budget_ms")
    assert math.isclose(body["fastest_ms"], fastest, rel_tol=1e-9)
    assert f"{fastest:.4g}" in body["detail"] and "smallest latency" in body["detail"]
    assert stored_searches(search_server) == 0


def test_unknown_device_is_404_naming_device(search_server) -> None:
    with search_server.client() as client:
        response = client.post("/v1/searches", json=search_body(device="pixel-99"))
    assert "pixel-99" in problem(response, 404, "device")["detail"]
    assert stored_searches(search_server) == 0


def test_a_remote_device_whose_lut_misses_keys_is_422_with_the_count_and_how_to_profile(
    search_server, api_search_lut
) -> None:
    add_device(search_server.sessions, "phone", threads=1, local=False, facts={"soc": "test"})
    store_lut_entries(search_server.sessions, "phone", dict(list(api_search_lut.items())[:5]))
    with search_server.client() as client:
        response = client.post("/v1/searches", json=search_body(device="phone"))
    body = problem(response, 422, "resolution")
    assert body["missing_keys"] == len(api_search_lut) - 5
    assert "kit" in body["detail"] and "deployment scope" in body["detail"]
    assert body["profile"]["kit"].startswith("/v1/devices/phone/kit?space=")
    assert stored_searches(search_server) == 0


def test_a_deployment_resolution_the_remote_lut_lacks_is_422_naming_resolution(search_server, api_search_lut) -> None:
    """The phone's table covers the space at 16 px; a search deployed at 48 px names the scope to profile."""
    add_device(search_server.sessions, "phone", threads=1, local=False)
    store_lut_entries(search_server.sessions, "phone", api_search_lut)
    with search_server.client() as client:
        response = client.post("/v1/searches", json=search_body(device="phone", resolution=48))
        body = problem(response, 422, "resolution")
        assert "at 48 px" in body["detail"] and body["profile"]["resolution"] == 48
        response = client.post("/v1/searches", json=search_body(device="phone", resolution=16, train_resolution=48))
        assert "above the deployment resolution" in problem(response, 422, "train_resolution")["detail"]
    assert stored_searches(search_server) == 0


@pytest.mark.parametrize(
    ("dataset", "status"),
    [
        ("/etc/passwd", 422),
        ("../secrets.npz", 422),
        ("data.npz", 422),
        ("images.ZIP", 422),
        ("C:\\data\\x.npz", 422),
        ("synthetic:classes=3/../../x.npz", 422),
        ("imagenet", 422),
        ("synthetic:classes=many", 422),
        ("synthetic:colour=red", 422),
        ("synthetic:classes=1", 422),
        ("synthetic:classes=1000,per_class=1000", 422),  # refused before anything is allocated
        ("digits:resolution=4000", 422),
        ("synthetic:per_class=2", 422),  # too few images per class for train/validation/test
        ("0123456789abcdef0123456789abcdef", 404),
    ],
)
def test_bad_datasets_are_refused_naming_dataset(search_server, dataset, status) -> None:
    with search_server.client() as client:
        response = client.post("/v1/searches", json=search_body(dataset=dataset))
    problem(response, status, "dataset")
    assert stored_searches(search_server) == 0


def test_another_keys_dataset_reads_as_unknown(search_server) -> None:
    with session_scope(search_server.sessions) as session:
        bob = next(k for k in _key_ids(session) if k[1] == "bob")[0]
        row = DatasetRepository(session).add(
            owner=bob, name="bobs", kind="npz", path="/nonexistent/bobs.npz", size_bytes=1, sha256="0" * 64,
            num_classes=3, num_images=6, image_shape=[1, 16, 16],
        )  # fmt: skip
        dataset_id = row.public_id
    with search_server.client("alice") as client:
        response = client.post("/v1/searches", json=search_body(dataset=dataset_id))
    problem(response, 404, "dataset")
    assert stored_searches(search_server) == 0


def _key_ids(session) -> list[tuple[str, str]]:
    from nas.store import ApiKeyRepository

    return [(k.key_id, k.name) for k in ApiKeyRepository(session).list()]


def test_searches_need_a_key(search_server) -> None:
    import httpx

    response = httpx.post(f"{search_server.url}/v1/searches", json=search_body())
    problem(response, 401, "Authorization")
    assert stored_searches(search_server) == 0


# --- the read endpoints ----------------------------------------------------------------------------


@pytest.fixture
def queued(search_server) -> str:
    """Alice's search, stored cancelled (no worker ever runs it), to aim bad queries at."""
    from nas.store import DeviceRepository

    alice = search_server.tokens["alice"].split("_")[1]
    with session_scope(search_server.sessions) as session:
        device = DeviceRepository(session).require("local")
        searches = SearchRepository(session)
        row = searches.create(device_id=device.id, space="api_tiny", dataset="digits", budget_ms=1.0,
                              strategy="random", request=search_body(), owner=alice)  # fmt: skip
        searches.request_cancel(row.public_id)
        return row.public_id


@pytest.mark.parametrize(
    ("suffix", "params", "field"),
    [
        ("/candidates", {"sort": "accuracy!"}, "sort"),
        ("/candidates", {"sort": "params"}, "sort"),
        ("/candidates", {"limit": 0}, "limit"),
        ("/candidates", {"limit": 501}, "limit"),
        ("/candidates", {"limit": "ten"}, "limit"),
        ("/candidates", {"offset": -1}, "offset"),
        ("/candidates", {"phase": "warmup"}, "phase.0"),
        ("/candidates", {"status": "great"}, "status.0"),
        ("/pareto", {"phase": "warmup"}, "phase.0"),
        ("/events", {"format": "xml"}, "format"),
        ("/events", {"after": -2}, "after"),
        ("/events", {"format": "json", "limit": 0}, "limit"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(search_server, queued, suffix, params, field) -> None:
    with search_server.client() as client:
        response = client.get(f"/v1/searches/{queued}{suffix}", params=params)
    problem(response, 422, field)


def test_a_bad_last_event_id_is_422(search_server, queued) -> None:
    with search_server.client() as client:
        response = client.get(f"/v1/searches/{queued}/events", headers={"Last-Event-ID": "yesterday"})
    problem(response, 422, "Last-Event-ID")


@pytest.mark.parametrize(("params", "field"), [({"status": "done"}, "status.0"), ({"limit": 1000}, "limit")])
def test_bad_list_parameters_are_422(search_server, params, field) -> None:
    with search_server.client() as client:
        problem(client.get("/v1/searches", params=params), 422, field)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/v1/searches/nope", "search_id"),
        ("GET", "/v1/searches/nope/candidates", "search_id"),
        ("GET", "/v1/searches/nope/pareto", "search_id"),
        ("GET", "/v1/searches/nope/events", "search_id"),
        ("GET", "/v1/searches/nope/events?format=json", "search_id"),
        ("POST", "/v1/searches/nope/cancel", "search_id"),
        ("GET", "/v1/architectures/nope", "architecture_id"),
        ("GET", "/v1/architectures/nope/onnx", "architecture_id"),
        ("GET", "/v1/architectures/nope/weights", "architecture_id"),
        ("GET", "/v1/architectures/nope/spec", "architecture_id"),
        ("GET", "/v1/datasets/nope", "dataset"),
    ],
)
def test_unknown_ids_are_404(search_server, method, path, field) -> None:
    with search_server.client() as client:
        problem(client.request(method, path), 404, field)


def test_the_empty_lists_are_pages(search_server) -> None:
    with search_server.client() as client:
        for path in ("/v1/searches", "/v1/architectures", "/v1/datasets"):
            assert client.get(path, params={"limit": 5, "offset": 10}).json() == {
                "items": [], "total": 0, "limit": 5, "offset": 10
            }  # fmt: skip


def test_stored_non_finite_numbers_read_as_null(search_server, queued) -> None:
    """NaN has no JSON spelling: a candidate holding one is served with null, never a 500."""
    from nas.store import CandidateData, CandidateRepository

    with session_scope(search_server.sessions) as session:
        search = SearchRepository(session).require(queued)
        for index, accuracy in enumerate((0.5, float("nan"))):
            CandidateRepository(session).add(search.id, CandidateData(
                arch_hash=f"{index:064d}", spec={}, phase="search", status="completed", predicted_ms=1.0 + index,
                params=10, madds=100, accuracy=accuracy, train_seconds=float("inf"),
            ))  # fmt: skip
    with search_server.client() as client:
        page = client.get(f"/v1/searches/{queued}/candidates", params={"sort": "-accuracy"})
        front = client.get(f"/v1/searches/{queued}/pareto")
    assert page.status_code == 200, page.text
    assert sorted(c["accuracy"] or 0 for c in page.json()["items"]) == [0, 0.5]  # NaN sorts by backend
    assert all(c["train_seconds"] is None and c["spec"] == "" for c in page.json()["items"])
    assert front.status_code == 200 and [c["accuracy"] for c in front.json()["items"]] == [0.5]


def test_a_supernet_search_on_a_space_that_cannot_share_weights_is_422_naming_strategy(
    search_server, api_search_space, monkeypatch
) -> None:
    from dataclasses import replace

    from search_spaces import space as space_module

    even = replace(api_search_space, name="even_kernels", kernels=(3, 4))  # a 4x4 kernel has no centre
    monkeypatch.setitem(space_module.SPACES, even.name, even)
    with search_server.client() as client:
        response = client.post("/v1/searches", json=search_body(space=even.name, strategy="supernet"))
        assert "even" in problem(response, 422, "strategy")["detail"]
    assert stored_searches(search_server) == 0
