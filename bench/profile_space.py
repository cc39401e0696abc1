"""Wall time to profile every block key of mobilenet_v3_large at 224x224 on this machine, 1 thread.

Target: <= 3 minutes. Baseline in the same run: the common fixed protocol (100 timed runs per key,
no adaptive stop) on a random sample of keys, extrapolated to the whole space.

    python -m bench.profile_space [--baseline-sample 60] [--fresh]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from bench.common import bench_sessions, ensure_local_device, machine_line
from latency_lut.kit_runner import TimingPolicy
from latency_lut.profiler import measure_key
from nas.latency import missing_keys, profile_device
from nas.store import DeviceRepository, LutRepository, session_scope
from search_spaces import get_space

DEVICE = "bench-1t"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline-sample", type=int, default=60)
    parser.add_argument("--fresh", action="store_true", help="forget stored entries first and profile from zero")
    args = parser.parse_args()

    sessions = bench_sessions()
    ensure_local_device(sessions, DEVICE, threads=1)
    space = get_space("mobilenet_v3_large").with_options(resolutions=[224])
    keys = space.block_keys()
    if args.fresh:
        with session_scope(sessions) as session:
            device_id = DeviceRepository(session).require(DEVICE).id
            LutRepository(session).delete_keys(device_id, keys)
    todo = len(missing_keys(sessions, DEVICE, keys))
    print(f"machine: {machine_line()}")
    print(f"space: {space.name} at 224x224, widths {space.widths}: {len(keys)} keys, {todo} to measure")

    started = time.perf_counter()
    summary = profile_device(sessions, DEVICE, keys, TimingPolicy())
    ours = time.perf_counter() - started
    per_key = ours / max(summary.measured_now, 1)

    # Baseline: the usual fixed protocol. Both protocols measure the sample twice, so the table also
    # shows how repeatable each one is (median relative change of a key between two passes).
    sample = random.Random(0).sample(keys, min(args.baseline_sample, len(keys)))
    fixed = TimingPolicy(warmup_runs=5, min_runs=100, max_runs=100, batch_runs=100, target_spread=0.0, max_seconds=1e9)
    repeatability = {}
    seconds = {}
    for label, policy in (("adaptive", TimingPolicy()), ("fixed", fixed)):
        started = time.perf_counter()
        first = [measure_key(key, threads=1, policy=policy).median_ms for key in sample]
        seconds[label] = (time.perf_counter() - started) / len(sample)
        second = [measure_key(key, threads=1, policy=policy).median_ms for key in sample]
        repeatability[label] = float(np.median(np.abs(np.asarray(second) / np.asarray(first) - 1)))
    baseline_per_key = seconds["fixed"]

    print()
    print(f"{'protocol':46} {'s/key':>7} {'whole space (s)':>16} {'repeat |change|':>16}")
    rows = [
        ("hwnas adaptive, whole space", per_key, repeatability["adaptive"]),
        (f"hwnas adaptive, sample of {len(sample)}", seconds["adaptive"], repeatability["adaptive"]),
        (f"baseline fixed 100 runs, sample of {len(sample)}", baseline_per_key, repeatability["fixed"]),
    ]
    for label, seconds_per_key, repeat in rows:
        print(f"{label:46} {seconds_per_key:7.3f} {seconds_per_key * len(keys):16.1f} {repeat:15.2%}")
    if summary.measured_now == len(keys):
        verdict = "PASS" if ours <= 180 else "FAIL"
        print(f"\nprofiled all {len(keys)} keys in {ours:.1f} s (target <= 180 s): {verdict}")
    else:
        print(f"\nresumed: {summary.measured_now} keys measured in {ours:.1f} s; use --fresh for the full figure")


if __name__ == "__main__":
    main()
