"""load_dataset: one spec string for built-in datasets and uploaded files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nas.datasets import DatasetError, load_dataset


def test_synthetic_defaults() -> None:
    dataset = load_dataset("synthetic")
    assert (dataset.name, len(dataset), dataset.num_classes, dataset.resolution) == ("synthetic", 500, 10, 32)


def test_synthetic_with_options() -> None:
    dataset = load_dataset(" synthetic:classes=4, per_class=20,resolution=16,channels=1,seed=3,noise=0.1 ")
    assert dataset.images.shape == (80, 1, 16, 16)
    assert dataset.num_classes == 4


def test_resolution_argument_fills_in_an_unnamed_resolution() -> None:
    assert load_dataset("synthetic:classes=2,per_class=2", resolution=12).resolution == 12
    assert load_dataset("synthetic:resolution=12,classes=2,per_class=2", resolution=12).resolution == 12


def test_conflicting_resolutions_are_an_error() -> None:
    with pytest.raises(DatasetError, match="asks for resolution 16 but 32 was requested"):
        load_dataset("synthetic:resolution=16", resolution=32)


def test_digits_with_options() -> None:
    assert load_dataset("digits:resolution=8,channels=3").images.shape == (1797, 3, 8, 8)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "cifar10",
            "unknown dataset 'cifar10': expected one of synthetic, digits, photos, or a path ending in .npz or .zip",
        ),
        ("synthetic:colour=red", "unknown option 'colour'; allowed: classes, num_classes"),
        ("synthetic:classes=four", "option 'classes' must be int, got 'four'"),
        ("synthetic:noise=lots", "option 'noise' must be float, got 'lots'"),
        ("synthetic:classes", "option 'classes' must be key=value"),
        ("synthetic:classes=3,num_classes=4", "option 'num_classes' is given more than once"),
        ("digits:classes=3", "unknown option 'classes'; allowed: resolution, channels"),
        ("synthetic:classes=1", "num_classes must be at least 2"),
    ],
)
def test_bad_specs_are_named(spec: str, message: str) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset(spec)
    assert message in str(error.value)


def test_npz_path(make_npz: Callable[..., Path], balanced_xy: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = balanced_xy
    path = make_npz(name="Upload.NPZ", x=x, y=y)
    dataset = load_dataset(str(path), resolution=24)
    assert (dataset.name, dataset.images.shape) == ("Upload", (12, 3, 24, 24))


def test_zip_path(make_zip: Callable[..., Path], imagefolder_members: dict[str, bytes]) -> None:
    dataset = load_dataset(str(make_zip(imagefolder_members)), resolution=20)
    assert (dataset.name, dataset.images.shape) == ("pets", (6, 3, 20, 20))


def test_missing_upload(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="gone.zip: cannot read the file"):
        load_dataset(str(tmp_path / "gone.zip"))
