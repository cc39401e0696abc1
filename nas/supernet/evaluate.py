"""Scoring members of a trained supernet with the weights they inherit.

A member's accuracy is measured in place: its BatchNorm statistics are recomputed on a fixed,
seeded subset of the training images (the same subset for every member, so members are compared
on equal terms), then the validation images run through it in eval mode. Nothing is copied, so a
member costs two forward passes; `calibrated_network` copies one out when it is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nas.evaluation.data import TrainingData, check_training_data
from nas.supernet.model import Architecture, SuperNet
from search_spaces.builder import Network

DEFAULT_CALIBRATION_IMAGES = 256
EVAL_BATCH_SIZE = 512


def calibration_subset(data: TrainingData, count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """Indices of `count` training images (all of them when fewer), drawn once from `seed`, sorted."""
    n_train = len(data.x_train)
    if count >= n_train:
        return np.arange(n_train)
    return np.sort(np.random.default_rng(seed).choice(n_train, count, replace=False))


@dataclass(frozen=True)
class InheritedScore:
    """Validation top-1 accuracy and mean cross-entropy. On a small validation set the loss is the
    finer ranking signal: accuracies of similar networks tie on a few hundred images."""

    accuracy: float
    loss: float


class InheritedEvaluator:
    """Holds the calibration and validation tensors of one dataset, to score many members cheaply."""

    def __init__(
        self,
        supernet: SuperNet,
        data: TrainingData,
        *,
        calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
        seed: int = 0,
        resolution: int | None = None,
    ) -> None:
        check_training_data(data)
        if data.in_channels != 3:
            raise ValueError(f"the supernet takes 3-channel images, the data has {data.in_channels}")
        if data.num_classes != supernet.space.num_classes:
            raise ValueError(
                f"the supernet predicts {supernet.space.num_classes} classes, the data has {data.num_classes}"
            )
        if calibration_images < 2:
            raise ValueError(f"calibration_images must be at least 2, got {calibration_images}")
        self.supernet = supernet
        subset = calibration_subset(data, calibration_images, seed)
        self.calibration = resize_images(torch.as_tensor(np.asarray(data.x_train)[subset]), resolution)
        self.x_val = resize_images(torch.as_tensor(np.asarray(data.x_val)), resolution)
        self.y_val = torch.as_tensor(np.asarray(data.y_val, dtype=np.int64))

    def accuracy(self, arch: Architecture) -> float:
        """Top-1 validation accuracy of `arch` (spec or genome) with inherited weights.

        Leaves the supernet in eval mode, with `arch` active and calibrated."""
        return self.score(arch).accuracy

    def accuracies(self, archs: Sequence[Architecture]) -> np.ndarray:
        return np.asarray([self.accuracy(arch) for arch in archs], dtype=np.float64)

    def score(self, arch: Architecture) -> InheritedScore:
        """Accuracy and mean cross-entropy on the validation images, from the same forward pass."""
        supernet = self.supernet
        supernet.set_active(arch)
        supernet.calibrate(self.calibration)
        supernet.eval()
        correct, loss = 0, 0.0
        with torch.inference_mode():
            for start in range(0, len(self.x_val), EVAL_BATCH_SIZE):
                labels = self.y_val[start : start + EVAL_BATCH_SIZE]
                logits = supernet(self.x_val[start : start + EVAL_BATCH_SIZE])
                correct += int((logits.argmax(dim=1) == labels).sum())
                loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        return InheritedScore(accuracy=correct / len(self.x_val), loss=loss / len(self.x_val))


def inherited_accuracy(
    supernet: SuperNet,
    arch: Architecture,
    data: TrainingData,
    *,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    seed: int = 0,
    resolution: int | None = None,
) -> float:
    """Validation accuracy of one member; for many, build one `InheritedEvaluator` so the data is
    prepared once.

    `resolution`: the image size members run at (default: the data's own, e.g. the proxy size).
    """
    evaluator = InheritedEvaluator(
        supernet, data, calibration_images=calibration_images, seed=seed, resolution=resolution
    )
    return evaluator.accuracy(arch)


def calibrated_network(
    supernet: SuperNet,
    arch: Architecture,
    data: TrainingData,
    *,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    seed: int = 0,
    resolution: int | None = None,
) -> Network:
    """The member as a plain network with inherited weights and its own BatchNorm statistics (eval mode):
    its validation accuracy is `inherited_accuracy`'s; ready to fine-tune or export."""
    subset = calibration_subset(data, calibration_images, seed)
    supernet.set_active(arch)
    supernet.calibrate(resize_images(torch.as_tensor(np.asarray(data.x_train)[subset]), resolution))
    return supernet.extract(arch).eval()


def resize_images(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Float NCHW images at `resolution` (bilinear, antialiased when shrinking); unchanged when None."""
    x = images.float()
    if resolution is None or x.shape[-2:] == (resolution, resolution):
        return x
    shrinking = x.shape[-1] > resolution
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=shrinking)
