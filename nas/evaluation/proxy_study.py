"""How well does a zero-cost proxy rank trained accuracy? A small, real measurement.

Samples N architectures of `mobilenet_v3_small` at 32 px (10 classes, 1-channel stem), trains each
briefly on scikit-learn's handwritten digits (8x8 upsampled to 32x32), scores each with the proxies,
and prints Spearman and Kendall rank correlations between every score and the trained accuracy,
with parameter count and multiply-adds as the baselines a proxy has to beat.

    python -m nas.evaluation.proxy_study --n 30 --epochs 3

Runs on one torch thread (the machine is shared); results are in docs/zero_cost_proxy.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from nas.evaluation.data import ArrayData, spec_for_data
from nas.evaluation.proxy import PROXY_METHODS, proxy_score
from nas.evaluation.training import TrainingRecipe, train_and_evaluate
from search_spaces.arch_spec import ArchSpec
from search_spaces.counting import count_spec
from search_spaces.space import get_space

STUDY_RECIPE = TrainingRecipe(
    epochs=3, batch_size=64, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-5, label_smoothing=0.1, seed=0
)


def digits_data(resolution: int = 32, val_fraction: float = 0.2, seed: int = 0) -> ArrayData:
    """scikit-learn's 1,797 handwritten digits, upsampled (bilinear) and standardised on the train part.

    A stratified split: every class keeps `val_fraction` of its images for validation.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False).numpy()
    labels = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=val_fraction, stratify=labels, random_state=seed
    )
    mean, std = float(x_train.mean()), float(x_train.std())
    return ArrayData(
        x_train=((x_train - mean) / std).astype(np.float32),
        y_train=y_train,
        x_val=((x_val - mean) / std).astype(np.float32),
        y_val=y_val,
        num_classes=10,
        in_channels=1,
    )


def sample_specs(n: int, seed: int, data: ArrayData, resolution: int = 32) -> list[ArchSpec]:
    """`n` distinct uniformly sampled members of `mobilenet_v3_small`, adapted to the data."""
    space = get_space("mobilenet_v3_small").with_options(resolutions=[resolution], num_classes=data.num_classes)
    rng = np.random.default_rng(seed)
    specs: dict[str, ArchSpec] = {}
    while len(specs) < n:
        spec = spec_for_data(space.decode(space.sample(rng)), data)
        specs.setdefault(spec.content_hash(), spec)
    return list(specs.values())


@dataclass(frozen=True)
class StudyRow:
    arch: str
    params: int
    madds: int
    count_seconds: float
    accuracy: float
    train_seconds: float
    scores: dict[str, float]
    score_seconds: dict[str, float]


def rank_correlations(predictor: Sequence[float], accuracy: Sequence[float]) -> tuple[float, float]:
    """(Spearman rho, Kendall tau-b) between a predictor and accuracy."""
    rho = stats.spearmanr(predictor, accuracy).statistic
    tau = stats.kendalltau(predictor, accuracy).statistic
    return float(rho), float(tau)


def run_study(n: int, recipe: TrainingRecipe, seed: int, batch_size: int, verbose: bool = True) -> list[StudyRow]:
    """`seed` picks the architectures, the data split and the proxies' weights and batch; the recipe's
    own seed drives training, so re-running with another recipe seed measures training noise."""
    data = digits_data(seed=seed)
    rows = []
    for index, spec in enumerate(sample_specs(n, seed, data)):
        scores, score_seconds = {}, {}
        for method in PROXY_METHODS:
            started = time.perf_counter()
            scores[method] = proxy_score(spec, data, batch_size=batch_size, seed=seed, method=method)
            score_seconds[method] = time.perf_counter() - started
        result = train_and_evaluate(spec, data, recipe)
        started = time.perf_counter()
        counts = count_spec(spec)
        count_seconds = time.perf_counter() - started
        row = StudyRow(
            arch=spec.to_string(),
            params=counts.params,
            madds=counts.madds,
            count_seconds=count_seconds,
            accuracy=result.final_accuracy,
            train_seconds=result.train_seconds,
            scores=scores,
            score_seconds=score_seconds,
        )
        rows.append(row)
        if verbose:
            shown = "  ".join(f"{m} {s:9.2f} ({score_seconds[m] * 1000:.0f} ms)" for m, s in scores.items())
            print(
                f"[{index + 1:3d}/{n}] acc {row.accuracy:.4f} ({row.train_seconds:5.1f} s)  {shown}  "
                f"params {row.params:,}  madds {row.madds:,}",
                flush=True,
            )
    return rows


def summarise(rows: Sequence[StudyRow]) -> dict[str, dict[str, float]]:
    """Per predictor: Spearman, Kendall, and mean seconds per network."""
    accuracy = [row.accuracy for row in rows]
    summary = {}
    for method in PROXY_METHODS:
        rho, tau = rank_correlations([row.scores[method] for row in rows], accuracy)
        seconds = float(np.mean([row.score_seconds[method] for row in rows]))
        summary[method] = {"spearman": rho, "kendall": tau, "seconds_per_network": seconds}
    count_seconds = float(np.mean([row.count_seconds for row in rows]))
    for baseline in ("params", "madds"):  # both from one `count_spec` call, arithmetic on the spec
        rho, tau = rank_correlations([getattr(row, baseline) for row in rows], accuracy)
        summary[baseline] = {"spearman": rho, "kendall": tau, "seconds_per_network": count_seconds}
    summary["training"] = {
        "spearman": 1.0,
        "kendall": 1.0,
        "seconds_per_network": float(np.mean([row.train_seconds for row in rows])),
    }
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="architectures to sample")
    parser.add_argument("--epochs", type=int, default=STUDY_RECIPE.epochs)
    parser.add_argument("--lr", type=float, default=STUDY_RECIPE.lr)
    parser.add_argument("--seed", type=int, default=0, help="architecture sample, data split, proxy weights and batch")
    parser.add_argument("--train-seed", type=int, default=None, help="training weights and batches (default: --seed)")
    parser.add_argument("--max-train-images", type=int, default=None, help="train on a seeded subset")
    parser.add_argument("--proxy-batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write every row and the summary to this file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    recipe = TrainingRecipe.model_validate(
        {
            **STUDY_RECIPE.model_dump(),
            "epochs": args.epochs,
            "lr": args.lr,
            "seed": args.seed if args.train_seed is None else args.train_seed,
            "max_train_images": args.max_train_images,
        }
    )
    print(f"recipe: {recipe.model_dump()}  proxy batch {args.proxy_batch_size}  torch threads {args.threads}")
    rows = run_study(args.n, recipe, args.seed, args.proxy_batch_size)
    summary = summarise(rows)
    accuracy = np.array([row.accuracy for row in rows])
    print(
        f"\n{len(rows)} networks, trained accuracy {accuracy.min():.4f}..{accuracy.max():.4f} "
        f"(mean {accuracy.mean():.4f}, std {accuracy.std():.4f})"
    )
    print(f"{'predictor':<10} {'spearman':>9} {'kendall':>9} {'s/network':>10}")
    for name, values in summary.items():
        print(f"{name:<10} {values['spearman']:9.3f} {values['kendall']:9.3f} {values['seconds_per_network']:10.4f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"recipe": recipe.model_dump(), "rows": [asdict(r) for r in rows], "summary": summary}, handle)


if __name__ == "__main__":
    main()
