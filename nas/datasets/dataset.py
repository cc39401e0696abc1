"""The one in-memory form every dataset source ends in, and the checks every source shares.

Built-in datasets, `.npz` uploads and ImageFolder zips all become an `ImageDataset`: uint8 pixels
in NCHW order, square, with labels 0..K-1 and one name per class. Keeping pixels as uint8 until the
split (rather than float) costs a quarter of the memory, and one shape means the split, the search
and the API never ask where a dataset came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MAX_IMAGES = 200_000
# Bounds files on disk, their uncompressed contents and the decoded pixel array alike: a 1 GiB
# upload is far beyond what a two-core machine can train on within a search anyway.
DEFAULT_MAX_BYTES = 1 << 30
MIN_RESOLUTION = 8
ALLOWED_CHANNELS = (1, 3)
# Class names travel into spec.json, ONNX metadata, tables and terminals: one short printable line each.
MAX_CLASS_NAME_LENGTH = 64


class DatasetError(ValueError):
    """A dataset cannot be used; the message names the file, member or field at fault.

    A `ValueError` so callers that already treat bad input as `ValueError` (the API's 422 path,
    the CLI) need no new branch. `field`, when set, is the part of the upload at fault (e.g.
    ``class_names``); the API names it in its 422 answer instead of the whole file.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DatasetTooLargeError(DatasetError):
    """Over a byte limit: the file, its uncompressed contents, or the pixels it would decode to.

    Raised before the memory is allocated (sizes come from file headers, zip entries, array shapes or
    a built-in dataset's options), so a small upload cannot make the server allocate a large array.
    The API answers 413 for an upload and 422 for a built-in dataset's options in a search request.
    """

    def __init__(self, message: str, *, limit: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.limit = limit


@dataclass(frozen=True)
class ImageDataset:
    """Labelled square images, as loaded: uint8 NCHW pixels, int64 labels in [0, num_classes).

    Construction checks only the structure the properties rely on (shape, dtype, label range);
    `validate_dataset` adds the checks about whether it is *usable* (enough classes and images,
    size limits), which is what loaders call before returning.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.dtype.kind in "iu" and labels.dtype != np.int64:
            labels = labels.astype(np.int64)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        _check_structure(self)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        """Height (= width): every loader makes images square."""
        return int(self.images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_counts(self) -> dict[str, int]:
        """Images per class, by class name, in label order."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(count) for name, count in zip(self.class_names, counts, strict=True)}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary, for the API's dataset listing and the CLI."""
        return {
            "name": self.name,
            "num_images": len(self),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "class_counts": self.class_counts(),
            "in_channels": self.in_channels,
            "resolution": self.resolution,
        }


def _check_structure(dataset: ImageDataset) -> None:
    images, labels, name = dataset.images, dataset.labels, dataset.name
    if not isinstance(images, np.ndarray):
        raise DatasetError(f"{name}: images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise DatasetError(f"{name}: images must be uint8 (pixel values 0-255), got {images.dtype}")
    if images.ndim != 4:
        raise DatasetError(f"{name}: images must be 4-D (N, C, H, W), got shape {images.shape}")
    n, channels, height, width = images.shape
    if channels not in ALLOWED_CHANNELS:
        raise DatasetError(f"{name}: images must have 1 or 3 channels, got {channels} (shape {images.shape})")
    if height != width:
        raise DatasetError(f"{name}: images must be square, got {height}x{width}")
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"{name}: labels must be integers, got {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DatasetError(f"{name}: labels must be 1-D with one label per image ({n}), got shape {labels.shape}")
    if not dataset.class_names:
        raise DatasetError(f"{name}: class_names is empty")
    if len(set(dataset.class_names)) != len(dataset.class_names):
        raise DatasetError(f"{name}: class_names has duplicates: {list(dataset.class_names)}")
    if n and (labels.min() < 0 or labels.max() >= len(dataset.class_names)):
        raise DatasetError(
            f"{name}: labels must lie in [0, {len(dataset.class_names)}) (one per class name), "
            f"got values from {labels.min()} to {labels.max()}"
        )


def validate_dataset(
    dataset: ImageDataset,
    *,
    max_images: int = DEFAULT_MAX_IMAGES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageDataset:
    """Check that a dataset can be split and searched on; return it unchanged, or raise `DatasetError`.

    Every source runs these same checks, so an upload fails at upload time with a message about the
    data, not minutes later inside a training trial.
    """
    name = dataset.name
    if dataset.resolution < MIN_RESOLUTION:
        raise DatasetError(
            f"{name}: images are {dataset.resolution}x{dataset.resolution}, smaller than the minimum "
            f"{MIN_RESOLUTION}x{MIN_RESOLUTION}"
        )
    if len(dataset) > max_images:
        raise DatasetError(f"{name}: {len(dataset)} images, more than the limit of {max_images}")
    if dataset.images.nbytes > max_bytes:
        raise DatasetTooLargeError(
            f"{name}: the decoded pixels take {dataset.images.nbytes} bytes, more than the limit of {max_bytes}",
            limit=max_bytes,
        )
    check_class_names(name, dataset.class_names)
    check_class_counts(name, dataset.class_counts())
    return dataset


def check_class_names(name: str, class_names: tuple[str, ...] | list[str]) -> None:
    """Every class name printable (no control characters, tabs or line breaks) and at most
    `MAX_CLASS_NAME_LENGTH` characters: they are shown and shipped with every exported model."""
    for class_name in class_names:
        if not class_name.isprintable():
            raise DatasetError(
                f"{name}: class name {class_name!r} has characters that are not printable (control characters, "
                "tabs, line breaks or other separators than the space)",
                field="class_names",
            )
        if len(class_name) > MAX_CLASS_NAME_LENGTH:
            raise DatasetError(
                f"{name}: class name {class_name[:20]!r}... is {len(class_name)} characters long, more than "
                f"{MAX_CLASS_NAME_LENGTH}",
                field="class_names",
            )


def check_class_counts(name: str, counts: dict[str, int]) -> None:
    """At least 2 classes with images, and at least 2 images in every class (one for each split part).

    Separate from `validate_dataset` so loaders can refuse a bad layout before decoding anything.
    """
    present = [class_name for class_name, count in counts.items() if count > 0]
    if len(present) < 2:
        raise DatasetError(f"{name}: needs at least 2 classes with images, got {len(present)}: {present}")
    too_few = {class_name: count for class_name, count in counts.items() if count < 2}
    if too_few:
        listed = ", ".join(f"{class_name!r} ({count})" for class_name, count in too_few.items())
        raise DatasetError(
            f"{name}: every class needs at least 2 images (one for training, one for validation); too few: {listed}"
        )
