"""Tenants over HTTP, on SQLite and PostgreSQL: devices have owners.

Alice registers a phone; Bob (another non-admin key) may read it and search on it while it is shared,
but every write (LUT upload, end-to-end measurements, measurement-job answers) is a 403 naming
`device` that stores nothing. A private device is a 404 to Bob everywhere (its existence is not
leaked). A device the operator registered from the CLI (no owner) is written by admins only.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from latency_lut.kit_runner import machine_environment
from latency_lut.table import LutEntry
from nas.calibration_set import calibration_networks
from nas.latency import add_device as add_device_directly
from nas.latency import store_lut_entries
from nas.measurement_jobs import request_measurement
from nas.store import DeviceRepository, LutRepository, MeasurementJobRepository, MeasurementRepository, session_scope
from search_spaces import space as space_module
from tests.api.test_devices_journey import TINY, add_device, problem


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch, tiny_lut_space):
    monkeypatch.setitem(space_module.SPACES, tiny_lut_space.name, tiny_lut_space)
    return tiny_lut_space


def _counts(live_server, name: str) -> tuple[int, int]:
    with session_scope(live_server.sessions) as session:
        device_id = DeviceRepository(session).require(name).id
        return LutRepository(session).count(device_id), MeasurementRepository(session).count(device_id)


def _writes(name: str, key: str, job_id: str, arch_hash: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every write a key can attempt on a device's measurements: (method, path, request kwargs)."""
    measurement = {"key": key, "median_ms": 0.05, "iqr_ms": 0.001, "runs": 9, "runtime_version": "1.20.0"}
    result = {"median_ms": 0.5, "iqr_ms": 0.01, "runs": 9, "runtime_version": "1.20.0", "sha256": "a" * 64,
              "environment": machine_environment(1)}  # fmt: skip
    network = {"arch_hash": arch_hash, "median_ms": 0.5, "iqr_ms": 0.01, "runs": 9, "runtime_version": "1.20.0"}
    return [
        ("POST", f"/v1/devices/{name}/lut", {"json": {"measurements": [measurement], "threads": 1}}),
        ("POST", f"/v1/devices/{name}/lut", {"files": {"file": ("results.json", b'{"kit_id": "x", "results": []}')}}),
        ("POST", f"/v1/devices/{name}/networks", {"params": TINY, "json": {"measurements": [network]}}),
        ("POST", f"/v1/devices/{name}/jobs/results", {"files": {"file": ("results.json", b"{}")}}),
        ("POST", f"/v1/devices/{name}/jobs/{job_id}/result", {"json": result}),
    ]


def test_only_the_owner_or_an_admin_writes_a_device(live_server, tiny_space) -> None:
    with live_server.client("alice") as alice, live_server.client("bob") as bob, live_server.client("admin") as admin:
        created = add_device(alice, "alice-phone")
        alice_id = live_server.tokens["alice"].split("_")[1]  # hwnas_<key_id>_<secret>
        assert (created["owner"], created["shared"], created["local"]) == (alice_id, True, False)

        key = tiny_space.block_keys()[0]
        calibration, _ = calibration_networks(tiny_space)
        job_id = request_measurement(live_server.sessions, "alice-phone", None, calibration[0], "winner")
        arch_hash = calibration[1].content_hash()

        # Bob reads it (device, LUT, missing keys, jobs) ...
        assert bob.get("/v1/devices/alice-phone").json()["owner"] == alice_id
        assert "alice-phone" in {d["name"] for d in bob.get("/v1/devices").json()}
        assert bob.get("/v1/devices/alice-phone/lut").status_code == 200
        assert bob.get("/v1/devices/alice-phone/lut/missing", params=TINY).status_code == 200
        assert bob.get("/v1/devices/alice-phone/jobs").status_code == 200
        # ... and every write of his is a 403 naming the device, storing nothing
        before = _counts(live_server, "alice-phone")
        for method, path, kwargs in _writes("alice-phone", key, job_id, arch_hash):
            body = problem(bob.request(method, path, **kwargs), 403, "device")
            assert "owner" in body["detail"]
        assert _counts(live_server, "alice-phone") == before
        with session_scope(live_server.sessions) as session:
            assert MeasurementJobRepository(session).get(job_id).status == "pending"

        # the owner and an admin write it
        measurement = _writes("alice-phone", key, job_id, arch_hash)[0][2]
        assert alice.post("/v1/devices/alice-phone/lut", **measurement).status_code == 200
        other_key = tiny_space.block_keys()[1]
        assert admin.post("/v1/devices/alice-phone/lut", **_writes("alice-phone", other_key, job_id, arch_hash)[0][2])
        assert _counts(live_server, "alice-phone")[0] == before[0] + 2


def test_a_private_device_is_invisible_to_other_keys(live_server, tiny_space) -> None:
    with live_server.client("alice") as alice, live_server.client("bob") as bob, live_server.client("admin") as admin:
        assert add_device(alice, "alice-secret", shared=False)["shared"] is False
        key = tiny_space.block_keys()[0]
        for path in ("/v1/devices/alice-secret", "/v1/devices/alice-secret/lut", "/v1/devices/alice-secret/jobs"):
            problem(bob.get(path), 404, "device")
            assert alice.get(path).status_code == 200 and admin.get(path).status_code == 200
        problem(bob.get("/v1/devices/alice-secret/kit", params=TINY), 404, "device")
        assert "alice-secret" not in {d["name"] for d in bob.get("/v1/devices").json()}
        assert "alice-secret" in {d["name"] for d in admin.get("/v1/devices").json()}
        for method, path, kwargs in _writes("alice-secret", key, "0" * 32, "f" * 64):
            problem(bob.request(method, path, **kwargs), 404, "device")
        search = {"device": "alice-secret", "budget_ms": 5.0, "dataset": "digits", "space": "tiny"}
        problem(bob.post("/v1/searches", json=search), 404, "device")
        # Bob cannot take the name either: it exists (a 409), though he cannot see it
        problem(bob.post("/v1/devices", json={"name": "alice-secret"}), 409, "name")
        assert _counts(live_server, "alice-secret") == (0, 0)


def test_an_operator_device_is_written_by_admins_only(live_server, tiny_space) -> None:
    add_device_directly(live_server.sessions, "lab-board", threads=1, local=False)
    key = tiny_space.block_keys()[0]
    writes = _writes("lab-board", key, "0" * 32, "f" * 64)
    with live_server.client("alice") as alice, live_server.client("admin") as admin:
        assert alice.get("/v1/devices/lab-board").json()["owner"] is None
        problem(alice.request(writes[0][0], writes[0][1], **writes[0][2]), 403, "device")
        assert admin.request(writes[0][0], writes[0][1], **writes[0][2]).status_code == 200
    assert _counts(live_server, "lab-board") == (1, 0)


def test_a_shared_device_can_be_searched_by_another_key(search_server) -> None:
    with search_server.client("alice") as alice, search_server.client("bob") as bob:
        add_device(alice, "alice-cpu", local=True)
        # the tiny space's table, as if Alice had profiled it
        with session_scope(search_server.sessions) as session:
            local = DeviceRepository(session).require("local")
            entries = LutRepository(session).entries(local.id)
        store_lut_entries(
            search_server.sessions,
            "alice-cpu",
            {k: LutEntry(e.median_ms, e.iqr_ms, e.runs, e.runtime_version) for k, e in entries.items()},
        )
        submitted = bob.post(
            "/v1/searches",
            json={"device": "alice-cpu", "budget_ms": 50.0, "dataset": "synthetic:classes=3,per_class=24,resolution=16",
                  "space": "api_tiny", "effort": "smoke", "resolution": 16, "baseline": False},
        )  # fmt: skip
        assert submitted.status_code == 202, submitted.text
        search_id = submitted.json()["id"]
        # the search is Bob's: Alice (the device's owner) does not see it
        problem(alice.get(f"/v1/searches/{search_id}"), 404)
        assert bob.post(f"/v1/searches/{search_id}/cancel").status_code in (200, 202, 409)


def test_a_device_registered_by_another_key_keeps_its_owner_across_reads(live_server) -> None:
    with live_server.client("bob") as bob, live_server.client("admin") as admin:
        mine = add_device(bob, "bob-phone", facts={"soc": "x"})
        listed = {d["name"]: d for d in admin.get("/v1/devices").json()}
        assert listed["bob-phone"]["owner"] == mine["owner"] and mine["owner"]
        response: httpx.Response = admin.get("/v1/devices/bob-phone")
        assert response.json() == {**mine, "lut_entries": 0, "e2e_measurements": 0} | {
            k: v for k, v in response.json().items() if k in ("environments", "coverage")
        }
