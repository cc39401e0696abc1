"""Does the winner's final training gain from starting at the weights it inherits from the supernet?

For each dataset and seed: train the supernet the `supernet` strategy trains (its `quick` recipe, 32
px), score `--members` random members with inherited weights, take the `--top` with the lowest
inherited loss (what evolution's fitness prefers), and train each with the final recipe of the
`--effort` preset twice: from random weights (as every other strategy's winner, and the baseline) and
from its inherited weights (`calibrated_network`: supernet slices, BatchNorm recalibrated). Prints
validation and test accuracy of both, side by side, and the mean gain. Test images never select
anything here.

    python -m bench.supernet_warm_start [--datasets photos digits] [--seeds 0 1] [--top 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.common import machine_line
from nas.evaluation.training import evaluate_accuracy, fine_tune, train_and_evaluate
from nas.search.request import SearchRequest
from nas.search.runner import load_split, search_space_for, training_recipe
from nas.search.supernet_search import supernet_recipe
from nas.supernet import InheritedEvaluator, calibrated_network, train_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["photos", "digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--members", type=int, default=150, help="random members scored with inherited weights")
    parser.add_argument("--top", type=int, default=3, help="members (lowest inherited loss) trained both ways")
    parser.add_argument("--effort", default="quick", help="the preset whose supernet and final recipes are used")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine_line()}; torch threads {args.threads}")

    gains: dict[str, list[tuple[float, float]]] = {}
    for dataset in args.datasets:
        for seed in args.seeds:
            request = SearchRequest(
                device="bench", dataset=dataset, budget_ms=1.0, effort=args.effort, resolution=32, seed=seed
            )
            split = load_split(request, 32)
            space = search_space_for(request, split.num_classes)
            started = time.perf_counter()
            supernet = train_supernet(space, split, supernet_recipe(request)).supernet
            trained_s = time.perf_counter() - started
            evaluator = InheritedEvaluator(supernet, split, seed=seed)
            genomes = space.sample_population(args.members, np.random.default_rng(seed))
            losses = [evaluator.score(genome).loss for genome in genomes]
            final = training_recipe(request, request.preset.final_epochs)
            print(
                f"\n{dataset} seed {seed}: {len(split.x_train)} train / {len(split.x_val)} val / "
                f"{len(split.x_test)} test; supernet {trained_s:.0f} s; final recipe {final.epochs} epochs, "
                f"lr {final.lr:g}",
                flush=True,
            )
            print(f"  {'member':>6} {'inherited val':>14} {'random: val / test':>20} {'supernet: val / test':>22}")
            for rank, index in enumerate(np.argsort(losses)[: args.top]):
                spec = space.decode(genomes[index])
                scratch = train_and_evaluate(spec, split, final)
                scratch_test = evaluate_accuracy(scratch.model, split.x_test, split.y_test, 32)
                network = calibrated_network(supernet, spec, split, seed=seed)
                inherited = evaluate_accuracy(network, split.x_val, split.y_val, 32)
                network.spec = spec
                warm = fine_tune(network, split, final)
                warm_test = evaluate_accuracy(warm.model, split.x_test, split.y_test, 32)
                gains.setdefault(dataset, []).append((warm.final_accuracy - scratch.final_accuracy,
                                                      warm_test - scratch_test))  # fmt: skip
                print(
                    f"  {rank:>6} {inherited:14.3f} {scratch.final_accuracy:11.3f} / {scratch_test:.3f} "
                    f"{warm.final_accuracy:13.3f} / {warm_test:.3f}",
                    flush=True,
                )
    print("\nmean gain of starting from the supernet's weights (points; validation / test):")
    for dataset, rows in gains.items():
        val, test = np.asarray(rows).T * 100
        print(
            f"  {dataset:8} {val.mean():+.1f} / {test.mean():+.1f} over {len(rows)} trainings "
            f"(test gain min {test.min():+.1f}, max {test.max():+.1f})"
        )


if __name__ == "__main__":
    main()
