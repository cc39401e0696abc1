"""docker-compose.yml's topology, run for real as separate processes on this host (`make deploy-check`).

PostgreSQL (HWNAS_TEST_POSTGRES_URL; a fresh schema, dropped afterwards), the migration job, a Ray head
and a second Ray node, the API (`hwnas serve --no-worker`) and two search workers that join the Ray
cluster as drivers, all with the compose file's environment. The workers share one machine id (two
processes on one machine); the API has another. A device is registered as the workers' machine from
the command line there, a search is submitted over HTTP, and mid-search the worker running it is
SIGKILLed: the other worker re-claims the search once its heartbeat is stale and resumes it from the
stored candidates, training none of them again; while it runs the remaining trials the second Ray node
is stopped (a trial there dies with it and is run again on the head), and the search still finishes on the
head alone. The winner is then downloaded over HTTP.

Skipped only when HWNAS_TEST_POSTGRES_URL is unset (`bash .ci/postgres.sh` starts a local server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import onnx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from nas.store import Candidate, Device, Search, SearchEvent
from search_spaces import get_space
from tests.deploy.processes import BIN, Processes, free_ports, wait_until
from tests.modelled_lut import modelled_lut

POSTGRES_URL_ENV = "HWNAS_TEST_POSTGRES_URL"
WORKER_MACHINE = "deploy-check-worker-host"
API_MACHINE = "deploy-check-api-host"
DEVICE = "cpu-1t"
DATASET = "synthetic:classes=3,per_class=24,resolution=16"
STALE_AFTER_S = 10  # the worker heartbeats every 5 s
# The smallest search the API accepts on a built-in space: MobileNetV3-Small at 16 px and its narrowest
# width (0.4: narrower ones make stages 2 and 3 equally wide), 4 smoke trials, no baseline.
SEARCH = {
    "device": DEVICE,
    "space": "mobilenet_v3_small",
    "dataset": DATASET,
    "budget_ms": 50.0,
    "effort": "smoke",
    "resolution": 16,
    "widths": [0.4],
    "seed": 1,
    "baseline": False,
}
TRIALS = 4  # effort "smoke"


from tests.conftest import postgres_schema  # noqa: E402


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty schema of the test server (dropped afterwards)."""
    base_url = os.environ.get(POSTGRES_URL_ENV)
    if not base_url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set, so the deployment check does not run")
    with postgres_schema(base_url, "deploy") as url:
        yield url


@dataclass
class Deployment:
    processes: Processes
    api: str
    token: str
    database_url: str
    workers: tuple[str, str]
    ray_temp: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0)

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"----- {name} (pid {service.pid}, {'running' if service.alive() else service.process.returncode}) "
            f"-----\n{service.output()[-tail:]}"
            for name, service in self.processes.services.items()
        )


def _ray_node(name: str, temp_dir: Path, head_port: int, head: bool) -> list[str]:
    """`ray start --block` for one node of a one-host cluster: each node its own temp dir and ports."""
    ports = dict(
        zip(
            (
                "node-manager-port",
                "object-manager-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
                "metrics-export-port",
            ),
            free_ports(6),
            strict=True,
        )
    )
    argv = [str(BIN / "ray"), "start", "--block", "--num-cpus=1"]
    if head:
        argv += ["--head", f"--port={head_port}", "--include-dashboard=false"]
    else:
        argv += [f"--address=127.0.0.1:{head_port}"]
    argv += [f"--{option}={port}" for option, port in ports.items()]
    return argv + [f"--temp-dir={temp_dir / name}", "--object-store-memory=100000000", "--disable-usage-stats"]


def _ray_started(processes: Processes, name: str) -> bool:
    service = processes.services[name]
    assert service.alive(), f"{name} exited:\n{service.output()[-3000:]}"
    return "Ray runtime started" in service.output()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def deployment(postgres_url: str, tmp_path: Path) -> Iterator[Deployment]:
    # Ray's sockets live under its temp dir, and a Unix socket path has at most 107 characters.
    ray_tmp = Path(tempfile.mkdtemp(prefix="hwnas-ray-", dir="/tmp"))
    head_port, api_port = free_ports(2)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("HWNAS_", "RAY_"))}
    env = {
        **inherited,
        # what docker-compose.yml's x-hwnas-env and x-ray-env set
        "HWNAS_DATABASE_URL": postgres_url,
        "HWNAS_ARTIFACT_DIR": str(tmp_path / "artifacts"),  # the shared volume
        "HWNAS_RAY_ADDRESS": f"127.0.0.1:{head_port}",
        "HWNAS_LOG_FORMAT": "json",
        "HWNAS_EMBEDDED_WORKER": "0",
        "RAY_AUTH_MODE": "disabled",
        # where a process without HWNAS_MACHINE_ID would keep its generated id (none here uses it)
        "HWNAS_MACHINE_ID_FILE": str(tmp_path / "machine-id"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    processes = Processes(tmp_path / "logs", env)
    hwnas = str(BIN / "hwnas")
    try:
        processes.run([hwnas, "db", "upgrade"])  # the migrate job, before anything else touches the schema
        processes.start("ray-head", _ray_node("head", ray_tmp, head_port, head=True))
        processes.start(
            "api",
            [hwnas, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(api_port)],
            {"HWNAS_MACHINE_ID": API_MACHINE},
        )
        wait_until(lambda: _ray_started(processes, "ray-head"), 60, "the Ray head")
        # Stopped mid-search below: no drain wait, its trials just die.
        processes.start(
            "ray-worker",
            _ray_node("worker", ray_tmp, head_port, head=False),
            {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
        )
        token = json.loads(processes.run([hwnas, "key", "create", "--admin", "--name", "deploy", "--json"]).stdout)[
            "token"
        ]
        wait_until(lambda: _ray_started(processes, "ray-worker"), 60, "the second Ray node")
        workers = ("worker-a", "worker-b")
        for name in workers:
            processes.start(
                name,
                [hwnas, "worker", "--stale-after-s", str(STALE_AFTER_S), "--poll-s", "0.5"],
                {"HWNAS_MACHINE_ID": WORKER_MACHINE},
            )
        api = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _http_ok(f"{api}/v1/health"), 60, "the API")
    except BaseException:
        print(Deployment(processes, "", "", postgres_url, ("", ""), ray_tmp).logs())  # shown by pytest with the failure
        processes.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        raise
    try:
        yield Deployment(processes, api, token, postgres_url, workers, ray_tmp)
    finally:
        processes.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _jobs_run_on(node_temp_dir: Path) -> set[str]:
    """Ids of the Ray jobs (drivers) a node started worker processes for: worker-<id>-<job>-<pid>.out."""
    logs = node_temp_dir.glob("session_*/logs/worker-*.out")
    return {path.name.split("-")[2] for path in logs} - {"ffffffff"}  # ffffffff: pre-started, no job yet


def _search_row(database_url: str, public_id: str) -> dict:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            row = session.scalars(select(Search).where(Search.public_id == public_id)).one()
            return {"id": row.id, "worker_id": row.worker_id, "attempts": row.attempts, "status": row.status}
    finally:
        engine.dispose()


def test_compose_topology_survives_a_killed_worker_and_a_lost_ray_node(deployment: Deployment) -> None:
    try:
        _journey(deployment)
    except BaseException:
        print(deployment.logs())  # shown by pytest with the failure
        raise


def _journey(deployment: Deployment) -> None:
    started = time.monotonic()
    processes, hwnas = deployment.processes, str(BIN / "hwnas")
    client = deployment.client()

    # --- the device: registered on the workers' machine, from that machine (`docker compose exec worker`)
    added = json.loads(
        processes.run(
            [hwnas, "device", "add", DEVICE, "--local", "--threads", "1", "--json"],
            {"HWNAS_MACHINE_ID": WORKER_MACHINE},
        ).stdout
    )
    assert added["name"] == DEVICE and added["local"] and added["owner"] is None
    # Registered over HTTP as "local", a device is the API's machine: no worker may claim its searches.
    response = client.post("/v1/devices", json={"name": "api-host-1t", "threads": 1, "local": True})
    assert response.status_code == 201, response.text
    engine = create_engine(deployment.database_url, poolclass=NullPool)
    with Session(engine) as session:
        machines = {name: machine for name, machine in session.execute(select(Device.name, Device.machine_id))}
    assert machines == {DEVICE: WORKER_MACHINE, "api-host-1t": API_MACHINE}

    # --- its lookup table, uploaded as an agent would, with modelled times (tests/modelled_lut.py): the
    # worker that runs the search calibrates the table on networks it really measures end to end.
    space = get_space(SEARCH["space"]).with_options(resolutions=[16], widths=SEARCH["widths"], num_classes=3)
    measurements = [
        {"key": key, "median_ms": e.median_ms, "iqr_ms": e.iqr_ms, "runs": e.runs, "runtime_version": e.runtime_version}
        for key, e in modelled_lut(space).items()
    ]
    response = client.post(f"/v1/devices/{DEVICE}/lut", json={"measurements": measurements, "threads": 1})
    assert response.status_code == 200, response.text
    assert response.json()["lut_entries"] == len(measurements)

    # --- submit over HTTP
    response = client.post("/v1/searches", json={**SEARCH, "device": "api-host-1t"})
    assert response.status_code == 202, response.text
    unclaimable = response.json()["id"]
    response = client.post("/v1/searches", json=SEARCH)
    assert response.status_code == 202, response.text
    search_id = response.json()["id"]

    # --- mid-search: candidates stored, more to come
    def some_candidates() -> dict | None:
        resource = client.get(f"/v1/searches/{search_id}").json()
        assert resource["status"] in ("queued", "running"), resource
        total = client.get(f"/v1/searches/{search_id}/candidates").json()["total"]
        return resource if resource["status"] == "running" and 0 < total < TRIALS else None

    wait_until(some_candidates, 120, "the search to store its first candidate", interval=0.2)
    claimed = _search_row(deployment.database_url, search_id)
    pid = int(claimed["worker_id"].rsplit("-", 2)[-2])  # new_worker_id: host-pid-random
    owner = next(name for name in deployment.workers if processes.services[name].pid == pid)
    other = next(name for name in deployment.workers if name != owner)
    # --- SIGKILL the worker driving the search: its trials die with it, nothing marks the search
    killed_at = time.monotonic()
    processes.stop(owner, signal.SIGKILL)
    assert client.get(f"/v1/searches/{search_id}").json()["status"] == "running"

    # --- the other worker re-claims it once the heartbeat is stale and resumes; mid-trial, the second
    # Ray node is stopped (as `docker compose stop ray-worker` would): its trial dies with it
    def resumed() -> bool:
        events = client.get(f"/v1/searches/{search_id}/events", params={"format": "json"}).json()
        return any(event["kind"] == "resume" for event in events)

    wait_until(resumed, STALE_AFTER_S + 60, "the other worker to resume the search", interval=0.5)
    before = _jobs_run_on(deployment.ray_temp / "worker")
    try:  # the resumed search's trial reaching the second node; on a slow machine it may not get there
        wait_until(lambda: _jobs_run_on(deployment.ray_temp / "worker") - before, 15, "a trial on the second node")
    except AssertionError:
        print("no trial of the resumed search reached the second Ray node before it was stopped")
    processes.stop("ray-worker", signal.SIGTERM, timeout=30)

    # --- it finishes on the head alone
    final = wait_until(
        lambda: (
            (r := client.get(f"/v1/searches/{search_id}").json())["status"] in ("succeeded", "failed", "cancelled")
            and r
        ),
        150,
        "the search to finish",
        interval=0.5,
    )
    assert final["status"] == "succeeded", final.get("error")
    assert final["phase"] == "done" and final["trials_done"] == TRIALS
    row = _search_row(deployment.database_url, search_id)
    assert row["attempts"] == claimed["attempts"] + 1 and f"-{processes.services[other].pid}-" in row["worker_id"]
    # The trials ran on both Ray nodes (one CPU each, two trials at a time).
    assert _jobs_run_on(deployment.ray_temp / "worker"), "no trial ran on the second Ray node"
    assert processes.services[other].alive()
    print(f"re-claimed and finished {time.monotonic() - killed_at:.0f} s after the kill")

    # --- no architecture trained to completion twice; every candidate stored and served
    with Session(engine) as session:
        candidates = session.scalars(select(Candidate).where(Candidate.search_id == row["id"])).all()
        trial_events = session.scalars(
            select(SearchEvent).where(SearchEvent.search_id == row["id"], SearchEvent.kind == "trial")
        ).all()
        kinds = Counter(session.scalars(select(SearchEvent.kind).where(SearchEvent.search_id == row["id"])))
    engine.dispose()
    # Each architecture was evaluated once (a trial that died with its worker left no record), so none
    # was trained to completion twice.
    evaluated = Counter(e.data["arch_hash"] for e in trial_events)
    assert max(evaluated.values()) == 1, evaluated
    assert any(e.message.startswith("completed") for e in trial_events)
    assert kinds["resume"] == 1, kinds
    search_phase = [c for c in candidates if c.phase == "search"]
    assert len(search_phase) == TRIALS, [(c.arch_hash, c.status) for c in search_phase]
    print("search-phase candidates:", Counter(c.status for c in search_phase))
    assert {e.data["arch_hash"] for e in trial_events} == {c.arch_hash for c in search_phase}
    served = client.get(f"/v1/searches/{search_id}/candidates", params={"limit": 500}).json()
    assert served["total"] == len(candidates) == len(served["items"])
    assert {c["arch_hash"] for c in served["items"]} == {c.arch_hash for c in candidates}

    # --- the winner's ONNX file, over HTTP
    winner = final["winner_id"]
    assert winner
    download = client.get(f"/v1/architectures/{winner}/onnx")
    assert download.status_code == 200, download.text
    model = onnx.load_from_string(download.content)
    onnx.checker.check_model(model)

    # The API machine's device: nobody claimed its search.
    assert client.get(f"/v1/searches/{unclaimable}").json()["status"] == "queued"
    print(f"search phase of the deployment check: {time.monotonic() - started:.0f} s")
