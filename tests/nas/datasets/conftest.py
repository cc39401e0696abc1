"""Fixtures for dataset tests: tiny images, ImageFolder zips and .npz files written to tmp_path."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ImageBytes = Callable[..., bytes]
MakeZip = Callable[..., Path]
MakeNpz = Callable[..., Path]


@pytest.fixture
def image_bytes() -> ImageBytes:
    """Encode a small image whose content depends on `seed`, so members differ from each other."""

    def encode(width: int = 12, height: int = 12, mode: str = "RGB", fmt: str = "PNG", seed: int = 0) -> bytes:
        rng = np.random.default_rng(seed)
        shape = (height, width) if mode == "L" else (height, width, 3)
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
        return buffer.getvalue()

    return encode


@pytest.fixture
def make_zip(tmp_path: Path) -> MakeZip:
    """Write {member name: bytes} into a zip under tmp_path, names kept exactly as given."""

    def write(members: dict[str, bytes], name: str = "pets.zip") -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                info = zipfile.ZipInfo(member)  # ZipInfo keeps hostile names such as "../x" as given
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return path

    return write


@pytest.fixture
def imagefolder_members(image_bytes: ImageBytes) -> dict[str, bytes]:
    """Two classes of three images each, mixing PNG and JPEG and sizes (shorter sides 12, 16, 20)."""
    return {
        "cat/a.png": image_bytes(12, 12, seed=1),
        "cat/b.jpg": image_bytes(16, 20, fmt="JPEG", seed=2),
        "cat/c.png": image_bytes(20, 20, seed=3),
        "dog/a.png": image_bytes(16, 16, seed=4),
        "dog/b.jpeg": image_bytes(24, 16, fmt="JPEG", seed=5),
        "dog/c.png": image_bytes(16, 16, seed=6),
    }


@pytest.fixture
def make_npz(tmp_path: Path) -> MakeNpz:
    """Save arrays with numpy.savez under tmp_path and return the path."""

    def write(name: str = "data.npz", compressed: bool = False, **arrays: np.ndarray) -> Path:
        path = tmp_path / name
        with path.open("wb") as file:  # a file object: numpy would append ".npz" to other names
            (np.savez_compressed if compressed else np.savez)(file, **arrays)
        return path

    return write


@pytest.fixture
def balanced_xy() -> tuple[np.ndarray, np.ndarray]:
    """12 random uint8 NHWC RGB images of 16x16, and labels with three images in each of four classes."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
    y = np.repeat(np.arange(4), 3)
    return x, y
