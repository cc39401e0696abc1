"""The remote-device journey over HTTP only: a device registered as remote (2 threads; this server's
local devices use 1), an agent in a separate process (`hwnas agent --serve-jobs`) that profiles the
tiny space's keys at 128 px, measures the server's calibration networks and then answers measurement
jobs; the accuracy report scores the held-out networks; a search deployed at 128 px (trials train at
16 px) under a budget of 1.5x the fastest predicted network waits for the agent to measure its winner,
and the winner as measured there is within budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas import calibration_set as calibration_module
from search_spaces import space as space_module
from tests.api.search_helpers import DATASET, wait_finished
from tests.markers import SQLITE_ONLY

N_CALIBRATION, N_HELD_OUT = calibration_module.CALIBRATION_NETWORKS, calibration_module.HELD_OUT_NETWORKS
# Deployed at 128 px (networks of 0.16-0.47 ms; at 64 px, 0.05-0.17 ms, one slow moment of the shared
# machine put a winner over its budget), while the search's trials train at 16 px.
SCOPE = {"space": "api_tiny", "resolution": 128, "num_classes": 3}


def _start_agent(server, device: str, log: Path) -> subprocess.Popen:
    hwnas = Path(sys.executable).with_name("hwnas")
    command = [
        str(hwnas), "agent", "--server", server.url, "--device", device, "--space", "api_tiny",
        "--resolution", str(SCOPE["resolution"]), "--num-classes", "3", "--threads", "2", "--serve-jobs",
        "--max-idle-s", "120",
    ]  # fmt: skip
    environment = {**os.environ, "HWNAS_API_KEY": server.tokens["alice"], "HWNAS_SERVER": server.url}
    return subprocess.Popen(command, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_calibrated(client, device: str, agent: subprocess.Popen, log: Path, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert agent.poll() is None, log.read_text()
        missing = client.get(f"/v1/devices/{device}/networks/missing", params=SCOPE).json()["missing"]
        coverage = client.get(f"/v1/devices/{device}", params=SCOPE).json()["coverage"]
        if not missing and coverage["missing"] == 0:
            report = client.get(f"/v1/devices/{device}/accuracy", params=SCOPE)
            assert report.status_code == 200, report.text
            return report.json()
        time.sleep(2.0)  # the "phone" shares this machine's two cores: poll gently
    raise AssertionError(f"the agent did not measure keys and networks in {timeout} s:\n{log.read_text()}")


# On PostgreSQL: measurement jobs by tests/nas/test_job_store.py, the search journey by test_search_journey.py.
@SQLITE_ONLY
def test_remote_device_agent_calibrates_and_measures_a_search_winner(
    live_server, api_search_space, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(space_module.SPACES, api_search_space.name, api_search_space)
    client = live_server.client("alice", timeout=60.0)
    created = client.post("/v1/devices", json={"name": "phone", "threads": 2, "facts": {"soc": "test"}})
    assert created.status_code == 201, created.text
    assert created.json()["local"] is False

    log = tmp_path / "agent.log"
    agent = _start_agent(live_server, "phone", log)
    try:
        report = _wait_calibrated(client, "phone", agent, log)
        calibrated = report["scores"]["calibrated"]
        assert (report["n_calibration"], calibrated["n"]) == (N_CALIBRATION, N_HELD_OUT)
        print(
            f"held-out within ±10%: {calibrated['within_10pct']:.0%}, ±5%: {calibrated['within_5pct']:.0%}, "
            f"mean error {calibrated['mean_abs_pct_error']:.1f}%, Spearman {calibrated['spearman']:.3f}"
        )
        # The ±10% target is bench/predictor_accuracy.py's (a quiet machine). Here the "phone" shares two
        # cores with the suite (Ray, earlier servers' threads): at 64 px (networks of 0.06-0.17 ms) CI saw
        # Spearman 0.23 and 0.82, mean error 25-27%; alone 6.8-44%; so a share or rank threshold here
        # measures the machine's load, not the code. What must hold under any load: the calibration puts
        # the held-out networks on the right scale (a LUT at the wrong resolution, a scale fitted on the
        # wrong networks or measurements stored under the wrong hashes is several times off) and still
        # ranks them better than chance. At 128 px under a 1-core busy loop: mean error 15-33%, Spearman 0.77-0.87.
        assert report["scores"]["lut_sum"]["n"] == N_HELD_OUT, report
        assert calibrated["mean_abs_pct_error"] <= 60.0 and calibrated["spearman"] > 0.0, report
        device = client.get("/v1/devices/phone").json()
        assert device["environments"][0]["environment"]["threads"] == "2"

        body = {
            **SCOPE,
            "device": "phone",
            "dataset": DATASET,
            "budget_ms": 1e-6,
            "effort": "smoke",
            "seed": 3,
            "train_resolution": 16,
        }
        body.pop("num_classes")
        # The budget: 1.5x the fastest network the calibrated predictor says the space reaches there.
        refused = client.post("/v1/searches", json=body)
        assert refused.status_code == 422 and refused.json()["field"] == "budget_ms", refused.text
        budget = round(1.5 * refused.json()["fastest_ms"], 4)
        body["budget_ms"] = budget
        submitted = client.post("/v1/searches", json=body)
        assert submitted.status_code == 202, submitted.text
        search_id = submitted.json()["id"]
        finished = wait_finished(client, search_id, timeout=150.0)
        assert finished["status"] == "succeeded", (finished["error"], log.read_text()[-2000:])

        events = client.get(f"/v1/searches/{search_id}/events", params={"format": "json"}).json()
        kinds = [event["kind"] for event in (events["events"] if isinstance(events, dict) else events)]
        assert "waiting_device" in kinds and "measured" in kinds
        done = client.get("/v1/devices/phone/jobs", params={"status": "done", "limit": 200}).json()["items"]
        measured_by_hash = {job["arch_hash"]: job["median_ms"] for job in done if job["search_id"] == search_id}
        assert all(job["environment"]["threads"] == "2" for job in done)
        result = finished["result"]
        winner = result["winner"]
        assert winner["measured_ms"] == measured_by_hash[winner["arch_hash"]], (winner, measured_by_hash)
        assert result["winner"]["measured_ms"] <= budget * 1.05, (result, budget)
        assert client.get("/v1/devices/phone/jobs", params={"status": "pending"}).json()["total"] == 0
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        client.close()
    assert agent.returncode == 0, log.read_text()
