"""Journey 1, "profile a new phone", over HTTP against a live server, on SQLite and PostgreSQL.

A phone off the network gets a kit, runs its stand-alone runner and uploads the results; a device that
reaches the server runs the agent; a local device's end-to-end measurements give the accuracy report.
Measurements are real ONNX Runtime timings of the tiny 32 px space (registered as "tiny" in the server,
which runs in this process); every refusal is a 4xx problem naming the field and changes nothing stored.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from api.client import ApiClient, ApiError
from latency_lut import kit_runner
from latency_lut.agent import AgentError, run_agent
from nas.latency import check_device, store_lut_entries
from search_spaces import space as space_module

TINY = {"space": "tiny"}
PROBLEM = "application/problem+json"


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch, tiny_lut_space):
    monkeypatch.setitem(space_module.SPACES, tiny_lut_space.name, tiny_lut_space)
    return tiny_lut_space


@pytest.fixture
def api(live_server):
    with live_server.client() as client:
        yield client


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def add_device(api: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/devices", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def whole_lut(api: httpx.Client, name: str) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    while True:
        page = api.get(f"/v1/devices/{name}/lut", params={"limit": 7, "offset": len(entries)}).json()
        entries.update({entry["key"]: entry for entry in page["entries"]})
        if len(entries) >= page["total"]:
            return entries


def run_kit_zip(content: bytes, directory: Path, in_process: bool = False) -> dict[str, Any]:
    """Unzip a kit and run its runner.py, as the phone would (its own Python process) or in-process."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(directory)
    if in_process:
        assert kit_runner.main(["--kit-dir", str(directory)]) == 0
    else:
        completed = subprocess.run(
            [sys.executable, "runner.py"], cwd=directory, capture_output=True, text=True, timeout=300, check=False
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads((directory / "results.json").read_text())


def upload(api: httpx.Client, name: str, results: Any, **params: Any) -> httpx.Response:
    text = results if isinstance(results, str) else json.dumps(results)
    return api.post(
        f"/v1/devices/{name}/lut", params=params, files={"file": ("results.json", text.encode(), "application/json")}
    )


# --- the journeys ------------------------------------------------------------------------------------


def test_journey_kit_for_a_phone_then_accuracy_of_a_local_device(
    live_server, api, tiny_space, tiny_lut, fast_policy, tmp_path: Path
) -> None:
    n_keys = len(tiny_space.block_keys())
    phone = add_device(api, "pixel-8", facts={"soc": "Tensor G3"}, runtime_version="1.20.0")
    assert (phone["name"], phone["local"], phone["lut_entries"], phone["threads"]) == ("pixel-8", False, 0, 1)
    assert (phone["facts"], phone["runtime_version"]) == ({"soc": "Tensor G3"}, "1.20.0")
    assert api.get("/v1/devices/pixel-8").json()["coverage"] is None
    before = api.get("/v1/devices/pixel-8", params=TINY).json()["coverage"]
    assert (before["space"], before["keys"], before["missing"], before["coverage"]) == ("tiny", n_keys, n_keys, 0.0)

    kit = api.get("/v1/devices/pixel-8/kit", params={**TINY, "quick": True, "networks": False})
    assert kit.status_code == 200, kit.text
    assert kit.headers["content-type"] == "application/zip"
    assert kit.headers["content-disposition"].startswith("attachment")
    assert kit.headers["x-hwnas-kit-models"] == str(n_keys)
    results = run_kit_zip(kit.content, tmp_path / "phone")
    assert results["kit_id"] == kit.headers["x-hwnas-kit-id"] and len(results["results"]) == n_keys

    stored = upload(api, "pixel-8", results, **TINY)
    assert stored.status_code == 200, stored.text
    answer = stored.json()
    assert (answer["source"], answer["imported"], answer["already_present"], answer["lut_entries"]) == (
        "kit",
        n_keys,
        0,
        n_keys,
    )
    assert answer["kit"] == {"kit_id": results["kit_id"], "covered": n_keys, "total": n_keys, "coverage": 1.0}
    assert (answer["coverage"]["missing"], answer["coverage"]["coverage"]) == (0, 1.0)

    entries = whole_lut(api, "pixel-8")
    measured = {result["key"]: result["median_ms"] for result in results["results"]}
    assert {key: entry["median_ms"] for key, entry in entries.items()} == measured
    assert {entry["source"] for entry in entries.values()} == {"kit"}
    missing = api.get("/v1/devices/pixel-8/lut/missing", params=TINY).json()
    assert (missing["total_missing"], missing["total_keys"], missing["keys"]) == (0, n_keys, [])
    no_networks = {**TINY, "networks": False}  # calibration networks: tests/api/test_remote_device.py
    assert (
        "nothing to put in a kit"
        in problem(api.get("/v1/devices/pixel-8/kit", params=no_networks), 409, "space")["detail"]
    )
    # Uploading the same file again replaces the same entries: nothing new, nothing lost.
    again = upload(api, "pixel-8", results).json()
    assert (again["imported"], again["already_present"], again["lut_entries"], again["coverage"]) == (
        n_keys,
        n_keys,
        n_keys,
        None,
    )
    # A phone cannot be measured end to end by the server: the report says how to get measurements.
    assert "hwnas lut check pixel-8" in problem(api.get("/v1/devices/pixel-8/accuracy", params=TINY), 409)["detail"]

    local = add_device(api, "here-1t", local=True)
    assert local["local"] is True
    store_lut_entries(live_server.sessions, "here-1t", tiny_lut)
    report = check_device(live_server.sessions, "here-1t", tiny_space, n=4, n_calibration=3, policy=fast_policy)
    accuracy = api.get("/v1/devices/here-1t/accuracy", params=TINY)
    assert accuracy.status_code == 200, accuracy.text
    body = accuracy.json()
    assert (body["space"], body["n_measurements"], body["n_calibration"], body["n_evaluation"]) == ("tiny", 7, 3, 4)
    assert set(body["scores"]) == {"calibrated", "lut_sum", "madds_linear"}
    for name, score in report.to_dict()["scores"].items():
        for field, value in score.items():
            expected = None if isinstance(value, float) and np.isnan(value) else value
            assert body["scores"][name][field] == expected, (name, field)
    assert body["calibration"] == report.calibration.to_dict()
    listed = {row["name"]: row for row in api.get("/v1/devices").json()}
    assert (listed["here-1t"]["lut_entries"], listed["here-1t"]["e2e_measurements"]) == (n_keys, 7)
    assert (listed["pixel-8"]["lut_entries"], listed["pixel-8"]["local"]) == (n_keys, False)


class RecordingClient(ApiClient):
    """The agent's HTTP client, remembering every key it posted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.posted: list[str] = []

    def post_json(self, path: str, payload: Any = None, **kwargs: Any) -> Any:
        answer = super().post_json(path, payload, **kwargs)
        self.posted.extend(m["key"] for m in payload["measurements"])
        return answer


def test_agent_fills_the_table_batch_by_batch_and_resumes_without_repeating(
    live_server, api, tiny_space, fast_policy
) -> None:
    keys = tiny_space.block_keys()
    add_device(api, "galaxy", facts={"soc": "Exynos"})
    client = RecordingClient(live_server.url, live_server.tokens["alice"])
    selection = {"space": "tiny"}

    first = run_agent(client, "galaxy", **selection, batch=10, policy=fast_policy, max_batches=1)
    assert (first.measured, first.batches, first.missing_at_start, first.missing_now) == (
        10,
        1,
        len(keys),
        len(keys) - 10,
    )
    assert first.stopped and not first.finished
    assert api.get("/v1/devices/galaxy").json()["lut_entries"] == 10

    # Ctrl-C in the middle of a batch: what that batch measured (its groups timed so far) is posted
    # before the interrupt goes on. Groups of one key from here on, so progress comes key by key.
    def interrupt_after_two(done: int, total: int, key: str) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_agent(
            client, "galaxy", **selection, batch=10, group_size=1, policy=fast_policy, progress=interrupt_after_two
        )
    assert api.get("/v1/devices/galaxy").json()["lut_entries"] == 12

    # A stop event (what SIGTERM sets in the CLI) ends the run after the key being measured.
    stop = threading.Event()
    third = run_agent(
        client,
        "galaxy",
        **selection,
        batch=10,
        group_size=1,
        policy=fast_policy,
        stop=stop,
        progress=lambda d, t, k: stop.set(),
    )
    assert (third.measured, third.stopped, third.missing_now) == (1, True, len(keys) - 13)

    seen: list[int] = []
    last = run_agent(
        client,
        "galaxy",
        **selection,
        batch=10,
        group_size=1,
        policy=fast_policy,
        progress=lambda d, t, k: seen.append(d),
    )
    assert (last.measured, last.missing_at_start, last.missing_now, last.finished) == (len(keys) - 13,) * 2 + (0, True)
    assert seen == list(range(1, len(keys) - 12))
    assert len(client.posted) == len(set(client.posted)) == len(keys)  # no key measured twice
    assert set(client.posted) == set(keys)
    entries = whole_lut(api, "galaxy")
    assert set(entries) == set(keys) and {entry["source"] for entry in entries.values()} == {"agent"}
    assert all(entry["median_ms"] > 0 and entry["runtime_version"] == ort.__version__ for entry in entries.values())
    nothing = run_agent(client, "galaxy", **selection, policy=fast_policy)
    assert (nothing.measured, nothing.batches, nothing.finished) == (0, 0, True)
    client.close()


def test_agent_refusals(live_server, api, tiny_space, fast_policy) -> None:
    add_device(api, "phone-2t", threads=2)
    with ApiClient(live_server.url, live_server.tokens["bob"]) as client:
        with pytest.raises(AgentError, match="not this machine"):
            run_agent(client, "phone-2t", space="tiny", policy=fast_policy, require_machine="m-this-one")
        with pytest.raises(AgentError, match="2 thread"):
            run_agent(client, "phone-2t", space="tiny", threads=1, policy=fast_policy)
        with pytest.raises(ApiError) as unknown:
            run_agent(client, "nowhere", space="tiny", policy=fast_policy)
        assert unknown.value.status == 404 and unknown.value.problem["field"] == "device"
        with pytest.raises(ApiError) as bad_space:
            run_agent(client, "phone-2t", space="nope", policy=fast_policy)
        assert bad_space.value.status == 422 and bad_space.value.problem["field"] == "space"
    assert api.get("/v1/devices/phone-2t").json()["lut_entries"] == 0


# --- one block key's model ---------------------------------------------------------------------------


def test_key_onnx_is_the_kits_model_and_bad_keys_are_refused(api, tiny_space) -> None:
    add_device(api, "pixel-9")
    key = tiny_space.block_keys()[0]
    response = api.get("/v1/devices/pixel-9/keys/onnx", params={"key": key, **TINY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    shape = tuple(int(n) for n in response.headers["x-hwnas-input-shape"].split(","))
    session = kit_runner.timing_session(response.content, 1)
    (output,) = session.run(None, {kit_runner.INPUT_NAME: np.ones(shape, dtype=np.float32)})
    assert np.isfinite(output).all()
    # The same bytes a kit holds for that key (latency-neutral weights are deterministic).
    assert api.get("/v1/devices/pixel-9/keys/onnx", params={"key": key}).content == response.content

    for bad in (
        "garbage",
        "ir_k3_s1_e16_c16_re@",
        "ir_k4_s1_e16_c16_re@8x8x16",
        "ir_k3_s1_e8192_c8192_re@1024x1024x8192",  # far too large
        "ir_k11_s2_e8192_c8_se_hs@3x3x8",  # a 140 MB model
        "ir_k3_s1_e8_c8_re@0x0x8",  # empty input
        "ir_k3_s1_e8_c8_re@1x1x0",
    ):
        problem(api.get("/v1/devices/pixel-9/keys/onnx", params={"key": bad}), 422, "key")
    other = "ir_k7_s1_e48_c16_re@8x8x16"
    assert other not in tiny_space.block_keys()
    problem(api.get("/v1/devices/pixel-9/keys/onnx", params={"key": other, **TINY}), 422, "key")
    problem(api.get("/v1/devices/pixel-9/keys/onnx"), 422, "key")
    problem(api.get("/v1/devices/nowhere/keys/onnx", params={"key": key}), 404, "device")


# --- refusals ----------------------------------------------------------------------------------------


def test_devices_need_a_key(live_server) -> None:
    with live_server.client(None) as anonymous:
        problem(anonymous.get("/v1/devices"), 401, "Authorization")
        problem(anonymous.post("/v1/devices", json={"name": "x"}), 401, "Authorization")


def test_unknown_device_is_404_everywhere(api, tiny_space) -> None:
    for path, params in [
        ("/v1/devices/nowhere", {}),
        ("/v1/devices/nowhere/lut", {}),
        ("/v1/devices/nowhere/lut/missing", TINY),
        ("/v1/devices/nowhere/kit", TINY),
        ("/v1/devices/nowhere/accuracy", TINY),
    ]:
        assert "nowhere" in problem(api.get(path, params=params), 404, "device")["detail"], path
    # A name no device can have never reaches the database (PostgreSQL refuses NUL in a query).
    for name in ("bad%00name", "x" * 101, "-dash", "a%20b"):
        problem(api.get(f"/v1/devices/{name}"), 404, "device")
        problem(api.get(f"/v1/devices/{name}/lut/missing", params=TINY), 404, "device")
    measurement = {
        "key": tiny_space.block_keys()[0],
        "median_ms": 1.0,
        "iqr_ms": 0.0,
        "runs": 3,
        "runtime_version": "1",
    }
    problem(api.post("/v1/devices/nowhere/lut", json={"measurements": [measurement]}), 404, "device")


def test_device_creation_refusals(api) -> None:
    add_device(api, "cpu-1t", local=True)
    assert "already exists" in problem(api.post("/v1/devices", json={"name": "cpu-1t"}), 409, "name")["detail"]
    body = problem(api.post("/v1/devices", content=b'{"name": ', headers={"content-type": "application/json"}), 400)
    assert body["field"] == "body"
    for payload, field in [
        ({"name": "bad name"}, "name"),
        ({"name": "pixel/7"}, "name"),
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
        ({}, "name"),
        ({"name": "x", "threads": "many"}, "threads"),
        ({"name": "x", "threads": 0}, "threads"),
        ({"name": "x", "threads": 1.5}, "threads"),
        ({"name": "x", "local": "yes"}, "local"),
        ({"name": "x", "facts": {"soc": 1}}, "facts.soc"),
        ({"name": "x", "facts": {"this_machine": "me"}}, "facts"),
        ({"name": "x", "facts": ["soc"]}, "facts"),
        ({"name": "x", "facts": {"soc": "a\u0000b"}}, "facts"),
        ({"name": "x", "facts": {"\u0000": "a"}}, "facts"),
        ({"name": "x", "runtime_version": "1.2\u0000"}, "runtime_version"),
        ({"name": "x", "runtime_version": "1" * 51}, "runtime_version"),
        ({"name": "x", "colour": "red"}, "colour"),
    ]:
        problem(api.post("/v1/devices", json=payload), 422, field)
    problem(api.post("/v1/devices", json=["x"]), 422)
    assert [row["name"] for row in api.get("/v1/devices").json()] == ["cpu-1t"]


def test_space_and_paging_query_refusals(api, tiny_space) -> None:
    add_device(api, "pixel-9")
    for params, field in [
        ({"space": "nope"}, "space"),
        ({**TINY, "resolution": 4}, "resolution"),
        ({**TINY, "resolution": "abc"}, "resolution.0"),
        ({**TINY, "width": 9}, "width"),
        ({**TINY, "num_classes": 1}, "num_classes"),
        ({**TINY, "limit": 0}, "limit"),
        ({**TINY, "offset": -1}, "offset"),
        ({}, "space"),
    ]:
        problem(api.get("/v1/devices/pixel-9/lut/missing", params=params), 422, field)
    problem(api.get("/v1/devices/pixel-9", params={"resolution": 32}), 422, "space")
    problem(api.get("/v1/devices/pixel-9/lut", params={"limit": "many"}), 422, "limit")
    problem(api.get("/v1/devices/pixel-9/kit", params={"space": "nope"}), 422, "space")
    problem(api.get("/v1/devices/pixel-9/accuracy"), 422, "space")
    page = api.get("/v1/devices/pixel-9/lut/missing", params={**TINY, "limit": 5, "offset": 30}).json()
    assert page["keys"] == tiny_space.block_keys()[30:35] and page["total_missing"] == len(tiny_space.block_keys())


@pytest.fixture
def kit_results(api, live_server, tiny_space, tiny_lut, tmp_path: Path) -> dict[str, Any]:
    """A phone whose table lacks 3 of the tiny space's keys, and its kit's real results for them."""
    add_device(api, "pixel-7")
    keys = tiny_space.block_keys()
    store_lut_entries(live_server.sessions, "pixel-7", {key: tiny_lut[key] for key in keys[3:]})
    kit = api.get("/v1/devices/pixel-7/kit", params={**TINY, "quick": True, "networks": False})
    assert kit.status_code == 200 and kit.headers["x-hwnas-kit-models"] == "3", kit.text
    return run_kit_zip(kit.content, tmp_path / "kit", in_process=True)


def _changed(results: dict[str, Any], **entry: Any) -> str:
    copy = json.loads(json.dumps(results))
    copy["results"][0].update(entry)
    return json.dumps(copy)  # NaN and Infinity are written as such, as a careless tool would


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"key": "ir_k7_s1_e48_c16_re@8x8x16"}, "results.0.key", "is not in kit"),
        ({"median_ms": float("nan")}, "results.0.median_ms", "'median_ms' must be a finite number > 0"),
        ({"median_ms": float("inf")}, "results.0.median_ms", "'median_ms' must be a finite number > 0"),
        ({"median_ms": -1.0}, "results.0.median_ms", "'median_ms' must be a finite number > 0"),
        ({"iqr_ms": -0.1}, "results.0.iqr_ms", "'iqr_ms' must be a finite number >= 0"),
        ({"sha256": "0" * 64}, "results.0.sha256", "is not the kit's model checksum"),
    ],
    ids=["unknown-key", "nan", "infinite", "negative", "negative-iqr", "checksum"],
)
def test_bad_kit_results_are_refused_and_store_nothing(
    api, kit_results, entry: dict[str, Any], field: str, message: str
) -> None:
    before = whole_lut(api, "pixel-7")
    body = problem(upload(api, "pixel-7", _changed(kit_results, **entry)), 422, field)
    assert message in body["detail"] and any(message in p for p in body["problems"])
    # The raw-body form is checked the same way.
    raw = api.post(
        "/v1/devices/pixel-7/lut", content=_changed(kit_results, **entry), headers={"content-type": "application/json"}
    )
    problem(raw, 422, field)
    assert whole_lut(api, "pixel-7") == before
    # The untouched file still imports: the refusals left nothing half done.
    assert upload(api, "pixel-7", kit_results, **TINY).json()["coverage"]["coverage"] == 1.0


def test_other_bad_uploads_are_refused_and_store_nothing(api, kit_results, tiny_space) -> None:
    before = whole_lut(api, "pixel-7")
    key = tiny_space.block_keys()[0]
    good = {"key": key, "median_ms": 0.5, "iqr_ms": 0.01, "runs": 20, "runtime_version": ort.__version__}
    post = api.post
    path = "/v1/devices/pixel-7/lut"
    json_header = {"content-type": "application/json"}

    problem(upload(api, "pixel-7", "{ not json"), 400, "file")
    problem(post(path, content=b"{ not json", headers=json_header), 400, "body")
    problem(post(path, content=b"", headers=json_header), 422, "body")
    problem(post(path, content=b"[1, 2]", headers=json_header), 422, "body")
    problem(post(path, json={"hello": "world"}), 422, "body")
    problem(post(path, files={"other": ("r.json", b"{}", "application/json")}), 422, "file")
    problem(upload(api, "pixel-7", {**kit_results, "kit_id": "f" * 32}), 422, "kit_id")
    problem(upload(api, "pixel-7", {**kit_results, "threads": 4}), 422, "threads")
    # What the store could not hold is refused like any other problem (PostgreSQL would reject it).
    for version in ("1\u0000", "1" * 51):
        problem(upload(api, "pixel-7", {**kit_results, "runtime_version": version}), 422, "runtime_version")
    problem(upload(api, "pixel-7", _changed(kit_results, runs=2**40)), 422, "results.0.runs")
    for measurement, field in [
        ({**good, "median_ms": -1.0}, "measurements.1.median_ms"),
        ({**good, "median_ms": 0}, "measurements.1.median_ms"),
        ({**good, "median_ms": "fast"}, "measurements.1.median_ms"),
        ({**good, "iqr_ms": float("inf")}, "measurements.1.iqr_ms"),
        ({**good, "runs": 0}, "measurements.1.runs"),
        ({**good, "runs": 2.5}, "measurements.1.runs"),
        ({**good, "key": "garbage"}, "measurements.1.key"),
        ({**good, "colour": "red"}, "measurements.1.colour"),
        ({k: v for k, v in good.items() if k != "runtime_version"}, "measurements.1.runtime_version"),
        ({**good, "runtime_version": "1\u0000"}, "measurements.1.runtime_version"),
        ({**good, "runtime_version": "1" * 51}, "measurements.1.runtime_version"),
        ({**good, "runs": 2**40}, "measurements.1.runs"),
        (good, "measurements"),  # the same key twice
    ]:
        payload = json.dumps({"measurements": [good, measurement], "threads": 1})
        problem(post(path, content=payload, headers=json_header), 422, field)
    nan = json.dumps({"measurements": [{**good, "median_ms": float("nan")}]})
    assert "NaN" in nan
    problem(post(path, content=nan, headers=json_header), 422, "measurements.0.median_ms")
    problem(post(path, json={"measurements": []}), 422, "measurements")
    problem(post(path, json={"measurements": [good], "threads": 2}), 422, "threads")
    problem(post(path, params={"space": "nope"}, json={"measurements": [good]}), 422, "space")
    assert whole_lut(api, "pixel-7") == before

    stored = post(path, params=TINY, json={"measurements": [good], "threads": 1}).json()
    assert (stored["source"], stored["imported"], stored["already_present"], stored["coverage"]["missing"]) == (
        "agent",
        1,
        0,
        2,
    )
    assert whole_lut(api, "pixel-7")[key]["source"] == "agent"


def test_too_large_uploads_are_413_and_store_nothing(live_server, api, kit_results) -> None:
    limit = live_server.settings.max_upload_bytes
    before = whole_lut(api, "pixel-7")
    padded = json.dumps({**kit_results, "padding": "x" * limit})
    body = problem(upload(api, "pixel-7", padded), 413, "file")
    assert body["max_upload_bytes"] == limit
    problem(api.post("/v1/devices/pixel-7/lut", content=padded, headers={"content-type": "application/json"}), 413)

    def chunks():  # no Content-Length: the server counts while it reads
        for start in range(0, len(padded), 1 << 16):
            yield padded[start : start + (1 << 16)].encode()

    streamed = api.post("/v1/devices/pixel-7/lut", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    problem(streamed, 413, "file")
    assert whole_lut(api, "pixel-7") == before
