"""The service's shared behaviour: health is open, everything else needs a valid key, errors are
RFC 9457 problem+json naming the field, never a traceback."""

import httpx


def test_health_is_open_and_checks_the_database(live_server) -> None:
    response = httpx.get(f"{live_server.url}/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] in ("sqlite", "postgresql")
    assert body["queued_searches"] == 0


def test_no_or_wrong_key_is_401_problem(live_server) -> None:
    for headers in ({}, {"Authorization": "Bearer hwnas_nope_nope"}, {"Authorization": "Bearer garbage"}):
        response = httpx.get(f"{live_server.url}/v1/spaces", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert body["status"] == 401 and body["field"] == "Authorization"


def test_unknown_route_is_a_404_problem(live_server) -> None:
    response = httpx.get(f"{live_server.url}/v1/nothing-here", headers=live_server.headers())
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_spaces_are_listed_and_an_unknown_one_is_404(live_server) -> None:
    with live_server.client() as client:
        names = [s["name"] for s in client.get("/v1/spaces").json()]
        assert "mobilenet_v3_small" in names and "mobilenet_v3_large" in names
        detail = client.get("/v1/spaces/mobilenet_v3_small").json()
        assert detail["num_block_keys"] > 0 and detail["kernels"]
        missing = client.get("/v1/spaces/nope")
    assert missing.status_code == 404 and missing.json()["field"] == "name"


def test_a_revoked_key_stops_working_once_its_cache_entry_expires(live_server) -> None:
    import time

    from api.auth import KeyCache
    from nas.store import ApiKeyRepository, session_scope

    live_server.app.state.key_cache = KeyCache(ttl_s=0.2)
    with session_scope(live_server.sessions) as session:
        identity, token = ApiKeyRepository(session).create("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{live_server.url}/v1/spaces", headers=headers).status_code == 200
    with session_scope(live_server.sessions) as session:
        assert ApiKeyRepository(session).revoke(identity.key_id)
    time.sleep(0.3)
    response = httpx.get(f"{live_server.url}/v1/spaces", headers=headers)
    assert response.status_code == 401 and response.json()["field"] == "Authorization"


def test_a_running_app_keeps_its_start_up_objects_out_of_full_collections(live_server) -> None:
    """Full garbage collections walked everything torch, onnx and the app allocated at import (~230 ms
    with every request waiting, docs/benchmarks.md); the running app has frozen them."""
    import gc

    assert gc.get_freeze_count() > 10_000
    assert httpx.get(f"{live_server.url}/v1/health").status_code == 200
