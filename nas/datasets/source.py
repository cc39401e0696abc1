"""One string names any dataset: `synthetic`, `synthetic:classes=4,per_class=20`, `digits`, `photos`, or a path.

Searches, the CLI (`--dataset`) and the API store a dataset as this string, so a search can be
re-run or resumed from its row alone, and built-in variants need no upload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas.datasets.builtin import digits_dataset, photos_dataset, synthetic_dataset
from nas.datasets.dataset import DEFAULT_MAX_BYTES, DEFAULT_MAX_IMAGES, DatasetError, ImageDataset
from nas.datasets.imagefolder import load_imagefolder_zip
from nas.datasets.npz import load_npz

# Option name in a spec -> (builder keyword, parser). `classes` is the short spelling users type.
_SYNTHETIC_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "classes": ("num_classes", int),
    "num_classes": ("num_classes", int),
    "per_class": ("per_class", int),
    "resolution": ("resolution", int),
    "channels": ("channels", int),
    "seed": ("seed", int),
    "noise": ("noise", float),
}
_DIGITS_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "resolution": ("resolution", int),
    "channels": ("channels", int),
}
_PHOTOS_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "per_class": ("per_class", int),
    "resolution": ("resolution", int),
    "channels": ("channels", int),
    "seed": ("seed", int),
}
BUILTIN_DATASETS: dict[str, tuple[Callable[..., ImageDataset], dict[str, tuple[str, Callable[[str], Any]]]]] = {
    "synthetic": (synthetic_dataset, _SYNTHETIC_OPTIONS),
    "digits": (digits_dataset, _DIGITS_OPTIONS),
    "photos": (photos_dataset, _PHOTOS_OPTIONS),
}


def load_dataset(
    spec: str,
    resolution: int | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_images: int = DEFAULT_MAX_IMAGES,
) -> ImageDataset:
    """Resolve a dataset spec to a validated `ImageDataset`.

    `resolution` is the size to load at when the spec does not say; a spec that names a different
    one is an error rather than a silent choice between the two. `max_bytes` bounds an uploaded file,
    its uncompressed contents and every dataset's decoded pixels (`DatasetTooLargeError`, raised
    before the pixels are allocated); `max_images` bounds uploaded files.
    """
    spec = spec.strip()
    suffix = spec.lower().rsplit(".", 1)[-1] if "." in spec else ""
    if suffix == "npz":
        return load_npz(spec, max_bytes=max_bytes, max_images=max_images, resolution=resolution)
    if suffix == "zip":
        return load_imagefolder_zip(spec, max_bytes=max_bytes, max_images=max_images, resolution=resolution)

    name, _, options = spec.partition(":")
    if name not in BUILTIN_DATASETS:
        known = ", ".join(BUILTIN_DATASETS)
        raise DatasetError(f"unknown dataset {spec!r}: expected one of {known}, or a path ending in .npz or .zip")
    builder, allowed = BUILTIN_DATASETS[name]
    kwargs = _parse_options(name, options, allowed)
    if resolution is not None:
        if kwargs.get("resolution", resolution) != resolution:
            raise DatasetError(
                f"dataset {spec!r} asks for resolution {kwargs['resolution']} but {resolution} was requested"
            )
        kwargs["resolution"] = resolution
    # The byte limit holds for built-in datasets too: their options come from API clients.
    return builder(**kwargs, max_bytes=max_bytes)


def _parse_options(name: str, options: str, allowed: dict[str, tuple[str, Callable[[str], Any]]]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, equals, raw = (piece.strip() for piece in item.partition("="))
        if not equals or not raw:
            raise DatasetError(f"dataset {name!r}: option {item!r} must be key=value")
        if key not in allowed:
            raise DatasetError(f"dataset {name!r}: unknown option {key!r}; allowed: {', '.join(allowed)}")
        keyword, parse = allowed[key]
        if keyword in kwargs:
            raise DatasetError(f"dataset {name!r}: option {key!r} is given more than once")
        try:
            kwargs[keyword] = parse(raw)
        except ValueError as exc:
            raise DatasetError(f"dataset {name!r}: option {key!r} must be {parse.__name__}, got {raw!r}") from exc
    return kwargs
