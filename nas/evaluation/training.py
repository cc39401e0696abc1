"""Short, seeded training runs: how a candidate's accuracy is measured.

One epoch loop serves both a fresh network (`train_and_evaluate`) and one that already has weights
(`fine_tune`, as NetAdapt does after pruning). Validation top-1 accuracy is taken after every epoch
and handed to `on_epoch`, so an early-stopping scheduler (ASHA) or a cancel request sees the curve
and can end the run between epochs.

Runs are deterministic on CPU for a given seed and thread count: weights and dropout draw from a
forked torch RNG seeded with the recipe's seed (the caller's global RNG is left untouched), and the
batch order comes from a numpy Generator with the same seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nas.evaluation.augmentation import AugmentMode, BatchAugmenter, resolve_augment
from nas.evaluation.data import TrainingData, check_spec_matches, check_training_data
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import build_model

# on_epoch(epochs_completed, val_accuracy, mean_train_loss) -> True to stop after this epoch.
EpochCallback = Callable[[int, float, float], bool | None]

EVAL_BATCH_SIZE = 512


class TrainingRecipe(BaseModel):
    """How a candidate is trained. Frozen, so one recipe can be shared by every trial of a search."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    epochs: int = Field(default=3, ge=1, le=1000)
    batch_size: int = Field(default=64, ge=2, le=8192, description="at least 2: BatchNorm needs two samples")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.05, gt=0.0, description="peak learning rate (after warmup)")
    weight_decay: float = Field(default=5e-5, ge=0.0, description="not applied to BatchNorm weights or biases")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD only (Nesterov when > 0)")
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0)
    warmup_epochs: int = Field(default=0, ge=0, description="linear warmup, then cosine decay per step")
    seed: int = Field(default=0, ge=0, lt=2**63)
    max_train_images: int | None = Field(default=None, ge=2, description="a seeded random subset of the train part")
    min_epoch_images: int | None = Field(
        default=None,
        ge=1,
        description="an epoch over a smaller train part passes over it several times (each pass a fresh "
        "shuffle) to see at least this many images, so a tiny dataset still gets enough optimizer steps",
    )
    augment: AugmentMode = Field(
        default="none",
        description="random shifts/zooms (and mirror images) of train batches; auto: shifts when the train "
        "part is smaller than min_epoch_images (nas/evaluation/augmentation.py)",
    )
    bn_recalibration_images: int = Field(
        default=512,
        ge=0,
        description="train images whose batch statistics replace BatchNorm's running ones before each "
        "validation (0: keep the running averages)",
    )

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> TrainingRecipe:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs})")
        return self


@dataclass(eq=False)
class TrainingResult:
    """The outcome of one run. `model` is the network after its last epoch, in eval mode.

    A diverged run (non-finite loss or weights) reports accuracy 0 for the epoch it diverged in and
    for `final_accuracy` and `best_accuracy`: its weights are unusable. That epoch's train loss is NaN.
    """

    final_accuracy: float
    best_accuracy: float
    epoch_accuracies: list[float]
    epoch_train_losses: list[float]
    epochs_run: int
    stopped_early: bool
    diverged: bool
    train_seconds: float
    model: nn.Module = field(repr=False)

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the best validation accuracy (the first one on ties); 0 if no epoch ran."""
        if not self.epoch_accuracies:
            return 0
        return int(np.argmax(self.epoch_accuracies)) + 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trained weights, e.g. for `torch.save` when this candidate is the winner."""
        return self.model.state_dict()


def train_and_evaluate(
    spec: ArchSpec,
    data: TrainingData,
    recipe: TrainingRecipe,
    on_epoch: EpochCallback | None = None,
) -> TrainingResult:
    """Build `spec` from fresh (seeded) weights, train it with `recipe` and validate after every epoch.

    Images whose size differs from `spec.resolution` are resized per batch (bilinear), so one split
    serves every resolution of a space. ValueError when the spec's input channels or class count
    differ from the data's.
    """
    check_training_data(data)
    check_spec_matches(spec, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_model(spec)
        return _run_epochs(model, data, recipe, spec.resolution, on_epoch)


def fine_tune(
    model: nn.Module,
    data: TrainingData,
    recipe: TrainingRecipe,
    on_epoch: EpochCallback | None = None,
) -> TrainingResult:
    """Keep training `model` (in place) with `recipe`; the result's `model` is the same object.

    A model built by `build_model` carries its spec, which is checked against the data and fixes
    the input resolution; any other module is trained at the data's own resolution and must map a
    batch to `num_classes` logits (ValueError otherwise).
    """
    check_training_data(data)
    spec = getattr(model, "spec", None)
    resolution: int | None = None
    if isinstance(spec, ArchSpec):
        check_spec_matches(spec, data)
        resolution = spec.resolution
    else:
        _check_logits(model, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        return _run_epochs(model, data, recipe, resolution, on_epoch)


def evaluate_accuracy(
    model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, resolution: int | None
) -> float:
    """Top-1 accuracy of `model` (switched to eval mode) on the given images."""
    x = torch.as_tensor(images)
    y = torch.as_tensor(labels)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(x), EVAL_BATCH_SIZE):
            logits = model(_prepare_batch(x[start : start + EVAL_BATCH_SIZE], resolution))
            correct += int((logits.argmax(dim=1) == y[start : start + EVAL_BATCH_SIZE]).sum())
    return correct / len(x)


def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int, resolution: int | None) -> None:
    """Replace every BatchNorm's running statistics by their average over full batches of `images`.

    A short run moves the weights so fast (depthwise kernels start tiny) that the running averages
    describe networks several steps old; validated with them, a network that fits its training
    data can score chance. Recomputing them on the current weights ("precise BN") costs a few
    forward passes. Batches of `batch_size` match what training normalised with.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(images) < 2:
        return
    full = max(1, len(images) // batch_size) * batch_size  # one short batch only when there is no full one
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    model.train()
    try:
        with torch.no_grad():
            for start in range(0, min(full, len(images)), batch_size):
                model(_prepare_batch(images[start : start + batch_size], resolution))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
    model.eval()


# --- the one epoch loop ----------------------------------------------------------------------------


def _run_epochs(
    model: nn.Module,
    data: TrainingData,
    recipe: TrainingRecipe,
    resolution: int | None,
    on_epoch: EpochCallback | None,
) -> TrainingResult:
    started = time.perf_counter()
    rng = np.random.default_rng(recipe.seed)
    x_train, y_train = train_subset(
        torch.as_tensor(np.asarray(data.x_train)), data.y_train, recipe.max_train_images, rng
    )
    x_val = torch.as_tensor(np.asarray(data.x_val))
    y_val = torch.as_tensor(np.asarray(data.y_val, dtype=np.int64))
    n_train = len(x_train)
    passes = epoch_passes(n_train, recipe.min_epoch_images)
    steps_per_epoch = count_steps(n_train * passes, recipe.batch_size)
    warmup_steps = recipe.warmup_epochs * steps_per_epoch
    total_steps = recipe.epochs * steps_per_epoch
    optimizer = make_optimizer(model, recipe)
    augment = BatchAugmenter(resolve_augment(recipe.augment, n_train, recipe.min_epoch_images), recipe.seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    accuracies: list[float] = []
    losses: list[float] = []
    stopped_early = diverged = False
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = torch.as_tensor(np.concatenate([rng.permutation(n_train) for _ in range(passes)]))
        loss_sum, seen = 0.0, 0
        for batch in range(steps_per_epoch):
            index = order[batch * recipe.batch_size : (batch + 1) * recipe.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(recipe.lr, step, warmup_steps, total_steps)
            loss = loss_fn(model(augment(_prepare_batch(x_train[index], resolution))), y_train[index])
            if not torch.isfinite(loss):
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            seen += len(index)
            step += 1
        diverged = diverged or not _finite_parameters(model)
        if diverged:
            accuracies.append(0.0)
            losses.append(math.nan)
            break
        if recipe.bn_recalibration_images:
            calibration = order[: min(n_train, max(recipe.batch_size, recipe.bn_recalibration_images))]
            recalibrate_batchnorm(model, x_train[calibration], recipe.batch_size, resolution)
        accuracy = evaluate_accuracy(model, x_val, y_val, resolution)
        train_loss = loss_sum / seen
        accuracies.append(accuracy)
        losses.append(train_loss)
        if on_epoch is not None and on_epoch(epoch, accuracy, train_loss) and epoch < recipe.epochs:
            stopped_early = True
            break

    model.eval()
    return TrainingResult(
        final_accuracy=0.0 if diverged else accuracies[-1],
        best_accuracy=0.0 if diverged else max(accuracies),
        epoch_accuracies=accuracies,
        epoch_train_losses=losses,
        epochs_run=len(accuracies),
        stopped_early=stopped_early,
        diverged=diverged,
        train_seconds=time.perf_counter() - started,
        model=model,
    )


def train_subset(
    x_train: torch.Tensor, labels: object, max_images: int | None, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The train part as tensors, cut to a seeded random `max_images` of it when that is fewer."""
    y_train = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if max_images is not None and max_images < len(x_train):
        subset = torch.as_tensor(np.sort(rng.choice(len(x_train), max_images, replace=False)))
        x_train, y_train = x_train[subset], y_train[subset]
    return x_train, y_train


def epoch_passes(n_train: int, min_epoch_images: int | None) -> int:
    """Whole passes over `n_train` images that one epoch makes to see at least `min_epoch_images`."""
    return 1 if min_epoch_images is None or n_train >= min_epoch_images else math.ceil(min_epoch_images / n_train)


def count_steps(n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch; ValueError when there are none. A last batch of one image is dropped:
    BatchNorm cannot normalise over a single sample."""
    steps = n_train // batch_size + (1 if n_train % batch_size >= 2 else 0)
    if steps == 0:
        raise ValueError(f"the train part has {n_train} image(s); at least 2 are needed")
    return steps


def cosine_lr(peak: float, step: int, warmup: int, total: int) -> float:
    """Per-step learning rate: linear warmup to `peak`, then half a cosine down towards zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


class OptimizerRecipe(Protocol):
    optimizer: Literal["sgd", "adamw"]
    lr: float
    weight_decay: float
    momentum: float


def make_optimizer(
    model: nn.Module, recipe: OptimizerRecipe, undecayed: Callable[[str], bool] = lambda name: False
) -> torch.optim.Optimizer:
    """AdamW or (Nesterov) SGD. Decaying BatchNorm scales and biases only fights the normalisation, so
    1-d parameters (and those `undecayed` names) are not decayed."""
    decayed: list[nn.Parameter] = []
    kept: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (kept if parameter.ndim <= 1 or undecayed(name) else decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": recipe.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)


def _prepare_batch(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    x = images.float()
    if resolution is None or x.shape[-2:] == (resolution, resolution):
        return x
    shrinking = x.shape[-1] > resolution
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=shrinking)


def _finite_parameters(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _check_logits(model: nn.Module, data: TrainingData) -> None:
    probe = torch.as_tensor(np.asarray(data.x_val[:2])).float()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(probe)
    except RuntimeError as error:
        raise ValueError(f"the model cannot take this data's images {tuple(probe.shape[1:])}: {error}") from error
    finally:
        model.train(was_training)
    if logits.ndim != 2 or logits.shape[1] != data.num_classes:
        raise ValueError(f"the model gives logits of shape {tuple(logits.shape)}; expected (N, {data.num_classes})")
