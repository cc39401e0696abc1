"""Journeys 2 and 3 over HTTP, for real: submit a search under a budget, follow it (polling and
Server-Sent Events), page through its candidates, read its Pareto front, download the winner and
check that the ONNX file computes what the weights compute; cancel a running and a queued search;
keys see only their own searches and architectures. The embedded worker runs real searches (Ray
Tune, training, NetAdapt, export) on a tiny space at 16 px, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import numpy as np
import onnxruntime as ort
import torch

from nas.store import CandidateRepository, SearchRepository, session_scope
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import build_model
from tests.api.search_helpers import (
    DATASET,
    FINISHED,
    SseReader,
    fastest_ms,
    read_sse,
    search_body,
    wait_finished,
    wait_for,
)


def _dominates(a: dict, b: dict) -> bool:
    return (
        a["accuracy"] >= b["accuracy"]
        and a["predicted_ms"] <= b["predicted_ms"]
        and (a["accuracy"] > b["accuracy"] or a["predicted_ms"] < b["predicted_ms"])
    )


def _all_candidates(client, search_id: str, **params) -> list[dict]:
    items, offset = [], 0
    while True:
        page = client.get(f"/v1/searches/{search_id}/candidates", params={**params, "limit": 3, "offset": offset})
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["limit"] == 3 and body["offset"] == offset
        items += body["items"]
        offset += 3
        if offset >= body["total"]:
            assert len(items) == body["total"]
            return items


def test_submit_follow_inspect_and_download_the_winner(search_server, tmp_path) -> None:
    alice = search_server.client("alice")
    # 3x the fastest: at 16 px MobileNetV3-Small's narrowest width is mostly per-layer overhead and
    # measured about 2x the tiny space's fastest network, so at 2x the baseline's presence was luck.
    budget = round(3.0 * fastest_ms(search_server), 6)

    # --- submit ----------------------------------------------------------------------------------
    response = alice.post("/v1/searches", json=search_body(budget_ms=budget))
    assert response.status_code == 202, response.text
    submitted = response.json()
    search_id = submitted["id"]
    assert response.headers["location"] == f"/v1/searches/{search_id}"
    assert submitted["status"] in ("queued", "running")
    assert submitted["budget_ms"] == budget and submitted["device"] == "local" and submitted["dataset"] == DATASET
    assert submitted["effort"] == "smoke" and submitted["trials_total"] == 4 and submitted["result"] is None
    assert submitted["links"]["events"] == f"/v1/searches/{search_id}/events"

    # --- follow: the SSE stream in a thread while the resource is polled ---------------------------
    stream = SseReader(f"{search_server.url}/v1/searches/{search_id}/events", search_server.headers("alice")).start()
    seen, deadline = [], time.monotonic() + 180
    while not seen or seen[-1]["status"] not in FINISHED:
        assert time.monotonic() < deadline, seen[-1]
        seen.append(alice.get(f"/v1/searches/{search_id}").json())
        time.sleep(0.25)
    final = seen[-1]
    assert final["status"] == "succeeded", final["error"]
    progress = [r["progress"] for r in seen]
    assert progress == sorted(progress) and 0.0 <= progress[0] and progress[-1] == 1.0
    assert final["phase"] == "done" and final["trials_done"] == 4 and final["finished_at"]

    stream.join()
    assert stream.content_type.startswith("text/event-stream")
    assert stream.retry is not None
    stored = [m for m in stream.messages if m.id is not None]
    ids = [m.id for m in stored]
    assert ids == sorted(set(ids)) and len(ids) >= 6
    kinds = {m.event for m in stored}
    assert {"start", "trial", "search_done", "winner", "done"} <= kinds
    for message in stored:
        assert message.data["id"] == message.id and message.data["kind"] == message.event and message.data["message"]
    updates = [m.data for m in stream.messages if m.event == "progress"]
    assert len(updates) >= 3 and all(m.id is None for m in stream.messages if m.event == "progress")
    fractions = [u["progress"] for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) >= 3
    assert stream.messages[-1].event == "end" and stream.messages[-1].data["status"] == "succeeded"

    # Resuming: after a stored id (header, or ?after=), only later events come, then the end.
    middle = ids[len(ids) // 2]
    resumed = read_sse(
        f"{search_server.url}/v1/searches/{search_id}/events",
        {**search_server.headers("alice"), "Last-Event-ID": str(middle)},
    )
    assert [m.id for m in resumed.messages if m.id is not None] == [i for i in ids if i > middle]
    assert resumed.messages[-1].event == "end"
    as_json = alice.get(f"/v1/searches/{search_id}/events", params={"format": "json", "after": middle})
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    assert [e["id"] for e in as_json.json()] == [i for i in ids if i > middle]
    by_query = read_sse(f"{search_server.url}/v1/searches/{search_id}/events?after={ids[-2]}", search_server.headers())
    assert [m.id for m in by_query.messages if m.id is not None] == [ids[-1]]

    # --- candidates: paginated, sorted, filtered ----------------------------------------------------
    everything = _all_candidates(alice, search_id)
    with session_scope(search_server.sessions) as session:
        row = SearchRepository(session).require(search_id)
        assert len(everything) == CandidateRepository(session).count(row.id) >= 4
    assert len({c["arch_hash"] for c in everything}) == len(everything)
    assert [c["id"] for c in everything] == sorted(c["id"] for c in everything)  # default: created_at
    for candidate in everything:
        assert candidate["spec"] and candidate["params"] > 0 and candidate["madds"] > 0 and candidate["created_at"]
        assert candidate["phase"] in ("search", "netadapt", "final", "baseline")
    by_accuracy = _all_candidates(alice, search_id, sort="-accuracy")
    measured = [c["accuracy"] for c in by_accuracy if c["accuracy"] is not None]
    assert measured == sorted(measured, reverse=True)
    assert all(c["accuracy"] is None for c in by_accuracy[len(measured) :])  # no accuracy sorts last
    by_latency = _all_candidates(alice, search_id, sort="predicted_ms")
    assert [c["predicted_ms"] for c in by_latency] == sorted(c["predicted_ms"] for c in everything)
    newest_first = _all_candidates(alice, search_id, sort="-created_at")
    assert [c["id"] for c in newest_first] == [c["id"] for c in reversed(everything)]
    trials = alice.get(f"/v1/searches/{search_id}/candidates", params={"phase": "search", "limit": 500}).json()
    assert trials["total"] == 4 == len(trials["items"]) and {c["phase"] for c in trials["items"]} == {"search"}

    # --- the Pareto front --------------------------------------------------------------------------
    pareto = alice.get(f"/v1/searches/{search_id}/pareto").json()
    assert pareto["budget_ms"] == budget and pareto["total"] == len(pareto["items"]) >= 1
    front = pareto["items"]
    assert [c["predicted_ms"] for c in front] == sorted(c["predicted_ms"] for c in front)
    completed = [c for c in everything if c["status"] == "completed" and c["accuracy"] is not None]
    front_hashes = {c["arch_hash"] for c in front}
    for candidate in completed:
        dominated = any(_dominates(other, candidate) for other in completed)
        assert dominated == (candidate["arch_hash"] not in front_hashes), candidate
    assert all(c["within_budget"] == (c["predicted_ms"] <= budget) for c in front)

    # --- the result and the winner's downloads -------------------------------------------------------
    result = final["result"]
    winner_id = final["winner_id"]
    assert winner_id and result["winner"]["architecture_id"] == winner_id
    assert final["links"]["winner"] == f"/v1/architectures/{winner_id}"
    assert final["baseline_id"] and result["baseline"]["architecture_id"] == final["baseline_id"]
    assert "artifact_dir" not in json.dumps(final)  # no server paths
    assert {a["role"] for a in final["architectures"]} == {"winner", "baseline"}
    winner = alice.get(f"/v1/architectures/{winner_id}").json()
    assert winner["role"] == "winner" and winner["search_id"] == search_id
    assert winner["accuracy"] == result["winner"]["accuracy"] and winner["measured_ms"] > 0
    # test accuracy: on held-out images nothing was selected on, named by their positions in the dataset
    assert winner["test_accuracy"] == result["winner"]["test_accuracy"] and 0.0 <= winner["test_accuracy"] <= 1.0
    assert winner["test_indices"] == result["test_split"]["indices"] and len(winner["test_indices"]) > 0
    assert len(winner["test_indices"]) == result["test_split"]["images"]
    assert winner["files"] == ["onnx", "onnx_uint8", "spec", "weights"]
    files = {}
    for kind, name in (("spec", "spec.json"), ("onnx", "model.onnx"), ("weights", "weights.pt")):
        download = alice.get(f"/v1/architectures/{winner_id}/{kind}")
        assert download.status_code == 200, download.text
        assert f'filename="{name}"' in download.headers["content-disposition"]
        assert int(download.headers["content-length"]) == len(download.content) > 0
        files[kind] = tmp_path / name
        files[kind].write_bytes(download.content)
    spec = ArchSpec.from_json(files["spec"].read_text())
    assert spec == ArchSpec.model_validate(winner["spec"]) and spec.content_hash() == winner["arch_hash"]
    checkpoint = torch.load(files["weights"], weights_only=False)
    model = build_model(spec)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
    onnx_out = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        torch_out = model(torch.as_tensor(x)).numpy()
    assert onnx_out.shape == (3, 3)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)

    # --- a finished search cannot be cancelled -------------------------------------------------------
    again = alice.post(f"/v1/searches/{search_id}/cancel")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["field"] == "status" and again.json()["status_now"] == "succeeded"

    # --- ownership ------------------------------------------------------------------------------------
    bob, admin = search_server.client("bob"), search_server.client("admin")
    for path in (
        f"/v1/searches/{search_id}",
        f"/v1/searches/{search_id}/candidates",
        f"/v1/searches/{search_id}/pareto",
        f"/v1/searches/{search_id}/events?format=json",
        f"/v1/searches/{search_id}/events",
        f"/v1/architectures/{winner_id}",
        f"/v1/architectures/{winner_id}/onnx",
        f"/v1/architectures/{winner_id}/weights",
        f"/v1/architectures/{winner_id}/spec",
    ):
        denied = bob.get(path)
        assert denied.status_code == 404, path
        assert denied.headers["content-type"].startswith("application/problem+json")
    assert bob.post(f"/v1/searches/{search_id}/cancel").status_code == 404
    assert bob.get("/v1/searches").json()["total"] == 0
    assert bob.get("/v1/architectures").json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
    mine = alice.get("/v1/searches").json()
    assert mine["total"] == 1 and mine["items"][0]["id"] == search_id and mine["items"][0]["status"] == "succeeded"
    assert alice.get("/v1/searches", params={"status": "queued"}).json()["total"] == 0
    assert alice.get("/v1/searches", params={"status": ["succeeded", "failed"]}).json()["total"] == 1
    architectures = alice.get("/v1/architectures").json()
    assert architectures["total"] == 2 and {a["role"] for a in architectures["items"]} == {"winner", "baseline"}
    assert admin.get(f"/v1/searches/{search_id}").json()["owner"] == submitted["owner"]
    assert admin.get("/v1/searches").json()["total"] == 1
    assert admin.get(f"/v1/architectures/{winner_id}/onnx").content == files["onnx"].read_bytes()


def test_cancel_a_running_and_a_queued_search(search_server) -> None:
    alice = search_server.client("alice")
    budget = 2.0 * fastest_ms(search_server)
    # "thorough": 80 trials, far more than the test waits for.
    running = alice.post("/v1/searches", json=search_body(budget_ms=budget, effort="thorough")).json()
    queued = alice.post("/v1/searches", json=search_body(budget_ms=budget)).json()  # the one worker is busy

    cancelled_at_once = alice.post(f"/v1/searches/{queued['id']}/cancel")
    assert cancelled_at_once.status_code == 202
    assert cancelled_at_once.json()["status"] == "cancelled" and cancelled_at_once.json()["finished_at"]

    wait_for(alice, running["id"], lambda r: r["trials_done"] >= 1 or r["status"] in FINISHED)
    response = alice.post(f"/v1/searches/{running['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True
    kept = alice.get(f"/v1/searches/{running['id']}/candidates").json()["total"]
    assert kept >= 1
    final = wait_finished(alice, running["id"], timeout=120)
    assert final["status"] == "cancelled" and final["phase"] == "done" and final["result"] is None
    assert final["trials_done"] < 80
    after = alice.get(f"/v1/searches/{running['id']}/candidates", params={"phase": "search"}).json()
    assert after["total"] >= kept and all(c["phase"] == "search" for c in after["items"])
    stream = read_sse(f"{search_server.url}/v1/searches/{running['id']}/events", search_server.headers())
    assert stream.messages[-1].event == "end" and stream.messages[-1].data["status"] == "cancelled"
    for search in (running, queued):
        again = alice.post(f"/v1/searches/{search['id']}/cancel")
        assert again.status_code == 409 and again.json()["status_now"] == "cancelled"
    assert alice.get(f"/v1/searches/{queued['id']}").json()["started_at"] is None
    assert alice.get("/v1/searches", params={"status": "cancelled"}).json()["total"] == 2


def test_the_event_stream_step_by_step(search_server, monkeypatch) -> None:
    """The SSE protocol on a search a stand-in worker advances by hand: stored events with their ids,
    a `progress` event on every change, keep-alive comments while nothing happens, resuming after
    Last-Event-ID on a new connection, and `end` once the search finished and everything was sent."""
    import httpx

    from api.routes import searches as searches_route
    from nas.store import DeviceRepository, EventRepository

    monkeypatch.setattr(searches_route, "KEEPALIVE_S", 0.4)
    alice = search_server.tokens["alice"].split("_")[1]
    with session_scope(search_server.sessions) as session:
        repository = SearchRepository(session)
        row = repository.create(
            device_id=DeviceRepository(session).require("local").id, space="api_tiny", dataset=DATASET,
            budget_ms=1.0, strategy="random", request=search_body(), owner=alice, trials_total=4,
        )  # fmt: skip
        search_id, internal = row.public_id, row.id
        # Claimed in the same transaction: the embedded worker never sees it queued.
        assert repository.claim_next("stand-in", stale_after_s=600).public_id == search_id
        first = EventRepository(session).add(internal, "start", "started by hand")

    def write(progress: float | None = None, kind: str | None = None, finish: bool = False) -> int | None:
        with session_scope(search_server.sessions) as session:
            if progress is not None:
                SearchRepository(session).update_progress(search_id, "stand-in", phase="search", progress=progress,
                                                          trials_done=2)  # fmt: skip
            event_id = EventRepository(session).add(internal, kind, f"{kind} by hand") if kind else None
            if finish:
                SearchRepository(session).finish(search_id, "stand-in", "succeeded", result={"trials": 2})
            return event_id

    url = f"{search_server.url}/v1/searches/{search_id}/events"
    with httpx.stream("GET", url, headers=search_server.headers("alice"), timeout=30) as response:
        items = _sse_items(response.iter_lines())
        assert next(items) == ("retry", "1000")
        start = next(items)
        assert (start.id, start.event, start.data["message"]) == (first, "start", "started by hand")
        update = next(items)
        assert (update.id, update.event, update.data["status"], update.data["progress"]) == (
            None, "progress", "running", 0.0
        )  # fmt: skip
        assert next(items) == ("comment", "keep-alive")  # nothing happened for KEEPALIVE_S
        second = write(progress=0.5, kind="trial")
        trial, update = next(items), next(items)
        assert (trial.id, trial.event) == (second, "trial")
        assert (update.event, update.data["progress"], update.data["trials_done"]) == ("progress", 0.5, 2)
    # The client went away; more happens; a new connection resumes after the last id it saw.
    third = write(kind="done", finish=True)
    resumed = read_sse(url, {**search_server.headers("alice"), "Last-Event-ID": str(second)})
    assert [(m.id, m.event) for m in resumed.messages] == [(third, "done"), (None, "progress"), (None, "end")]
    assert resumed.messages[1].data["status"] == "succeeded" and resumed.messages[1].data["progress"] == 1.0
    assert resumed.messages[2].data["status"] == "succeeded"
    assert first < second < third


def _sse_items(lines):
    """A live SSE stream, item by item: ("retry", ms), ("comment", text) or an SseMessage."""
    from tests.api.search_helpers import SseMessage

    event, data, event_id = "message", [], None
    for line in lines:
        if line == "":
            if data:
                yield SseMessage(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            yield ("comment", line[1:].strip())
        else:
            name, _, value = line.partition(": ")
            if name == "retry":
                yield ("retry", value)
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = int(value)
