"""ImageDataset's structural checks and validate_dataset's usability checks."""

from __future__ import annotations

import numpy as np
import pytest

from nas.datasets import DatasetError, ImageDataset, validate_dataset


def make(n_per_class: tuple[int, ...] = (3, 3), size: int = 8, channels: int = 1, **overrides) -> ImageDataset:
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    images = np.zeros((labels.shape[0], channels, size, size), dtype=np.uint8)
    fields = {
        "name": "toy",
        "images": images,
        "labels": labels,
        "class_names": tuple(f"c{k}" for k in range(len(n_per_class))),
    }
    fields.update(overrides)
    return ImageDataset(**fields)


def test_properties_and_describe() -> None:
    dataset = make((2, 3), size=10, channels=3)
    assert (len(dataset), dataset.num_classes, dataset.in_channels, dataset.resolution) == (5, 2, 3, 10)
    assert dataset.labels.dtype == np.int64
    assert dataset.describe() == {
        "name": "toy",
        "num_images": 5,
        "num_classes": 2,
        "class_names": ["c0", "c1"],
        "class_counts": {"c0": 2, "c1": 3},
        "in_channels": 3,
        "resolution": 10,
    }


def test_labels_of_any_integer_dtype_become_int64() -> None:
    dataset = make(labels=np.array([0, 0, 0, 1, 1, 1], dtype=np.uint8))
    assert dataset.labels.dtype == np.int64


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"images": np.zeros((6, 1, 8, 8), dtype=np.float64)}, "must be uint8"),
        ({"images": np.zeros((6, 8, 8), dtype=np.uint8)}, "must be 4-D"),
        ({"images": np.zeros((6, 4, 8, 8), dtype=np.uint8)}, "1 or 3 channels"),
        ({"images": np.zeros((6, 1, 8, 9), dtype=np.uint8)}, "must be square"),
        ({"labels": np.array([0.0, 0, 0, 1, 1, 1])}, "labels must be integers"),
        ({"labels": np.array([0, 0, 1, 1])}, "one label per image"),
        ({"labels": np.array([0, 0, 0, 1, 1, 2])}, "must lie in [0, 2)"),
        ({"labels": np.array([-1, 0, 0, 1, 1, 1])}, "must lie in [0, 2)"),
        ({"class_names": ("same", "same")}, "duplicates"),
    ],
)
def test_structure_errors_name_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(DatasetError, match="toy") as error:
        make(**overrides)
    assert message in str(error.value)


def test_validate_accepts_a_usable_dataset() -> None:
    dataset = make()
    assert validate_dataset(dataset) is dataset


def test_validate_needs_two_classes_with_images() -> None:
    with pytest.raises(DatasetError, match="at least 2 classes"):
        validate_dataset(make((4,)))
    # A declared class with no images does not count either.
    with pytest.raises(DatasetError, match="at least 2 classes"):
        validate_dataset(make((4, 0)))


def test_validate_names_classes_with_fewer_than_two_images() -> None:
    with pytest.raises(DatasetError, match=r"too few: 'c1' \(1\), 'c2' \(1\)"):
        validate_dataset(make((3, 1, 1)))


def test_validate_rejects_tiny_images() -> None:
    with pytest.raises(DatasetError, match="smaller than the minimum 8x8"):
        validate_dataset(make(size=4))


def test_validate_enforces_size_limits() -> None:
    with pytest.raises(DatasetError, match="6 images, more than the limit of 5"):
        validate_dataset(make(), max_images=5)
    with pytest.raises(DatasetError, match="more than the limit of 100"):
        validate_dataset(make(), max_bytes=100)
