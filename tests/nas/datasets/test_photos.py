"""The `photos` built-in dataset: crops of the photographs that ship inside scikit-image."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from nas.datasets import DatasetError, ImageDataset, builtin, digits_dataset, load_dataset, split_dataset
from nas.datasets.builtin import photos_dataset

CLASSES = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle", "page", "retina", "rocket", "text",
)  # fmt: skip


@pytest.fixture(scope="module")
def photos() -> ImageDataset:
    return load_dataset("photos")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded two-core machine runs a tiny net slower with more threads
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def nearest_class_mean_accuracy(dataset: ImageDataset) -> float:
    split = split_dataset(dataset, seed=0)
    train = split.x_train.reshape(len(split.x_train), -1)
    val = split.x_val.reshape(len(split.x_val), -1)
    means = np.stack([train[split.y_train == k].mean(axis=0) for k in range(split.num_classes)])
    distances = ((val[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == split.y_val).mean())


def test_default_shape_classes_and_names(photos: ImageDataset) -> None:
    assert photos.name == "photos"
    assert photos.images.shape == (18 * 150, 3, 32, 32)
    assert photos.images.dtype == np.uint8
    assert photos.class_names == CLASSES
    assert photos.class_counts() == dict.fromkeys(CLASSES, 150)
    assert 40 < photos.images.std() < 100  # real photographs use the pixel range without saturating


def test_no_two_images_are_identical(photos: ImageDataset) -> None:
    flat = photos.images.reshape(len(photos), -1)
    assert np.unique(flat, axis=0).shape[0] == len(photos)


def test_deterministic_for_a_seed_and_small_variants_are_prefixes() -> None:
    first = photos_dataset(per_class=6, resolution=16, seed=3)
    again = photos_dataset(per_class=6, resolution=16, seed=3)
    other = photos_dataset(per_class=6, resolution=16, seed=4)
    longer = photos_dataset(per_class=9, resolution=16, seed=3)
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.images, other.images)
    assert np.array_equal(longer.images[: len(first)], first.images)


def test_grey_variant_has_one_channel() -> None:
    dataset = photos_dataset(per_class=4, resolution=16, channels=1)
    assert dataset.images.shape == (18 * 4, 1, 16, 16)
    assert dataset.class_names == CLASSES


def test_loads_by_name_with_options() -> None:
    assert load_dataset("photos:per_class=20").images.shape == (18 * 20, 3, 32, 32)
    small = load_dataset("photos:per_class=5,resolution=24,channels=1,seed=2", resolution=24)
    assert small.images.shape == (18 * 5, 1, 24, 24)
    assert np.bincount(small.labels).tolist() == [5] * 18


def test_defaults_are_seed_0_at_32_px_in_colour(photos: ImageDataset) -> None:
    first = photos_dataset(per_class=20, resolution=32, channels=3, seed=0)
    assert np.array_equal(photos.images[: len(first)], first.images)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("photos:per_class=1", "per_class must be between 2 and 200"),
        ("photos:per_class=201", "per_class must be between 2 and 200"),
        ("photos:channels=2", "channels must be 1 or 3"),
        ("photos:resolution=4", "resolution must be at least 8"),
        ("photos:classes=3", "unknown option 'classes'; allowed: per_class, resolution, channels, seed"),
        ("photos:seed=abc", "option 'seed' must be int, got 'abc'"),
    ],
)
def test_bad_options_are_named(spec: str, message: str) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset(spec)
    assert message in str(error.value)


def test_crops_are_inside_the_photo_and_never_near_copies() -> None:
    grey, _ = builtin._photo("text.png")  # the smallest photo: where crops crowd the most
    boxes = builtin._crop_boxes("text", grey, 200, np.random.default_rng(0))
    top, left, side = boxes.T
    short = min(grey.shape)
    assert side.min() >= round(0.15 * short) and side.max() <= round(0.40 * short)
    assert top.min() >= 0 and (top + side).max() <= grey.shape[0]
    assert left.min() >= 0 and (left + side).max() <= grey.shape[1]
    across = np.minimum(left[:, None] + side[:, None], left + side) - np.maximum(left[:, None], left)
    down = np.minimum(top[:, None] + side[:, None], top + side) - np.maximum(top[:, None], top)
    shared = np.clip(across, 0, None) * np.clip(down, 0, None)
    iou = shared / (side[:, None] ** 2 + side**2 - shared)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5


def test_reads_only_files_inside_the_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("photos tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setitem(sys.modules, "pooch", None)  # importing pooch (the downloader) now fails
    dataset = photos_dataset(per_class=2, resolution=8)
    assert dataset.images.shape == (36, 3, 8, 8)


def test_learnable_yet_clearly_harder_than_digits(photos: ImageDataset) -> None:
    # 18 classes: chance is 0.056. Pixel templates find some of the colour and brightness; on the
    # same test digits score about 0.87.
    accuracy = nearest_class_mean_accuracy(photos)
    assert 0.2 < accuracy < 0.6
    assert accuracy < nearest_class_mean_accuracy(digits_dataset()) - 0.3


@pytest.mark.usefixtures("one_torch_thread")
def test_a_tiny_cnn_learns_it_only_partly() -> None:
    split = split_dataset(photos_dataset(per_class=60, resolution=16), seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 18),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    batches = np.random.default_rng(0)
    for _ in range(8):
        for index in np.array_split(batches.permutation(len(y_train)), len(y_train) // 32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[index]), y_train[index]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(split.x_val)).argmax(dim=1).numpy()
    accuracy = float((predicted == split.y_val).mean())
    assert 0.25 < accuracy < 0.9  # chance 0.056; digits' networks reach 0.97-0.99
