"""The built-in datasets: seeded synthetic gratings and scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import pytest

from nas.datasets import DatasetError, ImageDataset, digits_dataset, split_dataset, synthetic_dataset


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return digits_dataset()


def nearest_class_mean_accuracy(dataset: ImageDataset) -> float:
    split = split_dataset(dataset, seed=0)
    train = split.x_train.reshape(len(split.x_train), -1)
    val = split.x_val.reshape(len(split.x_val), -1)
    means = np.stack([train[split.y_train == k].mean(axis=0) for k in range(split.num_classes)])
    distances = ((val[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == split.y_val).mean())


def test_synthetic_shape_and_balance() -> None:
    dataset = synthetic_dataset(num_classes=4, per_class=5, resolution=16, channels=1)
    assert dataset.images.shape == (20, 1, 16, 16)
    assert dataset.images.dtype == np.uint8
    assert dataset.describe()["class_counts"] == {f"class_{k}": 5 for k in range(4)}
    assert dataset.name == "synthetic"


def test_synthetic_is_deterministic_for_a_seed() -> None:
    first = synthetic_dataset(num_classes=3, per_class=4, resolution=12, seed=7)
    again = synthetic_dataset(num_classes=3, per_class=4, resolution=12, seed=7)
    other = synthetic_dataset(num_classes=3, per_class=4, resolution=12, seed=8)
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.images, other.images)


def test_synthetic_images_vary_within_a_class() -> None:
    dataset = synthetic_dataset(num_classes=2, per_class=3, resolution=16)
    class_zero = dataset.images[dataset.labels == 0].astype(int)
    assert np.abs(class_zero[0] - class_zero[1]).mean() > 10
    assert 20 < dataset.images.std() < 100  # uses the pixel range without saturating


def test_synthetic_classes_are_learnable_but_not_trivial() -> None:
    accuracy = nearest_class_mean_accuracy(synthetic_dataset(num_classes=10, per_class=40, resolution=16))
    # Chance is 0.1; a pixel-space template still beats it by far, yet shifts keep it well below 100%.
    assert 0.3 < accuracy < 0.9


@pytest.mark.parametrize("resolution", [8, 64])
def test_synthetic_at_any_resolution(resolution: int) -> None:
    dataset = synthetic_dataset(num_classes=2, per_class=2, resolution=resolution)
    assert dataset.images.shape == (4, 3, resolution, resolution)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be at least 2"),
        ({"per_class": 1}, "per_class must be at least 2"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"resolution": 4}, "resolution must be at least 8"),
        ({"noise": -0.1}, "noise must be non-negative"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        synthetic_dataset(**kwargs)


def test_digits_are_the_real_upsampled_digits(digits: ImageDataset) -> None:
    assert len(digits) == 1797
    assert digits.num_classes == 10
    assert digits.class_names == tuple(str(k) for k in range(10))
    assert digits.images.shape == (1797, 1, 32, 32)
    assert digits.images.max() == 255 and digits.images.min() == 0
    assert sorted(digits.class_counts().values())[0] >= 170  # about 180 per class


def test_digits_are_recognisable(digits: ImageDataset) -> None:
    assert nearest_class_mean_accuracy(digits) > 0.8


def test_digits_resolution_and_channels() -> None:
    dataset = digits_dataset(resolution=16, channels=3)
    assert dataset.images.shape == (1797, 3, 16, 16)
    assert np.array_equal(dataset.images[:, 0], dataset.images[:, 2])
    with pytest.raises(DatasetError, match="channels must be 1 or 3"):
        digits_dataset(channels=2)
