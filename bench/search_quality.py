"""Search quality on scikit-learn's digits: hwnas (evolution + NetAdapt) vs random search vs
MobileNetV3-Small scaled to the budget, same training recipe, same number of trained candidates.

Budget: half the measured latency of MobileNetV3-Small 1.0 at the same resolution on this machine.
Target: hwnas best on accuracy, and every winner's measured latency within the budget (+5% noise).

    python -m bench.search_quality [--seeds 0 1 2] [--effort quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import bench_sessions, ensure_local_device, machine_line
from latency_lut.kit_runner import TimingPolicy
from latency_lut.profiler import measure_key, measure_network
from nas.latency import check_device, load_predictor, profile_device
from nas.search.request import SearchRequest
from nas.search.runner import MemoryRecorder, run_search, search_space_for
from search_spaces import reference_spec

DEVICE = "bench-1t"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--effort", default="quick")
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()

    sessions = bench_sessions()
    ensure_local_device(sessions, DEVICE, threads=1)
    reference = reference_spec("mobilenet_v3_small", 1.0, args.resolution, num_classes=10)
    reference_ms = measure_network(reference, 1, TimingPolicy()).median_ms
    budget = 0.5 * reference_ms
    base = {"device": DEVICE, "dataset": "digits", "budget_ms": budget, "effort": args.effort,
            "resolution": args.resolution}  # fmt: skip
    space = search_space_for(SearchRequest(**base), 10)
    profile_device(sessions, DEVICE, space.block_keys(), TimingPolicy())
    # A fresh calibration at this scope each run (the machine's speed drifts between runs).
    report = check_device(sessions, DEVICE, space, n=10, n_calibration=24, seed=99)
    calibrated = report.score("calibrated")
    print(f"machine: {machine_line()}")
    print(f"MobileNetV3-Small 1.0 at {args.resolution}px: {reference_ms:.4f} ms measured; budget {budget:.4f} ms")
    print(f"calibration at this scope: 24 networks; {calibrated.within_5pct:.0%} of 10 held out within 5%\n")

    def on_demand(keys: list[str]) -> dict[str, float]:
        return {key: measure_key(key, 1, TimingPolicy()).median_ms for key in keys}

    rows: dict[str, list[tuple[float, float]]] = {"hwnas": [], "random": [], "mobilenet_v3_small": []}
    with tempfile.TemporaryDirectory() as artifacts:
        for seed in args.seeds:
            for method, strategy in (("hwnas", "evolution"), ("random", "random")):
                hwnas = method == "hwnas"
                request = SearchRequest(**base, strategy=strategy, seed=seed, netadapt=hwnas, baseline=hwnas)
                recorder = MemoryRecorder()
                outcome = run_search(
                    request,
                    load_predictor(sessions, DEVICE, space),
                    recorder,
                    Path(artifacts) / f"{method}-{seed}",
                    measure_locally=True,
                    latency_for_missing=on_demand,
                )
                rows[method].append((outcome.winner.accuracy, outcome.winner.measured_ms or float("nan")))
                if hwnas and outcome.baseline is not None:
                    rows["mobilenet_v3_small"].append((outcome.baseline.accuracy, outcome.baseline.measured_ms))
                winner = outcome.winner
                line = f"seed {seed} {method:8} acc {winner.accuracy:.4f} measured {winner.measured_ms:.4f} ms"
                print(f"{line} ({outcome.trials} trials)", flush=True)
                for kind, message, _ in recorder.events:
                    if kind == "measure":
                        print(f"    budget check: {message}", flush=True)

    print(f"\n{'method':22} {'accuracy (mean +- std)':>24} {'measured ms (mean)':>19} {'within budget+5%':>17}")
    for method, values in rows.items():
        if not values:
            continue
        acc = np.array([a for a, _ in values])
        lat = np.array([m for _, m in values])
        within = np.mean(lat <= budget * 1.05)
        print(f"{method:22} {acc.mean():15.4f} +- {acc.std():.4f} {lat.mean():19.4f} {within:16.0%}")
    best = max(rows, key=lambda m: np.mean([a for a, _ in rows[m]]) if rows[m] else -1)
    all_within = all(m <= budget * 1.05 for values in rows.values() for _, m in values)
    verdict = "PASS" if best == "hwnas" and all_within else "FAIL"
    print(f"\ntarget (hwnas most accurate, every winner within budget + 5%): {verdict}")


if __name__ == "__main__":
    main()
