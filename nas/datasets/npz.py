"""User datasets as `.npz` archives: `x` (uint8 images) and `y` (integer labels).

The format most users can produce in one line (`np.savez(path, x=images, y=labels)`), accepted in
the layouts they are likely to have: NHWC (PIL, TensorFlow), NCHW (PyTorch) or NHW (grayscale).
Arrays are read with `allow_pickle=False`, so an upload can never execute code.
"""

from __future__ import annotations

import math
import zipfile
from os import PathLike
from pathlib import Path

import numpy as np

from nas.datasets.dataset import (
    ALLOWED_CHANNELS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    MIN_RESOLUTION,
    DatasetError,
    DatasetTooLargeError,
    ImageDataset,
    validate_dataset,
)
from nas.datasets.resize import resize_uint8
from nas.datasets.zip_entries import check_zip_entries, max_entries_for

REQUIRED_KEYS = ("x", "y")
OPTIONAL_KEYS = ("class_names",)


def load_npz(
    path: str | PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_images: int = DEFAULT_MAX_IMAGES,
    resolution: int | None = None,
) -> ImageDataset:
    """Load and validate an `.npz` dataset; raise `DatasetError` naming the file and field at fault.

    Labels may be any integers (e.g. 3 and 7): the sorted distinct values become classes 0..K-1 and
    are kept as class names unless the archive has `class_names`, one per distinct label in sorted
    label order. Non-square images are resized to a square of their shorter side (or `resolution`),
    so no pixels are invented.
    """
    path = Path(path)
    where = path.name
    if resolution is not None and resolution < MIN_RESOLUTION:
        raise DatasetError(f"{where}: resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    _check_archive(path, max_bytes, max_images)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{where}: not a readable .npz archive ({exc})") from exc
    with npz:
        missing = [key for key in REQUIRED_KEYS if key not in npz.files]
        if missing:
            raise DatasetError(f"{where}: missing required array(s) {missing}; found {sorted(npz.files)}")
        x = _read_array(npz, "x", where)
        y = _read_array(npz, "y", where)
        names = _read_array(npz, "class_names", where) if "class_names" in npz.files else None

    images = _images_nchw(x, where)
    if images.shape[0] > max_images:
        raise DatasetError(f"{where}: 'x' holds {images.shape[0]} images, more than the limit of {max_images}")
    labels, class_names = _labels(y, images.shape[0], names, where)
    height, width = images.shape[2:]
    side = resolution if resolution is not None else min(height, width)
    if side < MIN_RESOLUTION:
        raise DatasetError(f"{where}: images are {height}x{width}, need at least {MIN_RESOLUTION}x{MIN_RESOLUTION}")
    images = resize_uint8(images, side)
    return validate_dataset(
        ImageDataset(path.stem, images, labels, class_names), max_images=max_images, max_bytes=max_bytes
    )


def _check_archive(path: Path, max_bytes: int, max_images: int) -> None:
    """Refuse missing, oversized, non-zip and zip-bomb files before numpy reads a byte of them.

    Two sizes are checked: what the zip entries say they hold uncompressed, and what the arrays' own
    `.npy` headers say they hold. numpy allocates an array from its header's shape before reading
    its data, so a small member whose header declares a huge shape would otherwise allocate it.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from exc
    if size > max_bytes:
        raise DatasetTooLargeError(
            f"{path.name}: the file is {size} bytes, more than the limit of {max_bytes}", limit=max_bytes
        )
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path.name}: not an .npz archive (expected a file written by numpy.savez)")
    check_zip_entries(path, max_entries_for(max_images), path.name)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            uncompressed = sum(info.file_size for info in infos)
            if uncompressed > max_bytes:
                raise DatasetTooLargeError(
                    f"{path.name}: the arrays take {uncompressed} bytes uncompressed, more than the limit of "
                    f"{max_bytes}",
                    limit=max_bytes,
                )
            declared = sum(_declared_bytes(archive, info, path.name) for info in infos)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetError(f"{path.name}: corrupt .npz archive ({exc})") from exc
    if declared > max_bytes:
        raise DatasetTooLargeError(
            f"{path.name}: the arrays' headers declare {declared} bytes, more than the limit of {max_bytes}",
            limit=max_bytes,
        )


def _declared_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> int:
    """Bytes the member's `.npy` header says its array holds; 0 for a member that is no `.npy` array
    (numpy hands those out as bytes, bounded by the uncompressed size already checked). Whatever the
    member's name: numpy reads any member that starts like an `.npy` file as an array."""
    key = info.filename.removesuffix(".npy")
    try:
        with archive.open(info) as stream:
            magic = stream.read(len(np.lib.format.MAGIC_PREFIX) + 2)
            if not magic.startswith(np.lib.format.MAGIC_PREFIX):
                return 0
            version = (magic[-2], magic[-1])
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"format version {version} is not one numpy.savez writes")
    except Exception as exc:  # a damaged member or header: zipfile, numpy's parser (ValueError, SyntaxError, ...)
        raise DatasetError(f"{where}: array {key!r} cannot be read: {exc}") from exc
    return math.prod(int(n) for n in shape) * dtype.itemsize


def _read_array(npz: np.lib.npyio.NpzFile, key: str, where: str) -> np.ndarray:
    try:
        return npz[key]
    except Exception as exc:  # a damaged header reaches numpy's parser: TokenError, SyntaxError, ...
        # Object arrays (lists of Python objects) need pickle, which an upload must never get.
        reason = "it holds Python objects, which need pickle" if "pickle" in str(exc) else str(exc)
        raise DatasetError(f"{where}: array {key!r} cannot be read: {reason}") from exc


def _images_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype != np.uint8:
        hint = " (scale [0, 1] floats with (x * 255).round().astype(np.uint8))" if x.dtype.kind == "f" else ""
        raise DatasetError(f"{where}: 'x' must be uint8 pixel values 0-255, got {x.dtype}{hint}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DatasetError(f"{where}: 'x' must be NHW, NHWC or NCHW (3-D or 4-D), got {x.ndim}-D shape {x.shape}")
    channels_last = x.shape[3] in ALLOWED_CHANNELS
    channels_first = x.shape[1] in ALLOWED_CHANNELS
    if channels_last and channels_first:
        raise DatasetError(
            f"{where}: 'x' shape {x.shape} is ambiguous: both axis 1 and axis 3 could be channels "
            f"(images must be at least {MIN_RESOLUTION}x{MIN_RESOLUTION})"
        )
    if channels_last:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if channels_first:
        return x
    raise DatasetError(f"{where}: 'x' shape {x.shape} has no channel axis of size 1 or 3 (NHWC or NCHW)")


def _labels(y: np.ndarray, n: int, names: np.ndarray | None, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{where}: 'y' must hold integer labels, got {y.dtype}")
    if y.ndim != 1:
        raise DatasetError(f"{where}: 'y' must be 1-D (one label per image), got shape {y.shape}")
    if y.shape[0] != n:
        raise DatasetError(f"{where}: 'y' has {y.shape[0]} labels but 'x' has {n} images")
    values, labels = np.unique(y, return_inverse=True)
    if names is None:
        return labels.astype(np.int64), tuple(str(value) for value in values)
    if names.dtype.kind not in "US" or names.ndim != 1:
        raise DatasetError(f"{where}: 'class_names' must be a 1-D array of strings, got {names.dtype} {names.shape}")
    class_names = tuple(
        name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in names.tolist()
    )
    if len(class_names) != values.shape[0]:
        raise DatasetError(
            f"{where}: 'class_names' has {len(class_names)} names but 'y' has {values.shape[0]} distinct labels "
            f"{values.tolist()[:20]} (one name per distinct label, in sorted label order)"
        )
    if any(not name.strip() for name in class_names) or len(set(class_names)) != len(class_names):
        raise DatasetError(f"{where}: 'class_names' must be distinct and non-empty, got {list(class_names)}")
    return labels.astype(np.int64), class_names
