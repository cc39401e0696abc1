"""The profiling agent: a device that can reach the server fills its own lookup table.

    loop: GET the next batch of missing keys -> for each, GET its ONNX model and time it with the kit
          runner's protocol (same code, same policy fields) -> POST the batch's measurements
    until nothing is missing; then the same for the space's calibration networks the device lacks
    (the server refits the predictor's calibration when the set is complete); then, with
    `serve_jobs`, poll the device's measurement jobs (a search waiting for its winner to be timed)
    and answer each one, until stopped or idle for `max_idle_s`.

Work is stored per batch, so stopping the agent (Ctrl-C, SIGTERM, a `stop` event, `max_batches`) and
starting it again neither loses nor repeats stored work: a restarted agent asks the server what is
still missing. A batch interrupted part way posts what it measured before it stops.

The agent speaks HTTP through any client with `get_json(path, params=...)`, `request(method, path,
params=...)` (returning a response with `.content` and `.headers`) and `post_json(path, payload,
params=...)`, e.g. `api.client.ApiClient`; besides that it needs only numpy and onnxruntime.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import onnxruntime as ort

from latency_lut.kit_runner import (
    GROUP_SIZE,
    Measurement,
    TimingPolicy,
    machine_environment,
    time_in_rounds,
    timing_session,
)

THIS_MACHINE_FACT = "this_machine"  # = nas.latency.THIS_MACHINE_FACT (latency_lut may not import nas)

Progress = Callable[[int, int, str], None]


class AgentApi(Protocol):
    def get_json(self, path: str, **kwargs: Any) -> Any: ...

    def request(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def post_json(self, path: str, payload: Any = None, **kwargs: Any) -> Any: ...


class AgentError(ValueError):
    """The agent cannot go on (wrong machine, a model that does not match its checksum, ...)."""


@dataclass(frozen=True)
class AgentSummary:
    device: str
    total_keys: int  # keys of the selected space
    measured: int  # keys measured and stored by this run
    batches: int  # batches posted by this run
    missing_at_start: int
    missing_now: int
    seconds: float
    stopped: bool  # True when it stopped early (stop event, max_batches, Ctrl-C) with keys still missing
    networks_measured: int = 0  # calibration networks measured and stored by this run
    jobs_answered: int = 0  # measurement jobs answered by this run

    @property
    def finished(self) -> bool:
        return self.missing_now == 0


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, int | float | str):
        return [value]
    return list(value)


def space_params(
    space: str,
    resolution: int | Sequence[int] | None = None,
    width: float | Sequence[float] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The query parameters naming a space narrowed like the CLI's --space/-r/-w/--num-classes."""
    params: dict[str, Any] = {"space": space}
    if resolutions := _listed(resolution):
        params["resolution"] = resolutions
    if widths := _listed(width):
        params["width"] = widths
    if num_classes is not None:
        params["num_classes"] = num_classes
    return params


def device_path(device: str) -> str:
    return f"/v1/devices/{quote(device, safe='')}"


def _input_shape(headers: Any, key: str) -> tuple[int, ...]:
    raw = headers.get("x-hwnas-input-shape")
    if not raw:
        raise AgentError(f"the server sent no input shape for key {key!r} (X-Hwnas-Input-Shape)")
    try:
        shape = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise AgentError(f"the server sent a malformed input shape {raw!r} for key {key!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise AgentError(f"the server sent a malformed input shape {raw!r} for key {key!r}")
    return shape


@dataclass(frozen=True)
class _Served:
    """One served ONNX model, opened for timing."""

    session: Any
    input_shape: tuple[int, ...]
    sha256: str


def _open_served(api: AgentApi, path: str, what: str, threads: int, provider: str, **params: Any) -> _Served:
    """GET an ONNX model, check it against X-Hwnas-Sha256 and open a timing session on it."""
    response = api.request("GET", path, params=params)
    onnx_bytes = response.content
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    expected = response.headers.get("x-hwnas-sha256")
    if expected and digest != expected:
        raise AgentError(f"the model of {what} arrived damaged (checksum mismatch); run the agent again")
    return _Served(timing_session(onnx_bytes, threads, provider), _input_shape(response.headers, what), digest)


def _time_all(served: list[_Served], policy: TimingPolicy) -> list[Measurement]:
    """Time several models together in interleaved rounds (the kit runner's protocol)."""
    return time_in_rounds([(model.session, model.input_shape) for model in served], policy)


def _measured(measurement: Measurement) -> dict[str, Any]:
    return {
        "median_ms": measurement.median_ms,
        "iqr_ms": measurement.iqr_ms,
        "runs": measurement.runs,
        "runtime_version": measurement.runtime_version,
    }


def measure_served_keys(
    api: AgentApi,
    device: str,
    keys: Sequence[str],
    threads: int,
    policy: TimingPolicy,
    provider: str = "CPUExecutionProvider",
) -> list[dict[str, Any]]:
    """Download the keys' ONNX models and time them together; the measurements as the upload wants them."""
    served = [_open_served(api, f"{device_path(device)}/keys/onnx", key, threads, provider, key=key) for key in keys]
    return [{"key": key, **_measured(m)} for key, m in zip(keys, _time_all(served, policy), strict=True)]


def run_agent(
    api: AgentApi,
    device: str,
    *,
    space: str = "mobilenet_v3_large",
    resolution: int | Sequence[int] | None = None,
    width: float | Sequence[float] | None = None,
    num_classes: int | None = None,
    batch: int = 20,
    group_size: int = GROUP_SIZE,
    threads: int | None = None,
    policy: TimingPolicy = TimingPolicy(),
    stop: threading.Event | None = None,
    max_batches: int | None = None,
    require_machine: str | None = None,
    progress: Progress | None = None,
    networks: bool = False,
    serve_jobs: bool = False,
    max_idle_s: float | None = None,
    poll_s: float = 1.0,
) -> AgentSummary:
    """Measure every key of a space the device's table lacks, posting each batch as it ends.

    `space`, `resolution`, `width` (one value or several) and `num_classes` select the keys as the
    service's query parameters of the same names do.

    Threads and execution provider come from the device as the server stores it (they are part of
    what the device is); `threads`, when given, is what the caller expects and a device with another
    count is refused before anything is measured. `require_machine` (this machine's id,
    `nas.settings.machine_id`) refuses a device registered as another machine (for `hwnas lut profile`,
    which measures on the machine it runs on).

    Keys are timed `group_size` at a time in interleaved rounds (the kit runner's protocol); `progress`
    and the stop event are looked at between groups.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    base = device_path(device)
    info = api.get_json(base)
    if threads is not None and threads != int(info["threads"]):
        raise AgentError(
            f"device {device!r} is timed with {info['threads']} thread(s), not {threads}: another thread count is "
            "another device (register it with its own name and --threads)"
        )
    threads = int(info["threads"])
    provider = str(info.get("execution_provider") or "CPUExecutionProvider")
    if require_machine is not None and (info.get("facts") or {}).get(THIS_MACHINE_FACT) != require_machine:
        raise AgentError(
            f"device {device!r} is not this machine (machine id {require_machine}), so it cannot be profiled here; run "
            f"`hwnas agent --device {device}` on the device itself, or get a kit: `hwnas lut kit {device} -o kit.zip`"
        )
    if provider not in ort.get_available_providers():
        raise AgentError(
            f"device {device!r} runs {provider}, which this onnxruntime lacks "
            f"({', '.join(ort.get_available_providers())})"
        )
    params = space_params(space, resolution, width, num_classes)
    started = time.perf_counter()
    first = api.get_json(f"{base}/lut/missing", params={**params, "limit": batch})
    total_keys = int(first["total_keys"])
    missing_at_start = int(first["total_missing"])
    keys: list[str] = list(first["keys"])
    missing_now = missing_at_start
    measured = batches = 0
    stopped = False

    environment = machine_environment(threads, provider)

    def post(measurements: list[dict[str, Any]]) -> None:
        nonlocal measured, batches, missing_now
        answer = api.post_json(
            f"{base}/lut",
            {"measurements": measurements, "threads": threads, "environment": environment},
            params=params,
        )
        measured += len(measurements)
        batches += 1
        coverage = answer.get("coverage") if isinstance(answer, dict) else None
        if coverage:
            missing_now = int(coverage["missing"])

    while keys:
        done: list[dict[str, Any]] = []
        try:
            # A batch is timed in groups of interleaved rounds; each group is kept once timed.
            for start in range(0, len(keys), group_size):
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                group = keys[start : start + group_size]
                done.extend(measure_served_keys(api, device, group, threads, policy, provider))
                if progress is not None:
                    progress(measured + len(done), missing_at_start, group[-1])
        except KeyboardInterrupt:
            if done:
                post(done)  # what this batch measured is kept; the rest stays missing
            raise
        if done:
            post(done)
        if stopped or (max_batches is not None and batches >= max_batches):
            stopped = missing_now > 0
            break
        answer = api.get_json(f"{base}/lut/missing", params={**params, "limit": batch})
        missing_now = int(answer["total_missing"])
        keys = list(answer["keys"])
        if set(keys) & {m["key"] for m in done}:
            raise AgentError("the server still lists keys it just stored as missing; stopping instead of looping")
    timing = _Timing(api, base, threads, policy, provider, environment, stop)
    networks_measured = 0 if stopped or not networks else measure_networks(timing, params, progress)
    jobs_answered = 0
    if serve_jobs and not stopped and not timing.stopping():
        jobs_answered = answer_jobs(timing, max_idle_s=max_idle_s, poll_s=poll_s, progress=progress)
    return AgentSummary(
        device=device,
        total_keys=total_keys,
        measured=measured,
        batches=batches,
        missing_at_start=missing_at_start,
        missing_now=missing_now,
        seconds=time.perf_counter() - started,
        stopped=stopped,
        networks_measured=networks_measured,
        jobs_answered=jobs_answered,
    )


@dataclass(frozen=True)
class _Timing:
    """What timing a served model needs: where to fetch it, how to time it, what to report it ran on."""

    api: AgentApi
    base: str
    threads: int
    policy: TimingPolicy
    provider: str
    environment: dict[str, str]
    stop: threading.Event | None

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


def measure_networks(timing: _Timing, params: dict[str, Any], progress: Progress | None = None) -> int:
    """Time the space's calibration networks the device lacks, posting every few; returns how many."""
    missing = timing.api.get_json(f"{timing.base}/networks/missing", params=params)["missing"]
    done: list[dict[str, Any]] = []
    posted = 0

    def post() -> None:
        nonlocal posted, done
        if done:
            payload = {"measurements": done, "environment": timing.environment}
            timing.api.post_json(f"{timing.base}/networks", payload, params=params)
            posted += len(done)
            done = []

    try:
        # Networks are timed in groups of interleaved rounds, so a slow spell of the device hits one
        # round of many networks rather than every round of one: calibration and held-out networks
        # share the same minutes.
        for start in range(0, len(missing), GROUP_SIZE):
            if timing.stopping():
                break
            group = [network["arch_hash"] for network in missing[start : start + GROUP_SIZE]]
            served = [
                _open_served(
                    timing.api,
                    f"{timing.base}/networks/{arch_hash}/onnx",
                    f"network {arch_hash[:12]}",
                    timing.threads,
                    timing.provider,
                    **params,
                )
                for arch_hash in group
            ]
            for arch_hash, measurement in zip(group, _time_all(served, timing.policy), strict=True):
                done.append({"arch_hash": arch_hash, **_measured(measurement)})
            if progress is not None:
                progress(start + len(group), len(missing), f"network {group[-1][:12]}")
            post()
    finally:
        post()  # what was measured is kept, even on Ctrl-C
    return posted


def answer_jobs(
    timing: _Timing, *, max_idle_s: float | None, poll_s: float = 1.0, progress: Progress | None = None
) -> int:
    """Poll the device's pending measurement jobs and answer each; returns how many were answered.

    Ends when `stop` is set or no job arrived for `max_idle_s` seconds (None: never on its own).
    """
    answered = 0
    idle_since = time.monotonic()
    while not timing.stopping():
        page = timing.api.get_json(f"{timing.base}/jobs", params={"status": "pending", "limit": 20})
        for job in page["items"]:
            if timing.stopping():
                break
            job_path = f"{timing.base}/jobs/{job['id']}"
            what = f"job {job['id']}"
            served = _open_served(timing.api, f"{job_path}/onnx", what, timing.threads, timing.provider)
            measurement = _time_all([served], timing.policy)[0]
            result = {**_measured(measurement), "sha256": served.sha256, "environment": timing.environment}
            try:
                timing.api.post_json(f"{job_path}/result", result)
            except Exception as error:
                if getattr(error, "status", None) != 409:  # 409: cancelled or answered meanwhile, fine
                    raise
                continue
            answered += 1
            idle_since = time.monotonic()
            if progress is not None:
                progress(answered, answered + max(0, int(page["total"]) - 1), what)
        if page["items"]:
            continue
        if max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
            break
        if timing.stop is not None:
            timing.stop.wait(poll_s)
        else:
            time.sleep(poll_s)
    return answered
