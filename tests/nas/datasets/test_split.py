"""split_dataset: stratified, deterministic, standardised on the train part, resized on request."""

from __future__ import annotations

import numpy as np
import pytest

from nas.datasets import DatasetError, DatasetSplit, ImageDataset, split_dataset, synthetic_dataset
from nas.datasets.resize import resize_uint8


def distinct_images(counts: tuple[int, ...], size: int = 8, channels: int = 3, seed: int = 0) -> ImageDataset:
    """Every image different, so a split can be checked by recovering its images."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(labels.shape[0], channels, size, size), dtype=np.uint8)
    return ImageDataset("distinct", images, labels, tuple(f"c{k}" for k in range(len(counts))))


def recovered(split: DatasetSplit, x: np.ndarray) -> set[bytes]:
    """Undo standardisation (at native resolution) to get back the uint8 images, as hashable bytes."""
    mean = np.asarray(split.mean)[None, :, None, None]
    std = np.asarray(split.std)[None, :, None, None]
    pixels = np.rint((x * std + mean) * 255).astype(np.uint8)
    return {image.tobytes() for image in pixels}


def test_split_is_stratified_and_a_partition() -> None:
    counts = (10, 23, 7, 41, 2, 3)
    dataset = distinct_images(counts)
    split = split_dataset(dataset, val_fraction=0.25, seed=3)
    val_counts = np.bincount(split.y_val, minlength=len(counts))
    train_counts = np.bincount(split.y_train, minlength=len(counts))
    assert np.all(np.abs(val_counts - 0.25 * np.array(counts)) <= 1)
    assert np.all(val_counts >= 1) and np.all(train_counts >= 1)  # every class in both parts
    assert np.array_equal(val_counts + train_counts, counts)
    train, val = recovered(split, split.x_train), recovered(split, split.x_val)
    assert not train & val
    assert train | val == {image.tobytes() for image in dataset.images}


def test_validation_total_matches_the_fraction() -> None:
    """Largest-remainder rounding: per-class counts add up to the rounded overall target."""
    counts = (10, 23, 7, 41)
    split = split_dataset(distinct_images(counts), val_fraction=0.25)
    assert len(split.y_val) == round(0.25 * sum(counts)) == 20


def test_split_metadata() -> None:
    dataset = distinct_images((5, 5))
    split = split_dataset(dataset)
    assert (split.name, split.num_classes, split.in_channels, split.resolution) == ("distinct", 2, 3, 8)
    assert split.class_names == ("c0", "c1")
    assert split.x_train.dtype == split.x_val.dtype == np.float32
    assert split.y_train.dtype == split.y_val.dtype == np.int64
    assert split.x_train.shape == (8, 3, 8, 8) and split.x_val.shape == (2, 3, 8, 8)


def test_same_seed_same_split_other_seed_other_split() -> None:
    dataset = synthetic_dataset(num_classes=3, per_class=10, resolution=8)
    first, again, other = (split_dataset(dataset, seed=seed) for seed in (1, 1, 2))
    assert np.array_equal(first.x_val, again.x_val) and np.array_equal(first.y_val, again.y_val)
    assert np.array_equal(first.x_train, again.x_train)
    assert not np.array_equal(first.x_val, other.x_val)


def test_split_does_not_depend_on_input_order() -> None:
    dataset = distinct_images((12, 9, 15))
    order = np.random.default_rng(5).permutation(len(dataset))
    shuffled = ImageDataset("distinct", dataset.images[order], dataset.labels[order], dataset.class_names)
    split, split_shuffled = split_dataset(dataset, seed=4), split_dataset(shuffled, seed=4)
    assert recovered(split, split.x_val) == recovered(split_shuffled, split_shuffled.x_val)
    assert split.mean == pytest.approx(split_shuffled.mean) and split.std == pytest.approx(split_shuffled.std)


def test_standardised_on_the_train_part() -> None:
    dataset = synthetic_dataset(num_classes=4, per_class=20, resolution=16)
    split = split_dataset(dataset)
    assert split.x_train.mean(axis=(0, 2, 3)) == pytest.approx(np.zeros(3), abs=1e-5)
    assert split.x_train.std(axis=(0, 2, 3)) == pytest.approx(np.ones(3), abs=1e-4)
    assert np.abs(split.x_val.mean(axis=(0, 2, 3))).max() < 0.3  # same scale, not re-centred
    assert len(split.mean) == len(split.std) == 3
    assert all(0 < m < 1 for m in split.mean)


def test_standardize_applies_the_train_statistics() -> None:
    dataset = distinct_images((6, 6))
    split = split_dataset(dataset)
    val_images = np.stack([image for image in dataset.images if image.tobytes() in recovered(split, split.x_val)])
    assert np.allclose(np.sort(split.standardize(val_images).ravel()), np.sort(split.x_val.ravel()), atol=1e-5)


def test_constant_channel_does_not_divide_by_zero() -> None:
    dataset = distinct_images((4, 4), channels=1)
    flat = ImageDataset("flat", np.full_like(dataset.images, 9), dataset.labels, dataset.class_names)
    split = split_dataset(flat)
    assert np.all(np.isfinite(split.x_train)) and np.all(split.x_train == 0)


@pytest.mark.parametrize("resolution", [16, 64])
def test_resize(resolution: int) -> None:
    dataset = synthetic_dataset(num_classes=2, per_class=5, resolution=32)
    split = split_dataset(dataset, resolution=resolution)
    assert split.x_train.shape[1:] == (3, resolution, resolution)
    assert split.x_val.shape[1:] == (3, resolution, resolution)
    assert split.resolution == resolution
    assert split.x_train.mean(axis=(0, 2, 3)) == pytest.approx(np.zeros(3), abs=1e-5)


def test_downsampling_matches_rendering_at_the_lower_resolution() -> None:
    """Synthetic patterns live on continuous coordinates, so 64 px shrunk to 16 (antialiased
    bilinear) is close to the same seed rendered at 16 px."""
    high = synthetic_dataset(num_classes=2, per_class=5, resolution=64, noise=0.0)
    low = synthetic_dataset(num_classes=2, per_class=5, resolution=16, noise=0.0)
    shrunk = resize_uint8(high.images, 16)
    assert shrunk.shape == low.images.shape
    assert np.abs(shrunk.astype(int) - low.images).mean() < 4  # of 255


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.0}, "val_fraction must be strictly between 0 and 1"),
        ({"val_fraction": 1.0}, "val_fraction must be strictly between 0 and 1"),
        ({"resolution": 4}, "resolution must be at least 8"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        split_dataset(distinct_images((3, 3)), **kwargs)


def test_class_with_one_image_cannot_be_split() -> None:
    with pytest.raises(DatasetError, match=r"too few in \['c1'\]"):
        split_dataset(distinct_images((3, 1)))


# --- the test part ------------------------------------------------------------------------------------


def test_three_way_split_is_stratified_and_a_partition() -> None:
    counts = (10, 23, 7, 41, 3, 4)
    dataset = distinct_images(counts)
    split = split_dataset(dataset, val_fraction=0.2, test_fraction=0.2, seed=3)
    parts = [np.bincount(y, minlength=len(counts)) for y in (split.y_train, split.y_val, split.y_test)]
    assert np.array_equal(sum(parts), counts)
    assert all(np.all(part >= 1) for part in parts)  # every class in every part
    for part in parts[1:]:
        assert np.all(np.abs(part - 0.2 * np.array(counts)) <= 1)
    train, val, test = (recovered(split, x) for x in (split.x_train, split.x_val, split.x_test))
    assert not (train & val or train & test or val & test)
    assert train | val | test == {image.tobytes() for image in dataset.images}
    # test_index names the test images' positions in the dataset, in dataset order
    assert np.all(np.diff(split.test_index) > 0)
    assert np.array_equal(dataset.labels[split.test_index], split.y_test)
    assert recovered(split, split.x_test) == {dataset.images[i].tobytes() for i in split.test_index}


def test_three_way_split_is_reproducible_and_ignores_input_order() -> None:
    dataset = distinct_images((12, 15, 9))
    first = split_dataset(dataset, test_fraction=0.25, seed=5)
    again = split_dataset(dataset, test_fraction=0.25, seed=5)
    assert np.array_equal(first.test_index, again.test_index)
    order = np.random.default_rng(1).permutation(len(dataset))
    shuffled = ImageDataset("distinct", dataset.images[order], dataset.labels[order], dataset.class_names)
    other = split_dataset(shuffled, test_fraction=0.25, seed=5)
    assert recovered(first, first.x_test) == recovered(other, other.x_test)
    assert recovered(first, first.x_val) == recovered(other, other.x_val)


def test_without_a_test_part_the_two_way_split_is_unchanged() -> None:
    dataset = distinct_images((10, 23, 7))
    split = split_dataset(dataset, val_fraction=0.25, seed=2)
    assert split.x_test.shape[0] == split.y_test.shape[0] == split.test_index.shape[0] == 0
    # the validation images of the two-way split do not depend on whether a test part could exist
    assert recovered(split, split.x_val) == recovered(split, split_dataset(dataset, val_fraction=0.25, seed=2).x_val)


def test_a_class_with_two_images_cannot_be_split_three_ways() -> None:
    dataset = distinct_images((5, 2))
    split_dataset(dataset)  # two parts: fine
    with pytest.raises(DatasetError, match=r"at least 3 images to be split into train/validation/test.*'c1'"):
        split_dataset(dataset, test_fraction=0.2)


@pytest.mark.parametrize("test_fraction", [-0.1, 1.0, 0.8])
def test_bad_test_fraction(test_fraction: float) -> None:
    with pytest.raises(DatasetError, match="test_fraction"):
        split_dataset(distinct_images((10, 10)), val_fraction=0.2, test_fraction=test_fraction)
