"""Random shifts, zooms and mirror images of training batches, for datasets too small to learn from
as they are.

With a few hundred training images, an epoch that must see `min_epoch_images` shows every image
several times, always the same (session 6's outsider run on 168 drawn shapes: 57% test at `quick`;
with `auto` 66-79% on two seeds, docs/benchmarks.md). Each image of a batch is moved by up to 1/8 of its size
in each direction and zoomed by up to 10% (edges repeat into the uncovered border); `shift_flip`
also mirrors half of them left to right — only right where a mirrored image keeps its label
(photographs of objects, not digits or text), so it is never chosen automatically.

`auto` augments (`shift`) exactly when the train part is smaller than an epoch, i.e. when images
repeat within an epoch; data as large as digits (1,078 train images) or larger is left as it is.
Validation, test and BatchNorm recalibration always see the images unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AugmentMode = Literal["auto", "none", "shift", "shift_flip"]
ResolvedAugment = Literal["none", "shift", "shift_flip"]

MAX_SHIFT = 0.125
"""Largest move, as a fraction of the image's width (and height)."""
MAX_ZOOM = 0.1
"""Largest zoom in or out, as a fraction of the image's size."""
_SEED_SALT = 0x5EED_A06  # the augmentation's generator differs from the weights' and the batch order's


def resolve_augment(mode: AugmentMode, n_train: int, min_epoch_images: int | None) -> ResolvedAugment:
    """What `mode` means for a train part of `n_train` images: `auto` -> `shift` when an epoch must
    repeat them to see `min_epoch_images`, else `none`."""
    if mode != "auto":
        return mode
    return "shift" if min_epoch_images is not None and n_train < min_epoch_images else "none"


class BatchAugmenter:
    """Applies `mode` to float NCHW batches, drawing from its own generator seeded with `seed`:
    the same seed gives the same sequence of transformed batches."""

    def __init__(self, mode: ResolvedAugment, seed: int) -> None:
        if mode not in ("none", "shift", "shift_flip"):
            raise ValueError(f"unknown augmentation {mode!r}; expected none, shift or shift_flip")
        self.mode = mode
        self.generator = torch.Generator().manual_seed((int(seed) ^ _SEED_SALT) % 2**63)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.mode == "none" or images.shape[0] == 0:
            return images
        n = images.shape[0]
        # One affine map per image in normalised coordinates ([-1, 1] spans the image): a shift of
        # MAX_SHIFT of the width is 2 * MAX_SHIFT there.
        shift = (torch.rand(n, 2, generator=self.generator) * 2 - 1) * (2 * MAX_SHIFT)
        scale = 1 + (torch.rand(n, generator=self.generator) * 2 - 1) * MAX_ZOOM
        mirror = torch.ones(n)
        if self.mode == "shift_flip":
            mirror = torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = scale * mirror
        theta[:, 1, 1] = scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
