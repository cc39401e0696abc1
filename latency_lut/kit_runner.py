"""Timing protocol, and the stand-alone runner shipped inside a profiling kit.

This file must import nothing but the standard library, numpy and onnxruntime: it is copied into
profiling kits as ``runner.py`` and run on devices that cannot reach the server. The server's own
profiler imports the same functions, so a kit measures exactly as `hwnas lut profile` does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

INPUT_NAME = "input"
# First runs of a fresh session are slower (allocations, caches); warm up for this long at least.
WARMUP_SECONDS = 0.05


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop timing one model.

    IQR/median is a property of the machine's noise and does not shrink with more runs, so the caps
    matter: 100 runs put the median's standard error near 0.6% at a 5% spread, and 1 s bounds a slow
    model. A quiet machine reaches the target spread after `min_runs`.

    Machines drift: the same network timed twice a minute apart moved by 4% on average here (half of
    20 networks by more than 5%), while the runs inside one window agree to 1-2%. So a model is timed
    in `rounds` windows interleaved with the other models of its group (see `time_in_rounds`), and
    its latency is the median over the rounds; the run and time caps hold for all rounds together.
    Timed that way, the same 20 networks re-measured agreed within 5% (mean 0.6-1.0%).
    """

    warmup_runs: int = 5
    min_runs: int = 20
    max_runs: int = 100
    batch_runs: int = 10
    target_spread: float = 0.05
    max_seconds: float = 1.0
    rounds: int = 3

    def per_round(self) -> TimingPolicy:
        """The policy of one round: the run and time caps shared out over the rounds."""
        if self.rounds <= 1:
            return self
        n = self.rounds
        return TimingPolicy(
            warmup_runs=self.warmup_runs,
            min_runs=max(1, math.ceil(self.min_runs / n)),
            max_runs=max(1, math.ceil(self.max_runs / n)),
            batch_runs=max(1, min(self.batch_runs, math.ceil(self.max_runs / n))),
            target_spread=self.target_spread,
            max_seconds=self.max_seconds / n,
            rounds=1,
        )


QUICK_POLICY = TimingPolicy(warmup_runs=2, min_runs=5, max_runs=30, batch_runs=5, max_seconds=0.5)


@dataclass(frozen=True)
class Measurement:
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf


def machine_environment(threads: int, provider: str = "CPUExecutionProvider") -> dict[str, str]:
    """What a measurement was taken on: runtime, threads, CPU, and frequency/governor where readable.

    Stored beside every lookup table entry and end-to-end measurement, so two figures can be
    compared only when they were measured on the same thing. Standard library only (runs on phones).
    """
    import platform

    env = {
        "runtime": f"onnxruntime {ort.__version__}",
        "execution_provider": provider,
        "threads": str(threads),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu_count": str(os.cpu_count() or 0),
    }
    cpu = _first_cpuinfo_value(("model name", "Hardware", "Processor", "cpu model"))
    if cpu:
        env["cpu"] = cpu
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    for name, field in (("scaling_governor", "governor"), ("scaling_cur_freq", "freq_khz"),
                        ("scaling_max_freq", "max_freq_khz")):  # fmt: skip
        with contextlib.suppress(OSError):
            env[field] = (cpufreq / name).read_text().strip()[:40]
    if "freq_khz" not in env:
        mhz = _first_cpuinfo_value(("cpu MHz",))
        if mhz:
            env["freq_khz"] = str(int(float(mhz) * 1000)) if mhz.replace(".", "", 1).isdigit() else mhz
    return env


def _first_cpuinfo_value(fields: tuple[str, ...]) -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() in fields and value.strip():
            return value.strip()[:120]
    return None


def timing_session(
    onnx_model: bytes | str, threads: int, provider: str = "CPUExecutionProvider"
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(onnx_model, options, providers=[provider])


def time_session(
    session: ort.InferenceSession, input_shape: tuple[int, ...], policy: TimingPolicy = TimingPolicy()
) -> Measurement:
    """Time one model alone, in `policy.rounds` windows back to back (nothing to interleave with)."""
    return time_in_rounds([(session, input_shape)], policy)[0]


def time_in_rounds(
    items: list[tuple[ort.InferenceSession, tuple[int, ...]]], policy: TimingPolicy = TimingPolicy()
) -> list[Measurement]:
    """Time every (session, input shape) in `policy.rounds` rounds, each round visiting every item
    once: an item's rounds are separated by the time the others take, so a slow spell of the machine
    hits one round of many items rather than every round of one. Latency = median over the rounds."""
    per_round = policy.per_round()
    rounds: list[list[np.ndarray]] = [[] for _ in items]
    for _ in range(max(1, policy.rounds)):
        for index, (session, input_shape) in enumerate(items):
            rounds[index].append(_timed_runs(session, input_shape, per_round))
    measurements = []
    for samples in rounds:
        pooled = np.concatenate(samples)
        q1, q3 = np.percentile(pooled, [25, 75])
        median = float(np.median([np.median(window) for window in samples]))
        measurements.append(Measurement(median, float(q3 - q1), len(pooled), ort.__version__))
    return measurements


def _timed_runs(session: ort.InferenceSession, input_shape: tuple[int, ...], policy: TimingPolicy) -> np.ndarray:
    """Warm up, then time single runs until IQR/median <= target (after min_runs) or a cap is hit;
    the run times in milliseconds."""
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
    warm_until = time.perf_counter() + WARMUP_SECONDS
    runs = 0
    while runs < policy.warmup_runs or time.perf_counter() < warm_until:
        session.run(None, feed)
        runs += 1
    samples: list[int] = []
    started = time.perf_counter()
    while True:
        for _ in range(policy.batch_runs):
            tick = time.perf_counter_ns()
            session.run(None, feed)
            samples.append(time.perf_counter_ns() - tick)
        times = np.asarray(samples, dtype=np.float64) / 1e6
        median = float(np.median(times))
        q1, q3 = np.percentile(times, [25, 75])
        spread = (q3 - q1) / median if median > 0 else math.inf
        enough = len(samples) >= policy.min_runs and spread <= policy.target_spread
        capped = len(samples) >= policy.max_runs or time.perf_counter() - started > policy.max_seconds
        if enough or capped:
            return times


# ---------------------------------------------------------------------------------------------------
# The kit runner: `python runner.py` inside an unzipped profiling kit. Everything below is for the
# phone side; the server reads the results with `latency_lut.kit.validate_results`.
# ---------------------------------------------------------------------------------------------------

KIT_FORMAT = "hwnas-kit"
KIT_VERSION = 1
RESULTS_FORMAT = "hwnas-kit-results"
MANIFEST_NAME = "manifest.json"
RESULTS_NAME = "results.json"


class KitRunError(Exception):
    """A kit or results file this runner must not touch; the message tells the user what to do."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: an interrupted write never leaves half a file."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def load_kit_manifest(kit_dir: Path) -> dict[str, Any]:
    """The manifest as plain JSON; only what the runner relies on is checked (the server checks the rest)."""
    try:
        manifest = json.loads((kit_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except OSError as error:
        raise KitRunError(f"cannot read {kit_dir / MANIFEST_NAME}: {error}; is --kit-dir the unzipped kit?") from None
    except ValueError as error:
        raise KitRunError(f"{kit_dir / MANIFEST_NAME} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != KIT_FORMAT:
        raise KitRunError(f"{kit_dir / MANIFEST_NAME} is not an hwnas profiling-kit manifest")
    if manifest.get("kit_version") != KIT_VERSION:
        raise KitRunError(
            f"kit version {manifest.get('kit_version')!r} needs another runner; this one reads version {KIT_VERSION}"
        )
    for field in ("kit_id", "device", "threads", "execution_provider", "policy", "models"):
        if field not in manifest:
            raise KitRunError(f"{kit_dir / MANIFEST_NAME} lacks {field!r}")
    return manifest


def load_previous_results(output: Path, manifest: dict[str, Any], threads: int) -> dict[str, dict[str, Any]]:
    """Measurements an earlier run of this same kit left behind, by key, so a re-run resumes.

    A results file from another kit, thread count or ONNX Runtime version is never overwritten: mixing
    such measurements into one table would be silently wrong, so the user chooses what to do.
    """
    if not output.exists():
        return {}
    try:
        previous = json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise KitRunError(
            f"{output} exists but cannot be read ({error}); move it away or pick another --output"
        ) from None
    if not isinstance(previous, dict) or previous.get("format") != RESULTS_FORMAT:
        raise KitRunError(f"{output} exists and is not a kit results file; move it away or pick another --output")
    if previous.get("kit_id") != manifest["kit_id"]:
        raise KitRunError(f"{output} holds results of another kit; move it away or pick another --output")
    if previous.get("threads") != threads:
        raise KitRunError(
            f"{output} was measured with {previous.get('threads')!r} threads, not {threads}; "
            "re-run with the same --threads or pick another --output"
        )
    if previous.get("runtime_version") != ort.__version__:
        raise KitRunError(
            f"{output} was measured with onnxruntime {previous.get('runtime_version')!r}, this is {ort.__version__}; "
            "pick another --output"
        )
    expected = {model["key"]: model["sha256"] for model in manifest["models"]}
    kept: dict[str, dict[str, Any]] = {}
    for result in previous.get("results", []):
        if isinstance(result, dict) and expected.get(result.get("key")) == result.get("sha256"):
            kept[result["key"]] = result
    return kept


def results_payload(manifest: dict[str, Any], threads: int, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ordered = [results[model["key"]] for model in manifest["models"] if model["key"] in results]
    return {
        "format": RESULTS_FORMAT,
        "kit_version": KIT_VERSION,
        "kit_id": manifest["kit_id"],
        "device": manifest["device"],
        "runtime_version": ort.__version__,
        "threads": threads,
        "environment": machine_environment(threads, manifest["execution_provider"]),
        "results": ordered,
    }


GROUP_SIZE = 16
"""Models timed together in interleaved rounds (and written to the results file together)."""


def _time_group(
    opened: list[tuple[dict[str, Any], str, ort.InferenceSession]], policy: TimingPolicy
) -> tuple[list[Measurement | None], int]:
    """Time a group in rounds; if one model fails while running, time the others one by one."""
    items = [(session, tuple(model["input_shape"])) for model, _, session in opened]
    try:
        return list(time_in_rounds(items, policy)), 0
    except Exception:  # noqa: BLE001 - find the broken model below, keep the others
        pass
    measured: list[Measurement | None] = []
    failed = 0
    for (model, _, _), item in zip(opened, items, strict=True):
        try:
            measured.append(time_in_rounds([item], policy)[0])
        except Exception as error:  # one broken model must not stop the other measurements
            print(f"skipped {model['key']}: onnxruntime failed: {error}", file=sys.stderr)
            measured.append(None)
            failed += 1
    return measured, failed


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="runner.py",
        description="Time every model of an hwnas profiling kit with ONNX Runtime and write results.json. "
        "Stop it at any time (Ctrl-C) and run it again: it resumes where it stopped.",
    )
    parser.add_argument(
        "--kit-dir", type=Path, default=Path(__file__).resolve().parent, help="the unzipped kit (default: here)"
    )
    parser.add_argument("--output", type=Path, help=f"results file (default: {RESULTS_NAME} in the kit directory)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: the kit's)")
    parser.add_argument(
        "--keys-limit", type=int, metavar="N", help="measure at most N models in this run (a quick try)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the kit. Exit 0 when every model is measured, 1 when some were skipped, 2 on a kit error, 130 on Ctrl-C."""
    args = _parse_args(argv)
    kit_dir: Path = args.kit_dir
    output: Path = args.output if args.output is not None else kit_dir / RESULTS_NAME
    try:
        manifest = load_kit_manifest(kit_dir)
        threads = args.threads if args.threads is not None else int(manifest["threads"])
        if threads < 1:
            raise KitRunError(f"--threads must be >= 1, got {threads}")
        if args.keys_limit is not None and args.keys_limit < 1:
            raise KitRunError(f"--keys-limit must be >= 1, got {args.keys_limit}")
        provider = manifest["execution_provider"]
        if provider not in ort.get_available_providers():
            raise KitRunError(f"this onnxruntime lacks {provider}; it has {', '.join(ort.get_available_providers())}")
        try:
            policy = TimingPolicy(**manifest["policy"])
        except TypeError as error:
            raise KitRunError(f"the kit's timing policy is not understood by this runner: {error}") from None
        results = load_previous_results(output, manifest, threads)
    except KitRunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if threads != manifest["threads"]:
        print(
            f"warning: timing with {threads} threads, the kit's device uses {manifest['threads']}: "
            "the server refuses such results",
            file=sys.stderr,
        )
    models = manifest["models"]
    print(
        f"kit {manifest['kit_id']} for {manifest['device']}: {len(models)} models, {len(results)} already measured; "
        f"onnxruntime {ort.__version__}, {provider}, {threads} threads -> {output}",
        flush=True,
    )
    skipped = 0
    measured_now = 0
    todo = [model for model in models if model["key"] not in results]
    if args.keys_limit is not None:
        todo = todo[: args.keys_limit]
    try:
        for start in range(0, len(todo), GROUP_SIZE):
            opened: list[tuple[dict[str, Any], str, ort.InferenceSession]] = []
            for model in todo[start : start + GROUP_SIZE]:
                key = model["key"]
                path = kit_dir / model["file"]
                try:
                    digest = file_sha256(path)
                except OSError as error:
                    print(f"skipped {key}: cannot read {path}: {error}", file=sys.stderr)
                    skipped += 1
                    continue
                if digest != model["sha256"]:
                    print(f"skipped {key}: {path} does not match its checksum (damaged or altered)", file=sys.stderr)
                    skipped += 1
                    continue
                try:
                    opened.append((model, digest, timing_session(str(path), threads, provider)))
                except Exception as error:  # one broken model must not stop the other measurements
                    print(f"skipped {key}: onnxruntime failed: {error}", file=sys.stderr)
                    skipped += 1
            measured, failed = _time_group(opened, policy)
            skipped += failed
            for (model, digest, _), measurement in zip(opened, measured, strict=True):
                if measurement is None:
                    continue
                key = model["key"]
                results[key] = {
                    "key": key,
                    "sha256": digest,
                    "median_ms": measurement.median_ms,
                    "iqr_ms": measurement.iqr_ms,
                    "runs": measurement.runs,
                }
                measured_now += 1
                print(f"[{len(results)}/{len(models)}] {key} {measurement.median_ms:.3f} ms", flush=True)
            write_json_atomic(output, results_payload(manifest, threads, results))
    except KeyboardInterrupt:
        print(f"\nstopped: {len(results)}/{len(models)} measured in {output}; run again to resume", file=sys.stderr)
        return 130
    if not output.exists():
        write_json_atomic(output, results_payload(manifest, threads, results))
    remaining = len(models) - len(results)
    print(f"done: {len(results)}/{len(models)} measured in {output}" + (f", {remaining} left" if remaining else ""))
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
