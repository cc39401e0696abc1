"""What an evaluator needs from a dataset, and nothing more.

Evaluators depend on this protocol rather than on `nas.datasets`, so a `DatasetSplit` (or any
object with the same six attributes) can be trained on without this package knowing where the
arrays came from. `ArrayData` is the plain implementation used by tests and the proxy study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from search_spaces.arch_spec import ArchSpec


@runtime_checkable
class TrainingData(Protocol):
    """Standardised float32 NCHW images with int64 labels in [0, num_classes), split in two."""

    @property
    def x_train(self) -> np.ndarray: ...

    @property
    def y_train(self) -> np.ndarray: ...

    @property
    def x_val(self) -> np.ndarray: ...

    @property
    def y_val(self) -> np.ndarray: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def in_channels(self) -> int: ...


@dataclass(frozen=True, eq=False)
class ArrayData:
    """A `TrainingData` held as numpy arrays; checked on construction."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    in_channels: int

    def __post_init__(self) -> None:
        check_training_data(self)


def check_training_data(data: TrainingData) -> None:
    """ValueError unless both parts are non-empty NCHW images with matching labels in range."""
    for part in ("train", "val"):
        images = np.asarray(getattr(data, f"x_{part}"))
        labels = np.asarray(getattr(data, f"y_{part}"))
        if images.ndim != 4:
            raise ValueError(f"x_{part} must be NCHW (4 dimensions), got shape {images.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"x_{part} is empty")
        if images.shape[1] != data.in_channels:
            raise ValueError(f"x_{part} has {images.shape[1]} channels but in_channels is {data.in_channels}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"y_{part} must have shape ({images.shape[0]},), got {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise ValueError(f"y_{part} must hold integer labels, got {labels.dtype}")
        if labels.min() < 0 or labels.max() >= data.num_classes:
            raise ValueError(f"y_{part} labels must lie in [0, {data.num_classes}), got {labels.min()}..{labels.max()}")
    if data.num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {data.num_classes}")


def check_spec_matches(spec: ArchSpec, data: TrainingData) -> None:
    """ValueError when the network's input channels or class count differ from the data's."""
    if spec.in_channels != data.in_channels:
        raise ValueError(
            f"the network takes {spec.in_channels}-channel input but the data has {data.in_channels} channels; "
            "adapt the spec with `spec_for_data`"
        )
    if spec.head.num_classes != data.num_classes:
        raise ValueError(
            f"the network predicts {spec.head.num_classes} classes but the data has {data.num_classes}; "
            "adapt the spec with `spec_for_data`"
        )


def spec_for_data(spec: ArchSpec, data: TrainingData) -> ArchSpec:
    """`spec` with the data's input channels and class count, re-validated.

    Search-space members are RGB networks; a grayscale dataset needs a 1-channel stem. Note that the
    stem's latency key names its input channels, so a changed spec is priced as a different stem.
    """
    head = spec.head.model_copy(update={"num_classes": data.num_classes})
    changed = spec.model_copy(update={"in_channels": data.in_channels, "head": head})
    return ArchSpec.model_validate(changed.model_dump())
