"""Read load on the HTTP API while a search runs: N concurrent clients polling a running search.

Starts the service in this process the way `hwnas serve` runs it (uvicorn on 127.0.0.1, SQLite in a
temporary directory, one embedded worker, local Ray), creates a key and a device of this machine
with a real lookup table for a tiny space (profiled here in a second or two), submits a search with
POST /v1/searches and waits until it runs and has candidates. Then N clients (one httpx.AsyncClient
and one keep-alive connection each) poll, one request after another, round-robin:

    GET /v1/searches/{id}    GET /v1/searches/{id}/candidates    GET /v1/searches/{id}/events?format=json

The clients run in a separate process, so their own Python work does not share the server's GIL.
Side by side, in the same run:

- baseline: the same endpoints with 1 client (no queueing: the floor of each endpoint);
- the load: N clients polling, each reading every endpoint once per `--interval` seconds (default 1:
  what a dashboard or `hwnas search watch` does), for `--seconds`;
- capacity: the same N clients with no pause between requests (saturation: what the service can
  serve at most; latency there is queueing, N / throughput);
- floor of the stack: N clients on GET /v1/health with no pause (routing, one `SELECT 1`, JSON).

Target: no errors, p99 < 100 ms for the reads under load. Every request goes to 127.0.0.1; each
phase ends after its time, and the search is cancelled before the service stops.

    python -m bench.api_load [--clients 50] [--seconds 60] [--interval 1] [--baseline-seconds 10] [--effort quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

SPACE_NAME = "bench_api_tiny"
RESOLUTION = 16
CLASSES = 3
TARGET_P99_MS = 100.0
REQUEST_TIMEOUT_S = 10.0


@dataclass
class PhaseResult:
    name: str
    clients: int
    seconds: float
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # endpoint label -> successful requests
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    slow: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the phase, ms) of requests > 100 ms


# --- the load (runs in a child process) -------------------------------------------------------------------


async def _client(http: httpx.AsyncClient, paths: list[tuple[str, str]], stop_at: float, offset: int,
                  result: PhaseResult, interval: float, clients: int) -> None:  # fmt: skip
    """One client. `interval` > 0: it polls every endpoint once per `interval` seconds (a round of
    requests, then a pause until the next round; clients start spread over one interval); 0: it
    sends the next request as soon as the last one answered (saturation)."""
    turn = offset
    phase_start = stop_at - result.seconds
    next_round = time.monotonic() + (interval * offset / clients if interval else 0.0)
    while time.monotonic() < stop_at:
        if interval and turn % len(paths) == offset % len(paths):
            await asyncio.sleep(max(0.0, next_round - time.monotonic()))
            next_round += interval
            if time.monotonic() >= stop_at:
                break
        label, path = paths[turn % len(paths)]
        turn += 1
        started = time.perf_counter()
        try:
            response = await http.get(path)
            elapsed_ms = (time.perf_counter() - started) * 1000
            ok = response.status_code == 200
            problem = None if ok else f"{label}: HTTP {response.status_code} {response.text[:120]}"
        except httpx.HTTPError as error:
            ok, problem = False, f"{label}: {type(error).__name__}: {error}"
        if ok:
            result.latencies_ms.setdefault(label, []).append(elapsed_ms)
            if elapsed_ms > 100:
                result.slow.append((round(started - phase_start, 2), round(elapsed_ms, 1)))
        else:
            result.errors[label] = result.errors.get(label, 0) + 1
            if len(result.error_examples) < 5:
                result.error_examples.append(problem or label)


async def _phase(name: str, base_url: str, headers: dict[str, str], paths: list[tuple[str, str]], clients: int,
                 seconds: float, interval: float) -> PhaseResult:  # fmt: skip
    """Long-lived polling clients: each is created and has its keep-alive connection open (one
    uncounted GET /v1/health) before the clock starts, so the figures are the server's answers, not
    the client process building 50 clients and their connections."""
    result = PhaseResult(name, clients, seconds)
    for label, _ in paths:
        result.latencies_ms[label] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S, limits=limits)
            )
            for _ in range(clients)
        ]
        await asyncio.gather(*(http.get("/v1/health") for http in https))
        stop_at = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(
            *(_client(http, paths, stop_at, i, result, interval, clients) for i, http in enumerate(https))
        )
        result.seconds = time.monotonic() - started  # includes the requests in flight at the deadline
    return result


def _run_phase(conn, *args) -> None:  # noqa: ANN001 - a multiprocessing Connection
    # Plain data back to the parent: under spawn this module is `__mp_main__` here, not importable there.
    try:
        conn.send(asdict(asyncio.run(_phase(*args))))
    except BaseException as error:  # noqa: BLE001 - reported by the parent
        conn.send(f"{type(error).__name__}: {error}")
    finally:
        conn.close()


def run_phase(name: str, base_url: str, headers: dict[str, str], paths: list[tuple[str, str]], clients: int,
              seconds: float, interval: float = 0.0) -> PhaseResult:  # fmt: skip
    """One phase of load from a fresh child process; returns what its clients measured."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    arguments = (child, name, base_url, headers, paths, clients, seconds, interval)
    process = context.Process(target=_run_phase, args=arguments)
    process.start()
    child.close()
    if not parent.poll(seconds + REQUEST_TIMEOUT_S + 60):
        process.kill()
        raise RuntimeError(f"load phase {name!r} did not report back")
    outcome = parent.recv()
    process.join(timeout=30)
    if isinstance(outcome, str):
        raise RuntimeError(f"load phase {name!r} failed: {outcome}")
    return PhaseResult(**outcome)


# --- the service under test ---------------------------------------------------------------------------------


def bench_space():
    from search_spaces.space import tiny_space

    return tiny_space(SPACE_NAME, resolution=RESOLUTION, num_classes=CLASSES)


def start_service(workdir: Path, worker_mode: str = "process"):
    """The app on SQLite under `workdir` with an embedded worker, a key, and device "local" with a full LUT."""
    import torch

    from api.app import create_app
    from api.server import serve_in_thread
    from api.settings import Settings
    from latency_lut.kit_runner import TimingPolicy
    from nas.latency import add_device, profile_device
    from nas.store import ApiKeyRepository, session_scope
    from search_spaces import space as space_module

    space = bench_space()
    space_module.SPACES[space.name] = space  # the server runs in this process and resolves it by name
    torch.set_num_threads(1)
    artifacts = workdir / "artifacts"
    os.environ["HWNAS_ARTIFACT_DIR"] = str(artifacts)  # the worker writes its exports there
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'hwnas.db'}",
        artifact_dir=artifacts,
        embedded_worker=True,
        worker_mode=worker_mode,  # "process": as `hwnas serve` runs it; "thread": the worker shares the API's GIL
        log_format="text",
    )
    app = create_app(settings)
    with session_scope(app.state.sessions) as session:
        _, token = ApiKeyRepository(session).create("bench")
    add_device(app.state.sessions, "local", threads=1)
    fast = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)
    summary = profile_device(app.state.sessions, "local", space.block_keys(), fast)
    print(f"device local: {summary.measured_now} block keys of {space.name} profiled in {summary.seconds:.1f} s")
    return app, serve_in_thread(app), token


def submit_search(http: httpx.Client, app, effort: str, dataset: str) -> str:
    from nas.latency import load_predictor
    from search_spaces.space import get_space

    space = get_space(SPACE_NAME).with_options(resolutions=[RESOLUTION], num_classes=CLASSES)
    fastest = load_predictor(app.state.sessions, "local", space).pricer(space).fastest()[0]
    body = {
        "device": "local",
        "space": SPACE_NAME,
        "dataset": dataset,
        "budget_ms": round(2.0 * fastest, 6),
        "effort": effort,
        "resolution": RESOLUTION,
        "seed": 0,
    }
    response = http.post("/v1/searches", json=body)
    if response.status_code != 202:
        raise SystemExit(f"POST /v1/searches answered {response.status_code}: {response.text}")
    print(f"search {response.json()['id']} submitted (202, Location: {response.headers['location']})")
    return response.json()["id"]


def search_state(http: httpx.Client, search_id: str) -> tuple[str, int, int]:
    """(status, candidates, events) of the search."""
    search = http.get(f"/v1/searches/{search_id}").json()
    candidates = http.get(f"/v1/searches/{search_id}/candidates", params={"limit": 1}).json()["total"]
    events = len(http.get(f"/v1/searches/{search_id}/events", params={"format": "json", "limit": 1000}).json())
    return search["status"], candidates, events


def wait_until_it_has_candidates(http: httpx.Client, search_id: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, candidates, _ = search_state(http, search_id)
        if status in ("succeeded", "failed", "cancelled") or (status == "running" and candidates > 0):
            return
        time.sleep(0.5)
    raise SystemExit(f"search {search_id} had no candidate after {timeout_s:.0f} s")


# --- report ---------------------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def print_report(phases: list[PhaseResult]) -> list[tuple[str, str, float, int]]:
    """The side-by-side table; returns (phase, endpoint, p99 ms, errors) rows."""
    rows = []
    header = f"{'phase':28} {'endpoint':42} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(header)
    print("-" * len(header))
    for phase in phases:
        total = 0
        for label, latencies in phase.latencies_ms.items():
            errors = phase.errors.get(label, 0)
            count = len(latencies) + errors
            total += count
            p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
            print(f"{phase.name:28} {label:42} {count:9d} {count / phase.seconds:8.1f} {p50:8.1f} {p99:8.1f} "
                  f"{errors:7d}")  # fmt: skip
            rows.append((phase.name, label, p99, errors))
        print(f"{phase.name:28} {'all':42} {total:9d} {total / phase.seconds:8.1f}")
        for example in phase.error_examples:
            print(f"    error: {example}")
        if phase.slow and phase.clients > 1 and "no pause" not in phase.name:
            by_second: dict[int, int] = {}
            for at, _ in phase.slow:
                by_second[int(at)] = by_second.get(int(at), 0) + 1
            print(f"    requests over 100 ms by second of the phase: {dict(sorted(by_second.items()))}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients under load (1-500)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase (1-600)")
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="length of each baseline phase")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="each client polls every endpoint once per this many seconds (0: no pause)")  # fmt: skip
    parser.add_argument("--effort", default="quick", help="effort preset of the running search")
    parser.add_argument("--dataset", default="synthetic:classes=3,per_class=120,resolution=16")
    parser.add_argument("--worker-modes", nargs="+", choices=["process", "thread"], default=["process", "thread"],
                        help="run it with the embedded worker as a child process and/or a thread")  # fmt: skip
    args = parser.parse_args()
    if not 1 <= args.clients <= 500 or not 1 <= args.seconds <= 600 or not 1 <= args.baseline_seconds <= 120:
        parser.error("--clients 1-500, --seconds 1-600, --baseline-seconds 1-120")

    from bench.common import machine_line

    print(f"machine: {machine_line()}")
    verdicts = [(mode, *run_mode(args, mode)) for mode in args.worker_modes]
    print("\nside by side (reads under load):")
    for mode, passed, worst_p99, errors in verdicts:
        print(f"  embedded worker as a {mode:7}: worst p99 {worst_p99:7.1f} ms, errors {errors}: "
              f"{'PASS' if passed else 'FAIL'}")  # fmt: skip


class GcPauses:
    """Garbage-collector pauses of this (the server's) process while a phase runs."""

    def __init__(self) -> None:
        self.pauses_ms: list[tuple[int, float]] = []  # (generation, ms)
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((info["generation"], (time.perf_counter() - self._started) * 1000))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        full = [ms for generation, ms in self.pauses_ms if generation == 2]
        return (f"server GC: {len(self.pauses_ms)} collections, {len(full)} full "
                f"(longest {max(full, default=0.0):.0f} ms, {sum(full):.0f} ms in all)")  # fmt: skip


def run_mode(args: argparse.Namespace, worker_mode: str) -> tuple[bool, float, int]:
    print(f"\n=== embedded worker as a {worker_mode} ===")
    with tempfile.TemporaryDirectory(prefix="hwnas-api-load-") as workdir:
        app, running, token = start_service(Path(workdir), worker_mode)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=running.url, headers=headers, timeout=60) as http:
                search_id = submit_search(http, app, args.effort, args.dataset)
                wait_until_it_has_candidates(http, search_id)
                reads = [
                    ("GET /v1/searches/{id}", f"/v1/searches/{search_id}"),
                    ("GET /v1/searches/{id}/candidates", f"/v1/searches/{search_id}/candidates"),
                    ("GET /v1/searches/{id}/events?format=json", f"/v1/searches/{search_id}/events?format=json"),
                ]
                health = [("GET /v1/health", "/v1/health")]
                every = f"every {args.interval:g} s" if args.interval else "no pause"
                plan = [
                    ("baseline: 1 client", reads, 1, args.baseline_seconds, 0.0),
                    (f"load: {args.clients} clients, {every}", reads, args.clients, args.seconds, args.interval),
                    (f"capacity: {args.clients} clients, no pause", reads, args.clients, args.baseline_seconds, 0.0),
                    (f"floor: {args.clients} clients, no pause", health, args.clients, args.baseline_seconds, 0.0),
                ]
                phases = []
                for name, paths, clients, seconds, interval in plan:
                    before = search_state(http, search_id)
                    with GcPauses() as pauses:
                        phases.append(run_phase(name, running.url, headers, paths, clients, seconds, interval))
                    after = search_state(http, search_id)
                    print(f"{name}: search {before[0]} with {before[1]} candidates / {before[2]} events before, "
                          f"{after[0]} with {after[1]} / {after[2]} after; {pauses.summary()}")  # fmt: skip
                print()
                rows = print_report(phases)
                load_rows = [row for row in rows if row[0] == phases[1].name]
                errors = sum(row[3] for row in rows)
                worst = max(load_rows, key=lambda row: row[2])
                passed = errors == 0 and worst[2] < TARGET_P99_MS
                verdict = "PASS" if passed else "FAIL"
                print(f"\ntarget: no errors, p99 < {TARGET_P99_MS:.0f} ms for reads at {args.clients} clients: "
                      f"{verdict} (errors {errors}; worst p99 {worst[2]:.1f} ms, {worst[1]})")  # fmt: skip
                http.post(f"/v1/searches/{search_id}/cancel")
                return passed, worst[2], errors
        finally:
            running.stop()


if __name__ == "__main__":
    main()
