"""`hwnas demo`: the three journeys, over HTTP, on the embedded defaults.

Starts the service in this process (SQLite under ./.hwnas/, local Ray, one embedded worker), creates
its own API key and a device for this machine, profiles the device through the API (the profiling
agent), submits a search with a latency budget, follows it live, downloads the winner, runs it in
ONNX Runtime on the raw held-out test images, and prints it beside MobileNetV3-Small scaled to the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.cli_common import console, progress_bar
from api.client import ApiClient, ApiError

DEMO_DIR = Path(".hwnas") / "demo"


def run_demo(
    *,
    device: str,
    threads: int,
    effort: str,
    budget_fraction: float,
    port: int,
    stay: bool,
    resolution: int = 128,
    train_resolution: int = 32,
    strategy: str = "supernet",
) -> dict[str, Any]:
    from api.app import create_app
    from api.server import serve_in_thread
    from api.settings import Settings
    from nas.store import ApiKeyRepository, session_scope

    settings = Settings(embedded_worker=True)
    app = create_app(settings)
    with session_scope(app.state.sessions) as session:
        _, token = ApiKeyRepository(session).create("demo", admin=True)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    (DEMO_DIR / "api-key.txt").write_text(token + "\n")
    running = serve_in_thread(app, port=port)
    console.print(f"service running at {running.url} (SQLite: {settings.database_url}); key in {DEMO_DIR}/api-key.txt")
    try:
        with ApiClient(running.url, token, timeout=600) as api:
            return _journeys(
                api,
                app.state.sessions,
                running.url,
                token,
                DemoChoice(device, threads, effort, budget_fraction, resolution, train_resolution, strategy),
                stay,
            )
    finally:
        if stay:
            console.print("serving until Ctrl-C ...")
            try:
                while running.thread.is_alive():
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        running.stop()


@dataclass(frozen=True)
class DemoChoice:
    device: str
    threads: int
    effort: str
    budget_fraction: float
    resolution: int
    train_resolution: int
    strategy: str = "supernet"


def _journeys(api: ApiClient, sessions: Any, url: str, token: str, choice: DemoChoice, stay: bool) -> dict[str, Any]:
    from latency_lut.agent import run_agent
    from nas.latency import check_device, measure_now
    from search_spaces import get_space, reference_spec

    device, threads, effort, resolution = choice.device, choice.threads, choice.effort, choice.resolution
    space, classes = "mobilenet_v3_small", 10

    # Journey 1: a device for this machine, profiled through the API by the agent.
    try:
        api.post_json("/v1/devices", {"name": device, "threads": threads, "local": True})
        console.print(f"[bold]1/3[/] device {device!r} created (this machine, {threads} thread(s))")
    except ApiError as error:
        if error.status != 409:
            raise
        console.print(f"[bold]1/3[/] device {device!r} already exists; reusing its lookup table")
    scope = {"space": space, "resolution": resolution, "num_classes": classes}
    with progress_bar("profiling block keys") as update:
        agent = run_agent(api, device, progress=update, **scope)
    coverage = api.get_json(f"/v1/devices/{device}", params=scope)
    console.print(
        f"    {agent.measured} keys measured now by the agent; LUT covers "
        f"{_coverage_text(coverage)} of {space} at {resolution} px"
    )
    # Whole networks measured end to end on this machine calibrate the predictor (per-call overheads
    # that isolated layer timings miss) and give the report served at /v1/devices/{name}/accuracy.
    with progress_bar("measuring networks end to end") as update:
        check_device(sessions, device, get_space(space).with_options(resolutions=[resolution], num_classes=classes),
                     n=10, n_calibration=20, seed=0, progress=update)  # fmt: skip
    report = _accuracy_report(api, device, scope)
    if report:
        console.print(f"    {report}")

    # Journey 2: a search under a budget, submitted over HTTP and followed live.
    reference = reference_spec(space, width=1.0, resolution=resolution, num_classes=classes)
    reference_ms = measure_now(sessions, device, [reference])[0]
    budget = round(choice.budget_fraction * reference_ms, 4)
    console.print(
        f"[bold]2/3[/] search on scikit-learn's digits deployed at {resolution} px (trials train at "
        f"{choice.train_resolution} px), effort {effort!r}, budget {budget} ms "
        f"({choice.budget_fraction:.0%} of MobileNetV3-Small 1.0's measured {reference_ms:.3f} ms here)"
    )
    response = api.request(
        "POST",
        "/v1/searches",
        json={
            "device": device,
            "space": space,
            "dataset": "digits",
            "budget_ms": budget,
            "effort": effort,
            "resolution": resolution,
            "train_resolution": choice.train_resolution,
            "strategy": choice.strategy,
            "seed": 0,
        },  # fmt: skip
    )
    search = response.json()
    location = response.headers["location"]
    console.print(f"    202 Accepted, Location: {location}; dashboard: {url}/searches/{search['id']}#key={token}")
    search = _follow(api, location)
    if search["status"] != "succeeded":
        raise RuntimeError(f"the search ended {search['status']}: {search.get('error')}")

    # Journey 3: download the winner and run it in ONNX Runtime.
    result = search["result"]
    winner_id = result["winner"]["architecture_id"]
    target = DEMO_DIR / f"winner-{winner_id}"
    target.mkdir(parents=True, exist_ok=True)
    files = {"spec": "spec.json", "onnx": "model.onnx", "onnx-uint8": "model_uint8.onnx", "weights": "weights.pt"}
    sizes = {name: api.download(f"/v1/architectures/{winner_id}/{name}", target / file) for name, file in files.items()}
    # As a user would: the raw held-out test images (positions the architecture names) through the
    # uint8 model, which carries the preprocessing in its graph.
    test_indices = api.get_json(f"/v1/architectures/{winner_id}").get("test_indices") or []
    onnx_accuracy = _onnx_accuracy(target / "model_uint8.onnx", test_indices)
    console.print(
        f"[bold]3/3[/] winner downloaded to {target}/ (" + ", ".join(f"{k} {v:,} B" for k, v in sizes.items()) + ")"
    )
    _print_table(result, onnx_accuracy, budget)
    console.print(f"dashboard: {url}/#key={token}" + ("" if stay else "  (run `hwnas demo --stay` or `hwnas serve`)"))
    return {"search": search, "onnx_accuracy": onnx_accuracy, "budget_ms": budget}


def _coverage_text(device: dict[str, Any]) -> str:
    coverage = device.get("coverage")
    if isinstance(coverage, dict):
        return f"{coverage.get('coverage', 0):.0%} ({coverage.get('keys', '?')} keys)"
    if isinstance(coverage, int | float):
        return f"{coverage:.0%}"
    return "?"


def _follow(api: ApiClient, location: str) -> dict[str, Any]:
    """Poll the search and print its events as they arrive, with a progress bar."""
    last_event = 0
    with progress_bar("search") as update:
        while True:
            search = api.get_json(location)
            events = api.get_json(f"{location}/events", params={"format": "json", "after": last_event})
            for event in events:
                last_event = max(last_event, int(event["id"]))
                if event["kind"] in ("start", "search_done", "measure", "winner", "baseline", "calibrate", "profile"):
                    console.print(f"    [{event['kind']}] {event['message']}")
            update(int(round(1000 * search["progress"])), 1000, f"{search['phase']} {search['trials_done']}/"
                   f"{search['trials_total']} trials")  # fmt: skip
            if search["status"] in ("succeeded", "failed", "cancelled"):
                return search
            time.sleep(1.0)


def _onnx_accuracy(model_path: Path, test_indices: list[int]) -> float:
    """Top-1 accuracy of the downloaded uint8 ONNX model on the raw digits the search held out for testing."""
    import onnxruntime as ort

    from nas.datasets import load_dataset

    dataset = load_dataset("digits")
    positions = np.asarray(test_indices, dtype=np.int64)
    raw = dataset.images[positions].transpose(0, 2, 3, 1)  # uint8 NHWC, as the images come
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = session.run(None, {name: raw})[0]
    return float(np.mean(np.argmax(logits, axis=1) == dataset.labels[positions]))


def _accuracy_report(api: ApiClient, device: str, scope: dict[str, Any]) -> str | None:
    try:
        report = api.get_json(f"/v1/devices/{device}/accuracy", params=scope)
    except ApiError:
        return None
    scores = report.get("scores") or report
    calibrated = scores.get("calibrated") if isinstance(scores, dict) else None
    if not isinstance(calibrated, dict):
        return None
    return (
        f"predictor on {report.get('n_evaluation', '?')} held-out networks measured end to end: "
        f"{calibrated.get('within_5pct', 0):.0%} within ±5%, {calibrated.get('within_10pct', 0):.0%} within ±10%"
    )


def _print_table(result: dict[str, Any], onnx_accuracy: float, budget: float) -> None:
    from rich.table import Table

    table = Table("", "test acc", "val acc", "predicted ms", "measured ms", "params", title=f"budget {budget} ms")
    for label, row in (("hwnas winner", result["winner"]), ("MobileNetV3-Small (scaled)", result.get("baseline"))):
        if not row:
            continue
        measured = row.get("measured_ms")
        table.add_row(
            label,
            "-" if row.get("test_accuracy") is None else f"{row['test_accuracy']:.4f}",
            f"{row['accuracy']:.4f}",
            f"{row['predicted_ms']:.4f}",
            "-" if measured is None else f"{measured:.4f}",
            f"{row['params']:,}",
        )
    console.print(table)
    console.print(
        f"winner's model_uint8.onnx in ONNX Runtime on the raw held-out test images: accuracy {onnx_accuracy:.4f}"
    )
