"""User datasets as ImageFolder zips: `class_name/image.ext`, optionally under one top folder.

The layout people already have on disk (torchvision's ImageFolder), zipped as it is. An upload is
untrusted, so the archive is checked from its directory alone before anything is decompressed:
member paths that would escape a folder (zip-slip), total uncompressed size against the limit (zip
bombs), image count, and layout. Images are then decoded in memory by Pillow, never extracted to
disk, one at a time, each error naming the member at fault.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from nas.datasets.dataset import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    MIN_RESOLUTION,
    DatasetError,
    DatasetTooLargeError,
    ImageDataset,
    check_class_counts,
    check_class_names,
    validate_dataset,
)
from nas.datasets.zip_entries import check_zip_entries, max_entries_for

# Formats Pillow may try: common photo and dataset formats only, which narrows the decoders an
# untrusted upload can reach.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
# Without an explicit resolution the median image size is used, but never above this: searches
# train at small resolutions, and 256 px keeps the decoded array of a large upload affordable.
MAX_AUTO_RESOLUTION = 256
# Per image, checked from the header before decoding (Pillow's own bomb limit is ~5x higher).
MAX_IMAGE_PIXELS = 4096 * 4096
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAG = 0x1
# Raised by zipfile while decompressing a damaged member (bad CRC, truncated or invalid deflate data).
_ARCHIVE_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError)


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    class_name: str


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    grayscale: bool


def load_imagefolder_zip(
    path: str | PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_images: int = DEFAULT_MAX_IMAGES,
    resolution: int | None = None,
) -> ImageDataset:
    """Load and validate an ImageFolder zip; raise `DatasetError` naming the archive and member at fault.

    Classes are the folder names in sorted order. Images become RGB, or single-channel if every
    image is grayscale, and are resized (bilinear, stretched if not square) to `resolution`, else to
    the median of their shorter sides capped at `MAX_AUTO_RESOLUTION`. Hidden files and macOS
    `__MACOSX/` metadata are skipped; any other non-image file is an error, not silently ignored.
    """
    path = Path(path)
    where = path.name
    if resolution is not None and resolution < MIN_RESOLUTION:
        raise DatasetError(f"{where}: resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"{where}: cannot read the file ({exc.strerror or exc})") from exc
    if size > max_bytes:
        raise DatasetTooLargeError(
            f"{where}: the archive is {size} bytes, more than the limit of {max_bytes}", limit=max_bytes
        )
    check_zip_entries(path, max_entries_for(max_images), where)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{where}: not a zip archive ({exc})") from exc

    with archive:
        members = _class_members(archive.infolist(), where)
        check_class_names(where, sorted({member.class_name for member in members}))
        check_class_counts(where, Counter(member.class_name for member in members))
        if len(members) > max_images:
            raise DatasetError(f"{where}: {len(members)} images, more than the limit of {max_images}")
        uncompressed = sum(member.info.file_size for member in members)
        if uncompressed > max_bytes:
            raise DatasetTooLargeError(
                f"{where}: the images take {uncompressed} bytes uncompressed, more than the limit of {max_bytes}",
                limit=max_bytes,
            )
        headers = [_read_header(archive, member, where) for member in members]
        grayscale = all(header.grayscale for header in headers)
        channels = 1 if grayscale else 3
        side = resolution if resolution is not None else _automatic_side(headers)
        decoded_bytes = len(members) * side * side * channels
        if decoded_bytes > max_bytes:
            raise DatasetTooLargeError(
                f"{where}: {len(members)} images at {side}x{side}x{channels} take {decoded_bytes} bytes, "
                f"more than the limit of {max_bytes}; use a smaller resolution",
                limit=max_bytes,
            )
        images = np.empty((len(members), channels, side, side), dtype=np.uint8)
        for index, member in enumerate(members):
            images[index] = _decode(archive, member, side, grayscale, where)

    class_names = tuple(sorted({member.class_name for member in members}))
    label_of = {class_name: label for label, class_name in enumerate(class_names)}
    labels = np.array([label_of[member.class_name] for member in members], dtype=np.int64)
    return validate_dataset(
        ImageDataset(path.stem, images, labels, class_names), max_images=max_images, max_bytes=max_bytes
    )


def _class_members(infos: list[zipfile.ZipInfo], where: str) -> list[_Member]:
    """Check every entry's path and the folder layout; return the image members, sorted by path."""
    entries: list[tuple[zipfile.ZipInfo, list[str]]] = []
    for info in infos:
        parts = _safe_parts(info.filename, where)
        hidden = any(part.startswith(".") for part in parts)  # .DS_Store, ._a.png, .git/...
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or hidden:
            continue
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise DatasetError(f"{where}: member {info.filename!r} is encrypted")
        entries.append((info, parts))
    if not entries:
        raise DatasetError(f"{where}: the archive holds no files; expected class_name/image.png members")

    # One common top folder above the class folders (what zipping a directory produces) is dropped.
    tops = {parts[0] for _, parts in entries}
    if len(tops) == 1 and any(len(parts) >= 3 for _, parts in entries):
        entries = [(info, parts[1:]) for info, parts in entries]

    members = []
    for info, parts in entries:
        if len(parts) == 1:
            raise DatasetError(
                f"{where}: member {info.filename!r} is outside a class folder; expected class_name/image.png"
            )
        if len(parts) > 2:
            raise DatasetError(
                f"{where}: member {info.filename!r} is nested too deeply; expected class_name/image.png, "
                "optionally all under one top folder"
            )
        members.append(_Member(info, parts[0]))
    return sorted(members, key=lambda member: (member.class_name, member.info.filename))


def _safe_parts(name: str, where: str) -> list[str]:
    """Path components of a member name; refuse names that are absolute or climb out with `..`.

    Nothing is extracted to disk, but such a name is never legitimate in a dataset and is the
    signature of a zip-slip attack, so it rejects the whole upload.
    """
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        raise DatasetError(f"{where}: member {name!r} has an absolute path")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"{where}: member {name!r} points outside the archive ('..' in its path)")
    return parts


def _read_header(archive: zipfile.ZipFile, member: _Member, where: str) -> _Header:
    """Size and mode from the image header only: cheap, and enough to refuse bombs before decoding."""
    name = member.info.filename
    try:
        with archive.open(member.info) as stream, Image.open(stream, formats=IMAGE_FORMATS) as image:
            width, height, mode = image.width, image.height, image.mode
    except _ARCHIVE_DAMAGE as exc:
        raise DatasetError(f"{where}: member {name!r} is corrupt in the archive ({_reason(exc)})") from exc
    except Exception as exc:  # Pillow raises many types on malformed input
        raise DatasetError(f"{where}: member {name!r} is not an image Pillow can read ({_reason(exc)})") from exc
    if width * height > MAX_IMAGE_PIXELS:
        raise DatasetError(f"{where}: member {name!r} is {width}x{height}, more than {MAX_IMAGE_PIXELS} pixels")
    return _Header(width, height, mode in _GRAYSCALE_MODES)


def _automatic_side(headers: list[_Header]) -> int:
    shorter_sides = [min(header.width, header.height) for header in headers]
    return int(min(round(float(np.median(shorter_sides))), MAX_AUTO_RESOLUTION))


def _decode(archive: zipfile.ZipFile, member: _Member, side: int, grayscale: bool, where: str) -> np.ndarray:
    """One member -> uint8 (C, side, side). The whole member is read first so a CRC error surfaces."""
    name = member.info.filename
    try:
        data = archive.read(member.info)
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            image.load()
            converted = convert_like_upload(image, grayscale)
    except Exception as exc:  # Pillow and zipfile raise many types
        raise DatasetError(f"{where}: member {name!r} is corrupt ({_reason(exc)})") from exc
    if converted.size != (side, side):
        converted = converted.resize((side, side), Image.Resampling.BILINEAR)  # antialiased when shrinking
    pixels = np.asarray(converted, dtype=np.uint8)
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1)


def convert_like_upload(image: Image.Image, grayscale: bool) -> Image.Image:
    """An image as an upload's images are before resizing: EXIF rotation applied (phone photos store
    it there), then 8-bit single channel or RGB. `hwnas arch predict` decodes images the same way."""
    oriented = ImageOps.exif_transpose(image)
    return _to_grayscale(oriented) if grayscale else oriented.convert("RGB")


def _to_grayscale(image: Image.Image) -> Image.Image:
    """8-bit single channel; 16-bit images are scaled down rather than clipped to white."""
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.getextrema()[1] > 255):
        values = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if image.mode == "F":
        return Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    return image.convert("L")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
