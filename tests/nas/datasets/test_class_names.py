"""Class names ship with every exported model (spec.json, ONNX metadata, tables): each must be one
printable line of at most 64 characters, in .npz uploads and ImageFolder folder names alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nas.datasets import DatasetError, ImageDataset, load_imagefolder_zip, load_npz, validate_dataset
from nas.datasets.dataset import MAX_CLASS_NAME_LENGTH

BAD_NAMES = [
    ("bell\x07", "not printable"),
    ("two\nlines", "not printable"),
    ("tab\there", "not printable"),
    ("escape\x1b[31m", "not printable"),
    ("x" * (MAX_CLASS_NAME_LENGTH + 1), "65 characters long, more than 64"),
]
GOOD_NAMES = ("a cat", "émeu", "猫", "x" * MAX_CLASS_NAME_LENGTH)


def _xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (8, 8, 8), dtype=np.uint8), np.repeat(np.arange(4), 2)


@pytest.mark.parametrize(("bad", "words"), BAD_NAMES)
def test_npz_class_names_must_be_printable_and_short(make_npz: Callable[..., Path], bad: str, words: str) -> None:
    x, y = _xy()
    with pytest.raises(DatasetError, match=words) as caught:
        load_npz(make_npz(x=x, y=y, class_names=np.array(["ok", bad, "b", "c"])))
    assert caught.value.field == "class_names"


def test_npz_printable_names_of_any_script_are_kept(make_npz: Callable[..., Path]) -> None:
    x, y = _xy()
    assert load_npz(make_npz(x=x, y=y, class_names=np.array(GOOD_NAMES))).class_names == GOOD_NAMES


@pytest.mark.parametrize(("bad", "words"), BAD_NAMES)
def test_imagefolder_names_are_checked_before_decoding(
    make_zip: Callable[..., Path], image_bytes, bad: str, words: str
) -> None:
    members = {f"good/{k}.png": image_bytes(seed=k) for k in range(2)}
    members |= {f"{bad}/0.png": b"not an image", f"{bad}/1.png": b"not an image"}
    with pytest.raises(DatasetError, match=words) as caught:
        load_imagefolder_zip(make_zip(members))
    assert caught.value.field == "class_names"


def test_imagefolder_printable_folder_names_are_kept(make_zip: Callable[..., Path], image_bytes) -> None:
    members = {f"{name}/{k}.png": image_bytes(seed=k) for name in GOOD_NAMES for k in range(2)}
    assert load_imagefolder_zip(make_zip(members)).class_names == tuple(sorted(GOOD_NAMES))


def test_every_source_is_checked_by_validate_dataset() -> None:
    images = np.zeros((4, 1, 8, 8), dtype=np.uint8)
    dataset = ImageDataset("built", images, np.array([0, 0, 1, 1]), ("fine", "carriage\rreturn"))
    with pytest.raises(DatasetError, match="not printable") as caught:
        validate_dataset(dataset)
    assert caught.value.field == "class_names"


def test_other_dataset_errors_name_no_field() -> None:
    assert DatasetError("anything").field is None
