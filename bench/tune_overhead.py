"""Trials per minute through Ray Tune vs a plain in-process loop over the same evaluator.

Both sides train the same networks (proposed by the same seeded random strategy) on the same data
with the same recipe, one trial per core. Target: Tune's overhead < 10% of the loop's throughput.

    python -m bench.tune_overhead [--trials 8] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from bench.common import machine_line
from nas.datasets import load_dataset, split_dataset
from nas.evaluation.training import TrainingRecipe, train_and_evaluate
from nas.search.execution import TuneSettings, ensure_ray, run_trials
from nas.strategies import make_strategy
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()

    split = split_dataset(load_dataset("digits:channels=3"), seed=0, resolution=args.resolution)
    space = get_space("mobilenet_v3_small").with_options(resolutions=[args.resolution], num_classes=10)
    recipe = TrainingRecipe(epochs=args.epochs, optimizer="adamw", lr=4e-3, weight_decay=0.02, seed=0)
    cpus = os.cpu_count() or 1

    def price(genomes: np.ndarray) -> np.ndarray:
        return np.ones(len(genomes))  # no budget here: both sides train exactly the same proposals

    def strategy():  # noqa: ANN202
        return make_strategy("random", space=space, budget_ms=1.0, price=price, seed=0)

    def evaluate(spec, on_epoch):  # noqa: ANN001, ANN202
        return train_and_evaluate(spec, split, recipe, on_epoch=on_epoch)

    # Plain loop: the same number of concurrent trainings as Tune runs (one per core), in processes.
    from concurrent.futures import ProcessPoolExecutor

    proposer = strategy()
    specs = [space.decode(proposer.ask()) for _ in range(args.trials)]
    torch.set_num_threads(1)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=cpus, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        loop_accuracies = list(pool.map(_train_one, specs, [split] * len(specs), [recipe] * len(specs)))
    loop_seconds = time.perf_counter() - started

    ensure_ray()
    finished = []
    started = time.perf_counter()
    run_trials(
        strategy(),
        space,
        price,
        evaluate,
        args.trials,
        TuneSettings(epochs=args.epochs, max_concurrent=cpus, use_asha=False),
        finished.append,
    )
    tune_seconds = time.perf_counter() - started
    if sorted(r.spec.content_hash() for r in finished) != sorted(s.content_hash() for s in specs):
        raise SystemExit("Tune and the loop trained different networks; the comparison would be unfair")

    loop_rate = 60 * args.trials / loop_seconds
    tune_rate = 60 * len(finished) / tune_seconds
    overhead = 1 - tune_rate / loop_rate
    print(f"machine: {machine_line()}")
    print(f"{args.trials} trials, {args.epochs} epochs each, digits at {args.resolution}px, {cpus} at a time\n")
    print(f"{'execution':44} {'seconds':>8} {'trials/min':>11}")
    print(f"{'plain loop (process pool, same evaluator)':44} {loop_seconds:8.1f} {loop_rate:11.2f}")
    print(f"{'Ray Tune (searcher + trials + callbacks)':44} {tune_seconds:8.1f} {tune_rate:11.2f}")
    print(f"\nTune overhead: {overhead:.1%} (target < 10%): {'PASS' if overhead < 0.10 else 'FAIL'}")
    print(f"mean accuracy, loop: {np.mean(loop_accuracies):.3f}; Tune: {np.mean([r.accuracy for r in finished]):.3f}")


def _train_one(spec, split, recipe) -> float:  # noqa: ANN001
    return train_and_evaluate(spec, split, recipe).final_accuracy


if __name__ == "__main__":
    main()
