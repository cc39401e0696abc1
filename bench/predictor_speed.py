"""Architectures priced per second: the vectorised population pricer vs per-architecture Python loops.

Target: >= 1,000,000 architectures/s and >= 100x the loop. Same LUT, same genomes, same run; the
results are checked to agree before any figure is printed.

    python -m bench.predictor_speed [--population 1000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import bench_sessions, ensure_local_device, machine_line
from latency_lut.kit_runner import TimingPolicy
from nas.latency import load_predictor, profile_device
from search_spaces import get_space
from search_spaces.space import GENES_PER_SLOT

DEVICE = "bench-1t"


def loop_prices(pricer, genomes: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """The per-architecture baseline: plain Python over the same precomputed tables."""
    space = pricer.space
    slot_costs = pricer._slot_costs.tolist()  # noqa: SLF001 - same numbers, Python lists
    fixed = pricer._fixed_costs.tolist()  # noqa: SLF001
    fixed_layers = pricer._fixed_layers.tolist()  # noqa: SLF001
    cal = pricer.calibration
    first = space.slot_gene_index(0)
    n_e, n_se, n_a = len(space.expansions), len(space.se_options), len(space.activations)
    out = []
    for genome in genomes.tolist():
        r, w = genome[0], genome[1]
        total, layers = fixed[r][w], fixed_layers[r][w]
        for slot in range(space.n_slots):
            k, e, s, a = genome[first + GENES_PER_SLOT * slot : first + GENES_PER_SLOT * (slot + 1)]
            if k < 0:
                continue
            total += slot_costs[r][w][slot][((k * n_e + e) * n_se + s) * n_a + a]
            layers += 1
        out.append(cal.scale * total + cal.per_layer_ms * layers + cal.offset_ms)
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=1_000_000)
    parser.add_argument("--loop-sample", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-sample", type=int, default=500)
    args = parser.parse_args()

    sessions = bench_sessions()
    ensure_local_device(sessions, DEVICE, threads=1)
    space = get_space("mobilenet_v3_large").with_options(resolutions=[224])
    profile_device(sessions, DEVICE, space.block_keys(), TimingPolicy())
    predictor = load_predictor(sessions, DEVICE, space)
    pricer = predictor.pricer(space)
    # int8: a million genomes take 87 MB instead of 696 MB as int64 (see docs/benchmarks.md).
    genomes = space.sample_population(args.population, np.random.default_rng(0), dtype=np.int8)

    pricer.predict_ms(genomes[:1000])  # warm-up
    timings = []
    for _ in range(args.repeats):  # best of a few: the first big call also pays for fresh memory pages
        started = time.perf_counter()
        vectorised = pricer.predict_ms(genomes)
        timings.append(time.perf_counter() - started)
    vec_rate = len(genomes) / min(timings)

    sample = genomes[: args.loop_sample]
    started = time.perf_counter()
    looped = loop_prices(pricer, sample)
    loop_rate = len(sample) / (time.perf_counter() - started)
    np.testing.assert_allclose(looped, vectorised[: len(sample)], rtol=1e-9)

    decode_sample = genomes[: args.decode_sample]
    started = time.perf_counter()
    decoded = [predictor.predict_ms(space.decode(g)) for g in decode_sample]
    decode_rate = len(decode_sample) / (time.perf_counter() - started)
    np.testing.assert_allclose(decoded, vectorised[: len(decode_sample)], rtol=1e-9)

    print(f"machine: {machine_line()}")
    print(f"space: {space.name} at 224, genome length {space.genome_length}, population {len(genomes):,}\n")
    print(f"{'method':52} {'archs/s':>12} {'vectorised is':>14}")
    print(f"{'vectorised pricer (numpy, int8 genomes)':52} {vec_rate:12,.0f} {'':>14}")
    print(
        f"{'loop: decode to ArchSpec + predict_ms, per architecture':52} {decode_rate:12,.0f} "
        f"{vec_rate / decode_rate:12,.0f}x"
    )
    print(
        f"{'loop: hand-written Python over the same flat tables':52} {loop_rate:12,.0f} {vec_rate / loop_rate:12,.1f}x"
    )
    verdict = "PASS" if vec_rate >= 1_000_000 and vec_rate >= 100 * decode_rate else "FAIL"
    print(f"\ntarget (>= 1,000,000/s and >= 100x the per-architecture predictor loop): {verdict}")


if __name__ == "__main__":
    main()
