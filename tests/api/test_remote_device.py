"""A remote device (a phone) over HTTP, on SQLite and PostgreSQL: the server's calibration networks
measured through the agent's routes or inside a kit, the accuracy report they make possible, and
measurement jobs answered by HTTP or by a verification kit. Every refusal is a 4xx problem naming
the field, and the database is checked afterwards: nothing was stored.

Timings are real ONNX Runtime measurements of the tiny 32 px space's networks.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from latency_lut import kit_runner
from nas import calibration_set as calibration_module
from nas.calibration_set import calibration_networks
from nas.latency import add_device as add_device_directly
from nas.latency import load_predictor, store_lut_entries
from nas.measurement_jobs import request_measurement
from nas.store import DeviceRepository, MeasurementJobRepository, MeasurementRepository, session_scope
from search_spaces import space as space_module
from tests.api.test_devices_journey import TINY, add_device, problem, run_kit_zip, upload

N_CALIBRATION, N_HELD_OUT = 8, 6


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch, tiny_lut_space):
    """The tiny 32 px space registered in the server, with a smaller calibration set (fast tests)."""
    monkeypatch.setitem(space_module.SPACES, tiny_lut_space.name, tiny_lut_space)
    monkeypatch.setattr(calibration_module, "CALIBRATION_NETWORKS", N_CALIBRATION)
    monkeypatch.setattr(calibration_module, "HELD_OUT_NETWORKS", N_HELD_OUT)
    return tiny_lut_space


@pytest.fixture
def api(live_server):
    with live_server.client() as client:
        yield client


def _e2e_count(live_server, name: str) -> int:
    with session_scope(live_server.sessions) as session:
        return MeasurementRepository(session).count(DeviceRepository(session).require(name).id)


def _time_onnx(content: bytes, shape: str, policy) -> kit_runner.Measurement:
    session = kit_runner.timing_session(content, 1)
    return kit_runner.time_session(session, tuple(int(n) for n in shape.split(",")), policy)


def test_calibration_set_is_fixed_per_scope_and_split(tiny_space) -> None:
    calibration, held_out = calibration_networks(tiny_space)
    again = calibration_networks(tiny_space)
    assert (len(calibration), len(held_out)) == (N_CALIBRATION, N_HELD_OUT)
    assert [s.content_hash() for s in calibration + held_out] == [s.content_hash() for s in again[0] + again[1]]
    assert not {s.content_hash() for s in calibration} & {s.content_hash() for s in held_out}


def test_agent_routes_calibrate_a_remote_device_and_refuse_other_networks(
    live_server, api, tiny_space, tiny_lut, fast_policy
) -> None:
    add_device(api, "phone", runtime_version="1.20.0")
    store_lut_entries(live_server.sessions, "phone", tiny_lut)
    assert problem(api.get("/v1/devices/phone/accuracy", params=TINY), 409, "device")

    missing = api.get("/v1/devices/phone/networks/missing", params=TINY).json()
    assert (missing["total"], len(missing["missing"])) == (N_CALIBRATION + N_HELD_OUT,) * 2
    assert sum(network["held_out"] for network in missing["missing"]) == N_HELD_OUT

    environment = kit_runner.machine_environment(1)
    measurements = []
    for network in missing["missing"]:
        response = api.get(f"/v1/devices/phone/networks/{network['arch_hash']}/onnx", params=TINY)
        assert response.status_code == 200, response.text
        assert hashlib.sha256(response.content).hexdigest() == response.headers["x-hwnas-sha256"]
        assert response.headers["x-hwnas-input-shape"] == ",".join(map(str, network["input_shape"]))
        timed = _time_onnx(response.content, response.headers["x-hwnas-input-shape"], fast_policy)
        measurements.append(
            {
                "arch_hash": network["arch_hash"],
                "median_ms": timed.median_ms,
                "iqr_ms": timed.iqr_ms,
                "runs": timed.runs,
                "runtime_version": timed.runtime_version,
            }
        )

    # A network outside the set, anywhere in the batch, refuses the whole batch.
    foreign = {**measurements[0], "arch_hash": "f" * 20}
    refused = api.post("/v1/devices/phone/networks", params=TINY, json={"measurements": [*measurements, foreign]})
    problem(refused, 422, f"measurements.{len(measurements)}.arch_hash")
    problem(api.get(f"/v1/devices/phone/networks/{'f' * 64}/onnx", params=TINY), 404, "arch_hash")
    bad_environment = {"measurements": measurements, "environment": {"cpu": "x" * 500}}
    problem(api.post("/v1/devices/phone/networks", params=TINY, json=bad_environment), 422, "environment")
    assert _e2e_count(live_server, "phone") == 0

    first = api.post(
        "/v1/devices/phone/networks", params=TINY, json={"measurements": measurements[:5], "environment": environment}
    ).json()
    assert (first["stored"], first["missing"], first["calibrated"]) == (5, len(measurements) - 5, False)
    last = api.post(
        "/v1/devices/phone/networks", params=TINY, json={"measurements": measurements[5:], "environment": environment}
    ).json()
    assert (last["missing"], last["calibrated"]) == (0, True)

    report = api.get("/v1/devices/phone/accuracy", params=TINY)
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["n_calibration"], body["n_evaluation"]) == (N_CALIBRATION, N_HELD_OUT)
    assert body["scores"]["calibrated"]["n"] == N_HELD_OUT
    assert load_predictor(live_server.sessions, "phone", tiny_space).calibration.n_measurements == N_CALIBRATION
    device = api.get("/v1/devices/phone").json()
    assert {"environment": environment, "lut_entries": 0, "e2e_measurements": len(measurements)} in device[
        "environments"
    ]
    assert api.get("/v1/devices/phone/networks/missing", params=TINY).json()["missing"] == []


def test_kit_with_calibration_networks_run_by_the_runner_then_accuracy(
    live_server, api, tiny_space, tmp_path: Path
) -> None:
    n_keys = len(tiny_space.block_keys())
    n_networks = N_CALIBRATION + N_HELD_OUT
    add_device(api, "pixel", runtime_version="1.20.0")
    kit = api.get("/v1/devices/pixel/kit", params={**TINY, "quick": True})
    assert kit.status_code == 200, kit.text
    assert kit.headers["x-hwnas-kit-models"] == str(n_keys + n_networks)
    with zipfile.ZipFile(io.BytesIO(kit.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    networks = [model for model in manifest["models"] if model["key"].startswith("net:")]
    assert len(networks) == n_networks and all(model["spec"]["resolution"] == 32 for model in networks)

    results = run_kit_zip(kit.content, tmp_path / "phone")
    assert results["environment"]["threads"] == "1"
    tampered = json.loads(json.dumps(results))
    tampered["results"][-1]["sha256"] = "0" * 64
    body = problem(upload(api, "pixel", tampered), 422)
    assert body["field"] == f"results.{len(results['results']) - 1}.sha256"
    assert api.get("/v1/devices/pixel").json()["lut_entries"] == 0 and _e2e_count(live_server, "pixel") == 0

    stored = upload(api, "pixel", results, **TINY)
    assert stored.status_code == 200, stored.text
    assert (stored.json()["imported"], stored.json()["networks_imported"]) == (n_keys, n_networks)
    report = api.get("/v1/devices/pixel/accuracy", params=TINY)
    assert report.status_code == 200, report.text
    assert report.json()["scores"]["calibrated"]["n"] == N_HELD_OUT
    environments = api.get("/v1/devices/pixel").json()["environments"]
    assert environments == [
        {"environment": results["environment"], "lut_entries": n_keys, "e2e_measurements": n_networks}
    ]
    # Everything is measured now: a new kit has nothing to hold.
    assert problem(api.get("/v1/devices/pixel/kit", params=TINY), 409, "space")


def _file_jobs(live_server, tiny_space) -> tuple[str, str, str]:
    """Two jobs of device "phone" and one of device "other"."""
    alice = live_server.tokens["alice"].split("_")[1]  # the devices are Alice's: she answers their jobs
    add_device_directly(live_server.sessions, "phone", threads=1, local=False, owner=alice)
    add_device_directly(live_server.sessions, "other", threads=1, local=False, owner=alice)
    calibration, held_out = calibration_networks(tiny_space)
    return (
        request_measurement(live_server.sessions, "phone", None, calibration[0], "winner"),
        request_measurement(live_server.sessions, "phone", None, calibration[1], "baseline"),
        request_measurement(live_server.sessions, "other", None, held_out[0], "winner"),
    )


def _job_row(live_server, job_id: str) -> Any:
    with session_scope(live_server.sessions) as session:
        return MeasurementJobRepository(session).get(job_id)


def test_jobs_over_http_and_every_refusal_stores_nothing(live_server, api, tiny_space, fast_policy) -> None:
    winner, baseline, foreign = _file_jobs(live_server, tiny_space)
    page = api.get("/v1/devices/phone/jobs", params={"status": "pending"}).json()
    assert [job["id"] for job in page["items"]] == [winner, baseline] and page["total"] == 2
    assert api.get("/v1/devices/phone/jobs", params={"limit": 1, "offset": 1}).json()["items"][0]["id"] == baseline
    problem(api.get("/v1/devices/phone/jobs", params={"status": "lost"}), 422, "status")

    onnx = api.get(f"/v1/devices/phone/jobs/{winner}/onnx")
    assert onnx.status_code == 200, onnx.text
    digest = hashlib.sha256(onnx.content).hexdigest()
    assert digest == onnx.headers["x-hwnas-sha256"]
    timed = _time_onnx(onnx.content, onnx.headers["x-hwnas-input-shape"], fast_policy)
    result = {
        "median_ms": timed.median_ms,
        "iqr_ms": timed.iqr_ms,
        "runs": timed.runs,
        "runtime_version": timed.runtime_version,
        "sha256": digest,
        "environment": kit_runner.machine_environment(1),
    }

    problem(api.post(f"/v1/devices/phone/jobs/{'0' * 32}/result", json=result), 404, "job_id")
    problem(api.post("/v1/devices/phone/jobs/not-a-job/result", json=result), 404, "job_id")
    problem(api.post(f"/v1/devices/phone/jobs/{foreign}/result", json=result), 404, "job_id")
    problem(api.get(f"/v1/devices/phone/jobs/{foreign}/onnx"), 404, "job_id")
    problem(api.post(f"/v1/devices/phone/jobs/{winner}/result", json={**result, "sha256": "a" * 64}), 422, "sha256")
    problem(api.post(f"/v1/devices/phone/jobs/{winner}/result", json={**result, "median_ms": 0}), 422, "median_ms")
    problem(api.post(f"/v1/devices/phone/jobs/{winner}/result", json={**result, "iqr_ms": -1.0}), 422, "iqr_ms")
    nan = json.dumps({**result, "median_ms": float("inf")})
    infinite = api.post(
        f"/v1/devices/phone/jobs/{winner}/result", content=nan, headers={"content-type": "application/json"}
    )
    assert infinite.status_code in (400, 422) and infinite.headers["content-type"].startswith("application/problem")
    assert [_job_row(live_server, job).status for job in (winner, baseline, foreign)] == ["pending"] * 3
    assert _job_row(live_server, winner).median_ms is None

    answered = api.post(f"/v1/devices/phone/jobs/{winner}/result", json=result)
    assert answered.status_code == 200, answered.text
    assert (answered.json()["status"], answered.json()["median_ms"]) == ("done", timed.median_ms)
    again = problem(api.post(f"/v1/devices/phone/jobs/{winner}/result", json={**result, "median_ms": 9.0}), 409)
    assert again["field"] == "job_id" and again["status_now"] == "done"
    assert _job_row(live_server, winner).median_ms == timed.median_ms
    assert [job["id"] for job in api.get("/v1/devices/phone/jobs", params={"status": "pending"}).json()["items"]] == [
        baseline
    ]


def test_verification_kit_answers_jobs_and_refuses_other_networks(live_server, api, tiny_space, tmp_path: Path) -> None:
    winner, baseline, foreign = _file_jobs(live_server, tiny_space)
    kit = api.get("/v1/devices/phone/jobs/kit", params={"quick": True})
    assert kit.status_code == 200, kit.text
    assert kit.headers["x-hwnas-kit-models"] == "2"
    results = run_kit_zip(kit.content, tmp_path / "phone", in_process=True)
    assert {r["key"] for r in results["results"]} == {f"job:{winner}", f"job:{baseline}"}

    def jobs_upload(payload: Any, device: str = "phone") -> Any:
        files = {"file": ("results.json", json.dumps(payload).encode(), "application/json")}
        return api.post(f"/v1/devices/{device}/jobs/results", files=files)

    other_network = json.loads(json.dumps(results))
    other_network["results"].append({**results["results"][0], "key": f"job:{foreign}"})
    problem(jobs_upload(other_network), 422, f"results.{len(results['results'])}.key")
    wrong_checksum = json.loads(json.dumps(results))
    wrong_checksum["results"][0]["sha256"] = "1" * 64
    problem(jobs_upload(wrong_checksum), 422, "results.0.sha256")
    problem(jobs_upload(results, device="other"), 422, "kit_id")  # another device's kit
    assert problem(upload(api, "phone", results), 422)["detail"].count("verification kit") == 1
    assert [_job_row(live_server, job).status for job in (winner, baseline, foreign)] == ["pending"] * 3

    stored = jobs_upload(results)
    assert stored.status_code == 200, stored.text
    assert (sorted(stored.json()["answered"]), stored.json()["skipped"]) == (sorted([winner, baseline]), [])
    assert [_job_row(live_server, job).status for job in (winner, baseline, foreign)] == ["done", "done", "pending"]
    assert _job_row(live_server, winner).environment == results["environment"]
    replay = jobs_upload(results).json()
    assert (replay["answered"], sorted(replay["skipped"])) == ([], sorted([winner, baseline]))
    assert problem(api.get("/v1/devices/phone/jobs/kit"), 409, "device")


def test_verification_kit_round_trip_from_the_cli(live_server, tiny_space, tmp_path: Path, monkeypatch) -> None:
    """`hwnas device jobs | verify-kit | verify-import`: the same round trip as above, as a user types it."""
    from api.client import API_KEY_ENV, SERVER_ENV
    from tests.api.test_cli import as_json, fails, succeeds

    monkeypatch.setenv(SERVER_ENV, live_server.url)
    monkeypatch.setenv(API_KEY_ENV, live_server.tokens["alice"])
    winner, baseline, _ = _file_jobs(live_server, tiny_space)
    listed = as_json(succeeds("device", "jobs", "phone", "--status", "pending", "--json"))
    assert [job["id"] for job in listed["items"]] == [winner, baseline]
    assert "--status must be" in fails("device", "jobs", "phone", "--status", "lost")
    kit = tmp_path / "verify.zip"
    assert "2 network(s)" in " ".join(
        succeeds("device", "verify-kit", "phone", "-o", str(kit), "--quick").output.split()
    )
    results = run_kit_zip(kit.read_bytes(), tmp_path / "phone", in_process=True)
    results_file = tmp_path / "results.json"
    results_file.write_text(
        json.dumps({**results, "results": results["results"][:1] + [{**results["results"][1], "sha256": "1" * 64}]})
    )
    assert "sha256" in fails("device", "verify-import", "phone", str(results_file))  # nothing answered
    assert [_job_row(live_server, job).status for job in (winner, baseline)] == ["pending"] * 2
    results_file.write_text(json.dumps(results))
    answered = as_json(succeeds("device", "verify-import", "phone", str(results_file), "--json"))
    assert sorted(answered["answered"]) == sorted([winner, baseline])
    assert [_job_row(live_server, job).status for job in (winner, baseline)] == ["done", "done"]
    assert "no pending measurement jobs" in fails("device", "verify-kit", "phone", "-o", str(tmp_path / "again.zip"))
