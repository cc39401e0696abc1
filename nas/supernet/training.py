"""Training a supernet with the sandwich rule (BigNAS, AttentiveNAS).

Every step runs the largest member, the smallest member and `random_subnets` uniformly sampled
ones on the same batch, accumulates their gradients and takes one optimizer step: the two ends of
the space bound the performance of everything between them, so training both every step keeps the
whole space trained. With in-place distillation the largest member learns from the labels and every
other member from the largest's (detached) predictions, which are softer and consistent across
members. `bench/supernet_rank.py` measures both: on digits distillation lowers the members' mean
inherited accuracy a little but ranks them more like training from scratch does, and ranking is
what a search needs, so it is on by default.

Dropout regularises only the largest member (BigNAS). After every epoch the largest and smallest
members are scored with inherited weights (BatchNorm recalibrated) and handed to `on_epoch`, which
can stop the run (Ray Tune reporting, cancel). Deterministic on CPU for a seed and thread count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nas.evaluation.augmentation import AugmentMode, BatchAugmenter, resolve_augment
from nas.evaluation.data import TrainingData, check_training_data
from nas.evaluation.training import cosine_lr, count_steps, epoch_passes, make_optimizer, train_subset
from nas.supernet.evaluate import InheritedEvaluator, resize_images
from nas.supernet.model import SuperNet
from search_spaces.space import SearchSpace

# on_epoch(epochs_completed, metrics) -> True to stop after this epoch.
SupernetEpochCallback = Callable[[int, dict[str, float]], bool | None]


class SupernetRecipe(BaseModel):
    """How a supernet is trained. Frozen and serialisable: part of the trained artifact's key."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    epochs: int = Field(default=12, ge=1, le=1000)
    batch_size: int = Field(default=64, ge=2, le=8192)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(default=4e-3, gt=0.0, description="peak learning rate (after warmup), cosine decay per step")
    weight_decay: float = Field(default=0.02, ge=0.0, description="not applied to BatchNorm weights or biases")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD only (Nesterov when > 0)")
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0, description="on the labels the largest member sees")
    warmup_epochs: int = Field(default=1, ge=0, description="linear warmup (at most epochs - 1 of it is used)")
    random_subnets: int = Field(default=2, ge=0, le=16, description="sampled members per step besides the two ends")
    distillation: bool = Field(
        default=True,
        description="members other than the largest learn its predictions: on digits at 32 px it ranked members "
        "better (Spearman of inherited loss vs trained accuracy 0.45 against 0.23 without), although their "
        "mean inherited accuracy was lower (0.950 against 0.974)",
    )
    kernel_transform: bool = Field(default=False, description="OFA's learned transform from large to small kernels")
    grad_clip: float | None = Field(default=5.0, gt=0.0, description="clip the accumulated gradient's norm")
    seed: int = Field(default=0, ge=0, lt=2**63)
    max_train_images: int | None = Field(default=None, ge=2, description="a seeded random subset of the train part")
    min_epoch_images: int | None = Field(
        default=None, ge=1, description="an epoch over fewer train images repeats them (reshuffled) to see this many"
    )
    augment: AugmentMode = Field(default="none", description="as TrainingRecipe.augment")
    calibration_images: int = Field(default=256, ge=2, description="BatchNorm recalibration for the per-epoch scores")


@dataclass(eq=False)
class SupernetTrainingResult:
    """`epoch_metrics[i]`: train_loss (the largest member's), largest_accuracy, smallest_accuracy,
    seconds (since the start). A diverged run (non-finite loss) stops; its supernet is unusable."""

    supernet: SuperNet = field(repr=False)
    recipe: SupernetRecipe
    resolution: int
    epoch_metrics: list[dict[str, float]]
    epochs_run: int
    stopped_early: bool
    diverged: bool
    train_seconds: float

    def metadata(self) -> dict[str, Any]:
        """What `save_supernet` should store beside the weights (JSON-serialisable)."""
        return {
            "recipe": self.recipe.model_dump(mode="json"),
            "resolution": self.resolution,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "diverged": self.diverged,
            "train_seconds": self.train_seconds,
            "epoch_metrics": self.epoch_metrics,
        }


def train_supernet(
    space: SearchSpace,
    data: TrainingData,
    recipe: SupernetRecipe | None = None,
    *,
    resolution: int | None = None,
    on_epoch: SupernetEpochCallback | None = None,
) -> SupernetTrainingResult:
    """Train a fresh (seeded) supernet of `space` on `data` with the sandwich rule.

    Members run at `resolution` (default: the data's own, e.g. the search's proxy size; weights do
    not depend on it). UnsupportedSpaceError when the space cannot share weights; ValueError when
    the data is not 3-channel or its class count is not the space's.
    """
    recipe = recipe or SupernetRecipe()
    check_training_data(data)
    if data.in_channels != 3:
        raise ValueError(f"supernet members take 3-channel images; the data has {data.in_channels}")
    if data.num_classes != space.num_classes:
        raise ValueError(f"space {space.name} predicts {space.num_classes} classes; the data has {data.num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        supernet = SuperNet(space, kernel_transform=recipe.kernel_transform)
        return _train(supernet, data, recipe, resolution, on_epoch)


def _train(
    supernet: SuperNet,
    data: TrainingData,
    recipe: SupernetRecipe,
    resolution: int | None,
    on_epoch: SupernetEpochCallback | None,
) -> SupernetTrainingResult:
    started = time.perf_counter()
    rng = np.random.default_rng(recipe.seed)
    x_train, y_train = train_subset(
        resize_images(torch.as_tensor(np.asarray(data.x_train)), resolution),
        data.y_train,
        recipe.max_train_images,
        rng,
    )
    n_train = len(x_train)
    passes = epoch_passes(n_train, recipe.min_epoch_images)
    steps_per_epoch = count_steps(n_train * passes, recipe.batch_size)
    evaluator = InheritedEvaluator(
        supernet, data, calibration_images=recipe.calibration_images, seed=recipe.seed, resolution=resolution
    )
    # The identity-initialised kernel transforms are not decayed either.
    optimizer = make_optimizer(supernet, recipe, undecayed=lambda name: "transforms" in name)
    augment = BatchAugmenter(resolve_augment(recipe.augment, n_train, recipe.min_epoch_images), recipe.seed)
    total_steps = recipe.epochs * steps_per_epoch
    warmup_steps = min(recipe.warmup_epochs, recipe.epochs - 1) * steps_per_epoch
    hard_loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    space = supernet.space

    metrics: list[dict[str, float]] = []
    stopped_early = diverged = False
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        supernet.train()
        order = torch.as_tensor(np.concatenate([rng.permutation(n_train) for _ in range(passes)]))
        loss_sum, seen = 0.0, 0
        for batch in range(steps_per_epoch):
            index = order[batch * recipe.batch_size : (batch + 1) * recipe.batch_size]
            x, y = augment(x_train[index]), y_train[index]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(recipe.lr, step, warmup_steps, total_steps)
            optimizer.zero_grad(set_to_none=True)
            supernet.set_active(supernet.largest_genome(rng))
            logits = supernet(x)
            loss = hard_loss(logits, y)
            if not torch.isfinite(loss):
                diverged = True
                break
            loss.backward()
            teacher = F.softmax(logits.detach(), dim=1) if recipe.distillation else None
            members = [supernet.smallest_genome(rng), *(space.sample(rng) for _ in range(recipe.random_subnets))]
            for genome in members:
                supernet.set_active(genome)
                out = supernet(x, dropout=0.0)
                if teacher is None:
                    member_loss = hard_loss(out, y)
                else:
                    member_loss = -(teacher * F.log_softmax(out, dim=1)).sum(dim=1).mean()
                if not torch.isfinite(member_loss):
                    diverged = True
                    break
                member_loss.backward()
            if diverged:
                break
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(supernet.parameters(), recipe.grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            seen += len(index)
            step += 1
        if diverged:
            metrics.append(
                {"train_loss": math.nan, "largest_accuracy": 0.0, "smallest_accuracy": 0.0, "seconds": _since(started)}
            )
            break
        epoch_metrics = {
            "train_loss": loss_sum / seen,
            "largest_accuracy": evaluator.accuracy(supernet.largest_genome()),
            "smallest_accuracy": evaluator.accuracy(supernet.smallest_genome()),
            "seconds": _since(started),
        }
        metrics.append(epoch_metrics)
        if on_epoch is not None and on_epoch(epoch, dict(epoch_metrics)) and epoch < recipe.epochs:
            stopped_early = True
            break

    supernet.eval()
    return SupernetTrainingResult(
        supernet=supernet,
        recipe=recipe,
        resolution=int(x_train.shape[-1]),
        epoch_metrics=metrics,
        epochs_run=len(metrics),
        stopped_early=stopped_early,
        diverged=diverged,
        train_seconds=_since(started),
    )


def _since(started: float) -> float:
    return time.perf_counter() - started
