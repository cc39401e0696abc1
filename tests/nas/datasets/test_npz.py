"""`.npz` uploads: layouts, label remapping, and every way a file can be wrong."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nas.datasets import DatasetError, load_npz

XY = tuple[np.ndarray, np.ndarray]


def test_nhwc_becomes_nchw(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    dataset = load_npz(make_npz(x=x, y=y))
    assert dataset.images.shape == (12, 3, 16, 16)
    assert np.array_equal(dataset.images, x.transpose(0, 3, 1, 2))
    assert np.array_equal(dataset.labels, y)
    assert dataset.class_names == ("0", "1", "2", "3")
    assert dataset.name == "data"


def test_nchw_is_kept(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    dataset = load_npz(make_npz(x=nchw, y=y))
    assert np.array_equal(dataset.images, nchw)


def test_nhw_is_grayscale(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    dataset = load_npz(make_npz(x=x[..., 0], y=y))
    assert dataset.images.shape == (12, 1, 16, 16)
    assert np.array_equal(dataset.images[:, 0], x[..., 0])


def test_single_channel_nhwc(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    dataset = load_npz(make_npz(x=x[..., :1], y=y))
    assert dataset.images.shape == (12, 1, 16, 16)


def test_labels_are_remapped_and_kept_as_names(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, _ = balanced_xy
    y = np.array([7, 3, -2, 7, 3, -2, 7, 3, -2, 100, 100, 100], dtype=np.int16)
    dataset = load_npz(make_npz(x=x, y=y))
    assert dataset.class_names == ("-2", "3", "7", "100")
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == [2, 1, 0, 2, 1, 0, 2, 1, 0, 3, 3, 3]


def test_class_names_follow_sorted_labels(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    names = np.array(["ant", "bee", "cat", "dog"])
    dataset = load_npz(make_npz(x=x, y=y * 10, class_names=names))
    assert dataset.class_names == ("ant", "bee", "cat", "dog")
    assert dataset.describe()["class_counts"] == {"ant": 3, "bee": 3, "cat": 3, "dog": 3}


def test_non_square_images_become_square(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    _, y = balanced_xy
    x = np.full((12, 16, 24, 3), 200, dtype=np.uint8)
    dataset = load_npz(make_npz(x=x, y=y))
    assert dataset.images.shape == (12, 3, 16, 16)
    assert np.all(dataset.images == 200)  # a flat image stays flat through resizing


def test_resolution_argument(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    assert load_npz(make_npz(x=x, y=y), resolution=32).images.shape == (12, 3, 32, 32)


def test_compressed_npz(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    assert len(load_npz(make_npz(compressed=True, x=x, y=y))) == 12


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: {"x": x.astype(np.float64), "y": y}, "'x' must be uint8 pixel values 0-255, got float64"),
        (lambda x, y: {"x": x[:, None], "y": y}, "got 5-D shape"),
        (lambda x, y: {"x": x[:, :, :, :2], "y": y}, "no channel axis of size 1 or 3"),
        (lambda x, y: {"x": x[:, :3, :3], "y": y}, "ambiguous"),
        (lambda x, y: {"x": x, "y": y[:-1]}, "'y' has 11 labels but 'x' has 12 images"),
        (lambda x, y: {"x": x, "y": y[:, None]}, "'y' must be 1-D"),
        (lambda x, y: {"x": x, "y": y.astype(np.float32)}, "'y' must hold integer labels, got float32"),
        (lambda x, y: {"x": x, "y": y.astype(bool)}, "'y' must hold integer labels, got bool"),
        (lambda x, y: {"x": x, "y": np.zeros_like(y)}, "at least 2 classes"),
        (lambda x, y: {"x": x, "y": np.r_[y[:-2], 4, 3]}, r"too few: '4' \(1\)"),
        (lambda x, y: {"x": x}, r"missing required array\(s\) \['y'\]"),
        (lambda x, y: {"images": x, "labels": y}, r"missing required array\(s\) \['x', 'y'\]"),
        (lambda x, y: {"x": x, "y": y.astype(object)}, "'y' cannot be read: it holds Python objects"),
        (lambda x, y: {"x": x, "y": y, "class_names": np.array(["a", "b"])}, "'class_names' has 2 names"),
        (lambda x, y: {"x": x, "y": y, "class_names": np.array(["a", "a", "b", "c"])}, "distinct"),
        (lambda x, y: {"x": x, "y": y, "class_names": np.arange(4)}, "1-D array of strings"),
        (lambda x, y: {"x": x[:, :4, :4], "y": y}, "need at least 8x8"),
    ],
)
def test_bad_contents_are_named(make_npz: Callable[..., Path], balanced_xy: XY, change, message: str) -> None:
    path = make_npz(**change(*balanced_xy))
    with pytest.raises(DatasetError) as error:
        load_npz(path)
    assert str(error.value).startswith("data")  # names the file
    assert re.search(message, str(error.value)), str(error.value)


def test_not_an_npz_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(DatasetError, match="notes.npz: not an .npz archive"):
        load_npz(path)


def test_corrupt_npz_bytes(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    path = make_npz(x=x, y=y)
    data = bytearray(path.read_bytes())
    data[100:400] = bytes(300)  # damage the first array's header and data, keep the zip directory
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="data.npz: array 'x' cannot be read"):
        load_npz(path)


def test_truncated_npz(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    path = make_npz(x=x, y=y)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="data.npz: not an .npz archive"):
        load_npz(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="absent.npz: cannot read the file"):
        load_npz(tmp_path / "absent.npz")


def test_file_over_the_size_limit(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    x, y = balanced_xy
    with pytest.raises(DatasetError, match="the file is .* bytes, more than the limit of 1000"):
        load_npz(make_npz(x=x, y=y), max_bytes=1000)


def test_compressed_bomb_is_refused_before_loading(make_npz: Callable[..., Path]) -> None:
    x = np.zeros((100, 64, 64, 3), dtype=np.uint8)  # 1.2 MB of zeros compress to a few kB
    path = make_npz(compressed=True, x=x, y=np.repeat(np.arange(2), 50))
    assert path.stat().st_size < 50_000
    with pytest.raises(DatasetError, match="uncompressed, more than the limit of 50000"):
        load_npz(path, max_bytes=50_000)


def test_too_many_images(make_npz: Callable[..., Path], balanced_xy: XY) -> None:
    with pytest.raises(DatasetError, match="'x' holds 12 images, more than the limit of 10"):
        load_npz(make_npz(x=balanced_xy[0], y=balanced_xy[1]), max_images=10)
