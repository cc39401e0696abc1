"""Does a supernet rank networks the way training them does? Digits at 32 px, MobileNetV3-Small space.

Trains one supernet per variant (sandwich rule; `plain`: hard labels, `distill`: in-place
distillation, `kt`: OFA's kernel transform), scores `n` random members of the search's space with
inherited weights (BatchNorm recalibrated on 256 training images), trains the same members from
scratch with the recipe the search's trials use (`training_recipe` at the chosen effort), and
prints Spearman and Kendall rank correlations and the wall-clock of each part.
`--scratch-seeds 2` also trains every member with a second seed: the seed-to-seed correlation is the
ceiling any cheap estimate can reach against a short training run.

    python -m bench.supernet_rank [--n 30] [--epochs 12] [--variants plain distill kt] [--scratch-seeds 2]

Runs torch on one thread by default: on a shared 2-core machine two threads per process contend
and can run ten times slower.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from bench.common import machine_line
from nas.evaluation.training import train_and_evaluate
from nas.search.request import SearchRequest
from nas.search.runner import load_split, search_space_for, training_recipe
from nas.supernet import InheritedEvaluator, SupernetRecipe, train_supernet
from search_spaces.arch_spec import ArchSpec
from search_spaces.space import SearchSpace

VARIANTS: dict[str, dict[str, bool]] = {
    "plain": {"distillation": False},
    "distill": {"distillation": True},
    "kt": {"distillation": False, "kernel_transform": True},
}


def distinct_members(space: SearchSpace, n: int, seed: int) -> tuple[list[np.ndarray], list[ArchSpec]]:
    rng = np.random.default_rng(seed)
    genomes: dict[str, np.ndarray] = {}
    specs: dict[str, ArchSpec] = {}
    while len(specs) < n:
        genome = space.sample(rng)
        spec = space.decode(genome)
        genomes.setdefault(spec.content_hash(), genome)
        specs.setdefault(spec.content_hash(), spec)
    return list(genomes.values()), list(specs.values())


def correlations(a: np.ndarray, b: np.ndarray) -> str:
    rho = spearmanr(a, b).statistic
    tau = kendalltau(a, b).statistic
    return f"Spearman {rho:+.3f}  Kendall {tau:+.3f}"


def epoch_printer(label: str) -> Callable[[int, dict[str, float]], None]:
    def show(epoch: int, m: dict[str, float]) -> None:
        print(
            f"  [{label}] epoch {epoch:2d}: loss {m['train_loss']:.3f}  largest {m['largest_accuracy']:.3f}  "
            f"smallest {m['smallest_accuracy']:.3f}  ({m['seconds']:.0f} s)",
            flush=True,
        )

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="members compared (inherited vs trained from scratch)")
    parser.add_argument("--epochs", type=int, default=12, help="supernet training epochs")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=["plain", "distill"],
        help="supernets to train: plain (hard labels), distill (in-place distillation), kt (plain + kernel transform)",
    )
    parser.add_argument("--random-subnets", type=int, default=2)
    parser.add_argument("--effort", default="quick", help="the search preset whose trial recipe trains the members")
    parser.add_argument("--scratch-seeds", type=int, default=1, choices=[1, 2])
    parser.add_argument("--speed-n", type=int, default=100, help="extra members timed for seconds per evaluation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every member's accuracies here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    request = SearchRequest(device="bench", dataset="digits", budget_ms=1.0, effort=args.effort, resolution=32)
    split = load_split(request, 32)
    space = search_space_for(request, split.num_classes)
    genomes, specs = distinct_members(space, args.n, args.seed)
    print(f"machine: {machine_line()}; torch threads {args.threads}")
    print(
        f"digits at 32 px: {len(split.x_train)} train / {len(split.x_val)} val; space {space.name} "
        f"({space.size():.3g} members); {args.n} random members\n"
    )

    inherited: dict[str, np.ndarray] = {}
    inherited_loss: dict[str, np.ndarray] = {}
    for variant in args.variants:
        recipe = SupernetRecipe(
            epochs=args.epochs, random_subnets=args.random_subnets, seed=args.seed, **VARIANTS[variant]
        )
        label = variant
        result = train_supernet(space, split, recipe, on_epoch=epoch_printer(label))
        evaluator = InheritedEvaluator(result.supernet, split)
        started = time.perf_counter()
        scores = [evaluator.score(genome) for genome in genomes]
        inherited[variant] = np.asarray([score.accuracy for score in scores])
        inherited_loss[variant] = np.asarray([score.loss for score in scores])
        per_member = (time.perf_counter() - started) / len(genomes)
        print(
            f"{label}: supernet trained in {result.train_seconds:.0f} s ({args.epochs} epochs); "
            f"{args.n} members scored in {per_member * len(genomes):.1f} s ({per_member:.3f} s each); "
            f"inherited accuracy mean {inherited[variant].mean():.3f}, "
            f"min {inherited[variant].min():.3f}, max {inherited[variant].max():.3f}",
            flush=True,
        )
        if args.speed_n and variant == args.variants[0]:
            extra = space.sample_population(args.speed_n, np.random.default_rng(args.seed + 1000))
            started = time.perf_counter()
            evaluator.accuracies(list(extra))
            seconds = (time.perf_counter() - started) / args.speed_n
            print(
                f"  speed: {args.speed_n} more members at {seconds:.3f} s each -> 1000 members in "
                f"{1000 * seconds / 60:.1f} min on {args.threads} thread(s)",
                flush=True,
            )

    scratch_recipe = training_recipe(request, request.preset.epochs)
    print(
        f"\nfrom scratch: the {args.effort!r} trial recipe ({scratch_recipe.epochs} epochs, "
        f"{scratch_recipe.max_train_images} train images, {scratch_recipe.optimizer} lr {scratch_recipe.lr:g})"
    )
    scratch: list[np.ndarray] = []
    for seed_offset in range(args.scratch_seeds):
        recipe = scratch_recipe.model_copy(update={"seed": scratch_recipe.seed + seed_offset})
        started = time.perf_counter()
        accuracies = []
        for index, spec in enumerate(specs):
            accuracies.append(train_and_evaluate(spec, split, recipe).final_accuracy)
            if (index + 1) % 10 == 0:
                print(
                    f"  seed {recipe.seed}: {index + 1}/{len(specs)} trained ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        scratch.append(np.asarray(accuracies))
        seconds = time.perf_counter() - started
        print(
            f"  seed {recipe.seed}: {len(specs)} members in {seconds:.0f} s ({seconds / len(specs):.2f} s each); "
            f"accuracy mean {scratch[-1].mean():.3f}, min {scratch[-1].min():.3f}, max {scratch[-1].max():.3f}"
        )

    print(f"\nrank correlation with from-scratch accuracy ({args.n} members):")
    for variant, values in inherited.items():
        print(f"  inherited accuracy ({variant:8s}) vs seed {scratch_recipe.seed}: {correlations(values, scratch[0])}")
        print(
            f"  inherited -loss    ({variant:8s}) vs seed {scratch_recipe.seed}: "
            f"{correlations(-inherited_loss[variant], scratch[0])}"
        )
    if len(scratch) == 2:
        print(
            f"  from scratch, seed {scratch_recipe.seed} vs seed {scratch_recipe.seed + 1}: "
            f"{correlations(scratch[0], scratch[1])}  (the noise ceiling)"
        )
        mean = (scratch[0] + scratch[1]) / 2
        for variant, values in inherited.items():
            print(f"  inherited accuracy ({variant:8s}) vs mean of both seeds: {correlations(values, mean)}")
            print(
                f"  inherited -loss    ({variant:8s}) vs mean of both seeds: "
                f"{correlations(-inherited_loss[variant], mean)}"
            )

    if args.json is not None:
        record = {
            "specs": [spec.to_string() for spec in specs],
            "inherited": {variant: values.tolist() for variant, values in inherited.items()},
            "inherited_loss": {variant: values.tolist() for variant, values in inherited_loss.items()},
            "scratch": [values.tolist() for values in scratch],
        }
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
