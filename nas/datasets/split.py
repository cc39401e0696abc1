"""Deterministic stratified train/validation/test splits, ready for training.

A search compares candidates by validation accuracy, so the split must be the same for every
candidate and every resumed run (same seed -> same split), and every class must be in every part
or a candidate's score depends on which classes happened to land in validation. The test part
(optional) is never used to select anything: it is what the winner and the baseline report, so the
comparison is not won by the network that happened to fit the validation images best.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from nas.datasets.dataset import MIN_RESOLUTION, DatasetError, ImageDataset
from nas.datasets.resize import resize_float

# A constant channel (e.g. an all-black border dataset) has std 0; dividing by this instead keeps it 0.
_MIN_STD = 1e-6
_CHUNK = 1024


def _no_images() -> np.ndarray:
    return np.empty((0,), dtype=np.int64)


@dataclass(frozen=True)
class DatasetSplit:
    """Standardised float32 NCHW train, validation and (optional) test arrays, with what is needed to
    reproduce them.

    `mean` and `std` are the train part's per-channel statistics on the [0, 1] scale; applying
    `(pixels / 255 - mean) / std` to new images (see `standardize`) puts them on the scale the
    searched networks were trained on.
    """

    name: str
    num_classes: int
    in_channels: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    x_test: np.ndarray = field(default_factory=_no_images)
    y_test: np.ndarray = field(default_factory=_no_images)
    test_index: np.ndarray = field(default_factory=_no_images)
    """Positions of the test images in the dataset as loaded (npz: array order)."""

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[-1])

    def standardize(self, images: np.ndarray) -> np.ndarray:
        """uint8 NCHW images (already at `resolution`) -> float32 on this split's scale."""
        scaled = images.astype(np.float32) / np.float32(255.0)
        return _standardize_inplace(scaled, self.mean, self.std)


def split_dataset(
    dataset: ImageDataset,
    val_fraction: float = 0.2,
    seed: int = 0,
    resolution: int | None = None,
    test_fraction: float = 0.0,
) -> DatasetSplit:
    """Split per class, resize to `resolution` (bilinear), scale to [0, 1] and standardise on train stats.

    With `test_fraction` > 0 a test part is held out first (same rules), then validation from the rest;
    with 0 the train/validation split is exactly the two-way one.

    The split depends only on the images' content, labels, `val_fraction` and `seed`: within a class
    images are ordered by a hash of their pixels before the seeded shuffle, so re-uploading the same
    data in another order gives the same split. Per-class validation counts are the largest-remainder
    rounding of `val_fraction * count` (each within one image of exact, summing to the rounded total),
    clamped so each class keeps at least one image in each part.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"{dataset.name}: val_fraction must be strictly between 0 and 1, got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise DatasetError(
            f"{dataset.name}: test_fraction must be in [0, 1) and leave images for training, "
            f"got test {test_fraction} + validation {val_fraction}"
        )
    if resolution is not None and resolution < MIN_RESOLUTION:
        raise DatasetError(f"{dataset.name}: resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    check_splittable(dataset, test_fraction > 0)
    if test_fraction > 0:
        test_index, rest = _stratified_indices(dataset, np.arange(len(dataset)), test_fraction, seed, keep=2)
        # validation's share of what the test part left, so the two fractions are of the whole dataset
        val_index, train_index = _stratified_indices(dataset, rest, val_fraction / (1.0 - test_fraction), seed + 1)
    else:
        test_index = _no_images()
        val_index, train_index = _stratified_indices(dataset, np.arange(len(dataset)), val_fraction, seed)
    size = dataset.resolution if resolution is None else resolution
    x_train = _to_float(dataset.images, train_index, size)
    x_val = _to_float(dataset.images, val_index, size)
    mean, std = _channel_stats(x_train)
    x_test = _to_float(dataset.images, test_index, size)
    return DatasetSplit(
        name=dataset.name,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        x_train=_standardize_inplace(x_train, mean, std),
        y_train=dataset.labels[train_index].astype(np.int64),
        x_val=_standardize_inplace(x_val, mean, std),
        y_val=dataset.labels[val_index].astype(np.int64),
        class_names=dataset.class_names,
        mean=mean,
        std=std,
        x_test=_standardize_inplace(x_test, mean, std),
        y_test=dataset.labels[test_index].astype(np.int64),
        test_index=test_index,
    )


def check_splittable(dataset: ImageDataset, with_test: bool) -> None:
    """Every class needs an image in each part: 2 for train/validation, 3 with a test part."""
    needed = 3 if with_test else 2
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    too_few = [dataset.class_names[k] for k in np.flatnonzero(counts < needed)]
    if too_few:
        parts = "train/validation/test" if with_test else "train/validation"
        raise DatasetError(
            f"{dataset.name}: classes need at least {needed} images to be split into {parts}, too few in {too_few}"
        )


def _stratified_indices(
    dataset: ImageDataset, pool: np.ndarray, fraction: float, seed: int, keep: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(held out, rest) of the images at positions `pool`: per class, `fraction` of them held out,
    at least one, leaving at least `keep` in the rest."""
    labels = dataset.labels[pool]
    counts = np.bincount(labels, minlength=dataset.num_classes)
    held_counts = _largest_remainder(counts * fraction)
    held_counts = np.clip(held_counts, np.minimum(counts, 1), np.maximum(counts - keep, 0))
    keys = _content_keys(dataset.images[pool])
    rng = np.random.default_rng(seed)
    rest_parts, held_parts = [], []
    for label in range(dataset.num_classes):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort(keys[members], kind="stable")]  # order-independent starting point
        members = members[rng.permutation(members.shape[0])]
        held_parts.append(pool[members[: held_counts[label]]])
        rest_parts.append(pool[members[held_counts[label] :]])
    # Sorted, so batches mix classes in dataset order rather than arriving class by class.
    return np.sort(np.concatenate(held_parts)), np.sort(np.concatenate(rest_parts))


def _largest_remainder(quotas: np.ndarray) -> np.ndarray:
    """Integer counts within one of each quota whose sum is the rounded sum of the quotas."""
    floors = np.floor(quotas).astype(np.int64)
    missing = int(round(float(quotas.sum()))) - int(floors.sum())
    order = np.argsort(-(quotas - floors), kind="stable")
    floors[order[:missing]] += 1
    return floors


def _content_keys(images: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each image's pixels, so ordering ignores where an image sat in the file."""
    flat = images.reshape(images.shape[0], -1)
    digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in flat]
    return np.frombuffer(b"".join(digests), dtype=np.uint64)


def _to_float(images: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Selected uint8 images -> float32 in [0, 1] at `size`, converting a chunk at a time."""
    out = np.empty((index.shape[0], images.shape[1], size, size), dtype=np.float32)
    for start in range(0, index.shape[0], _CHUNK):
        chunk = images[index[start : start + _CHUNK]].astype(np.float32) / np.float32(255.0)
        out[start : start + _CHUNK] = resize_float(chunk, size)
    return out


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, accumulated in float64 a chunk at a time (float32 sums over
    millions of pixels lose digits; a whole-array float64 temporary would double peak memory)."""
    total = np.zeros(x.shape[1])
    total_sq = np.zeros(x.shape[1])
    for start in range(0, x.shape[0], _CHUNK):
        chunk = x[start : start + _CHUNK]
        total += chunk.sum(axis=(0, 2, 3), dtype=np.float64)
        total_sq += np.square(chunk).sum(axis=(0, 2, 3), dtype=np.float64)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(max(s, _MIN_STD)) for s in std)


def _standardize_inplace(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    x -= np.asarray(mean, dtype=np.float32)[None, :, None, None]
    x /= np.asarray(std, dtype=np.float32)[None, :, None, None]
    return x
