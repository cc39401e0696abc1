"""Datasets that ship with hwnas and need no upload or download: `synthetic` and `digits`.

`synthetic` exists so that tests, demos and CI can run a whole search in seconds at any resolution
and class count; `digits` is the smallest *real* image dataset available offline (scikit-learn
bundles it), so a demo can show accuracy on handwriting rather than on generated patterns.
"""

from __future__ import annotations

import numpy as np

from nas.datasets.dataset import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    MIN_RESOLUTION,
    DatasetError,
    ImageDataset,
    validate_dataset,
)
from nas.datasets.resize import resize_uint8

# Gratings summed per class: enough that two classes rarely look alike, few enough to stay smooth.
_GRATINGS_PER_CLASS = 3
# Per-image nuisance, tuned so that capacity matters: at 16 px, a 4-channel two-layer CNN reaches
# ~60% validation accuracy after 12 epochs and a 16-channel one ~80% on 10 classes (a pixel-space
# nearest-class-mean ~45%), rather than every candidate scoring 100%.
_SHIFT = 0.25  # fraction of the image, each way: pixel templates blur, convolutions do not care
_ROTATION = 0.15  # radians
_ZOOM = 0.1
_AMPLITUDE_JITTER = 0.5  # so no single grating decides the class alone
_DISTRACTORS = 1  # random gratings unrelated to the class, added to every image
_RENDER_CHUNK = 1024  # images rendered at a time, bounding float64 temporaries
_DIGITS_MAX_VALUE = 16  # load_digits stores ink as 0..16
_DIGITS_IMAGES = 1797


def synthetic_dataset(
    num_classes: int = 10,
    per_class: int = 50,
    resolution: int = 32,
    channels: int = 3,
    seed: int = 0,
    noise: float = 0.35,
) -> ImageDataset:
    """Seeded class-conditional images: each class a mix of coloured, oriented low-frequency gratings.

    Every image is its class's gratings, shifted, slightly rotated and zoomed, each at a random
    strength, plus one random distractor grating, random contrast and brightness, and Gaussian
    pixel noise of standard deviation `noise` (the pattern's amplitude is about 1). A network must
    learn orientation, frequency and colour rather than memorise pixels, and bigger networks learn
    it better, which is what a search needs to tell candidates apart.

    Patterns are defined on continuous coordinates, so one seed gives the same classes at every
    resolution; class k's pattern does not depend on `num_classes` or `per_class` either, which
    keeps small test variants recognisably the same data as the demo's.
    """
    if num_classes < 2:
        raise DatasetError(f"synthetic: num_classes must be at least 2, got {num_classes}")
    if per_class < 2:
        raise DatasetError(f"synthetic: per_class must be at least 2, got {per_class}")
    if channels not in (1, 3):
        raise DatasetError(f"synthetic: channels must be 1 or 3, got {channels}")
    _check_resolution("synthetic", resolution)
    _check_size("synthetic", num_classes * per_class, channels, resolution)
    if noise < 0:
        raise DatasetError(f"synthetic: noise must be non-negative, got {noise}")

    # Independent streams: class patterns never change when the number of per-image draws does.
    pattern_seed, image_seed = np.random.SeedSequence(seed).spawn(2)
    pattern_rng = np.random.default_rng(pattern_seed)
    image_rng = np.random.default_rng(image_seed)

    labels = np.tile(np.arange(num_classes, dtype=np.int64), per_class)
    gratings = _image_gratings(_class_gratings(pattern_rng, num_classes, channels), labels, image_rng)
    n = labels.shape[0]
    contrast = image_rng.uniform(0.7, 1.3, size=(n, 1, 1, 1))
    brightness = image_rng.uniform(-0.15, 0.15, size=(n, 1, 1, 1))

    coords = 2 * np.pi * (np.arange(resolution) + 0.5) / resolution
    pixels = np.empty((n, channels, resolution, resolution), dtype=np.uint8)
    for start in range(0, n, _RENDER_CHUNK):
        part = slice(start, start + _RENDER_CHUNK)
        freq, phase, amplitude, color = (array[part] for array in gratings)
        images = _render(freq, phase, amplitude[..., None] * color, coords)
        images *= (contrast[part] / _GRATINGS_PER_CLASS).astype(np.float32)
        images += brightness[part].astype(np.float32)
        images += np.float32(noise) * image_rng.standard_normal(size=images.shape, dtype=np.float32)
        images = 127.5 + 110.0 * images  # about +-1 of pattern -> 0..255
        pixels[part] = np.clip(np.rint(images, out=images), 0, 255, out=images).astype(np.uint8)
    class_names = tuple(f"class_{k}" for k in range(num_classes))
    return validate_dataset(ImageDataset("synthetic", pixels, labels, class_names))


def _render(freq: np.ndarray, phase: np.ndarray, weight: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Sum of gratings weight * cos(fx x + fy y + phase), per channel: (m, G, ...) -> (m, C, H, W).

    Split as cos(a + b) = cos a cos b - sin a sin b, each 2-D wave is an outer product of a row and
    a column, so the sum over gratings is one batched matrix product instead of m*G*H*W cosines.
    """
    along_x = freq[..., 0, None] * coords  # (m, G, W)
    along_y = freq[..., 1, None] * coords + phase[..., None]  # (m, G, H)
    weight = weight.astype(np.float32)
    rows_cos = np.einsum("mgc,mgh->mchg", weight, np.cos(along_y).astype(np.float32))
    rows_sin = np.einsum("mgc,mgh->mchg", weight, np.sin(along_y).astype(np.float32))
    cols_cos = np.cos(along_x).astype(np.float32)[:, None]  # (m, 1, G, W)
    cols_sin = np.sin(along_x).astype(np.float32)[:, None]
    return rows_cos @ cols_cos - rows_sin @ cols_sin


def _class_gratings(rng: np.random.Generator, num_classes: int, channels: int) -> tuple[np.ndarray, ...]:
    """Per class and grating: angle, cycles across the image, phase, weight, colour (K, g[, C])."""
    # Drawn class by class in a fixed number of draws, so class k is the same for any num_classes.
    params = np.stack([rng.uniform(size=(_GRATINGS_PER_CLASS, 4 + channels)) for _ in range(num_classes)])
    angle = params[..., 0] * np.pi
    cycles = 1.0 + 2.0 * params[..., 1]  # 1-3 cycles: coarse enough to survive 8 px
    phase = params[..., 2] * 2 * np.pi
    weight = 0.5 + params[..., 3]
    color = 2.0 * params[..., 4:] - 1.0  # per-channel sign and strength
    return angle, cycles, phase, weight, color


def _image_gratings(
    classes: tuple[np.ndarray, ...], labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Each image's gratings after its nuisance draws: frequency (n, G, 2), phase, amplitude, colour."""
    angle, cycles, phase, weight, color = (array[labels] for array in classes)
    n, g = angle.shape
    shift = rng.uniform(-_SHIFT, _SHIFT, size=(n, 1, 2))
    angle = angle + rng.uniform(-_ROTATION, _ROTATION, size=(n, 1))
    cycles = cycles * rng.uniform(1 - _ZOOM, 1 + _ZOOM, size=(n, 1))
    freq = np.stack([cycles * np.cos(angle), cycles * np.sin(angle)], axis=-1)
    phase = phase + 2 * np.pi * (freq * shift).sum(-1)  # shifting a grating moves its phase
    amplitude = weight * rng.uniform(1 - _AMPLITUDE_JITTER, 1 + _AMPLITUDE_JITTER, size=(n, g))

    d = _DISTRACTORS
    d_angle = rng.uniform(0, np.pi, size=(n, d))
    d_cycles = rng.uniform(1.0, 3.0, size=(n, d))
    d_freq = np.stack([d_cycles * np.cos(d_angle), d_cycles * np.sin(d_angle)], axis=-1)
    return (
        np.concatenate([freq, d_freq], axis=1),
        np.concatenate([phase, rng.uniform(0, 2 * np.pi, size=(n, d))], axis=1),
        np.concatenate([amplitude, rng.uniform(0.5, 1.5, size=(n, d))], axis=1),
        np.concatenate([color, rng.uniform(-1, 1, size=(n, d, color.shape[-1]))], axis=1),
    )


def digits_dataset(resolution: int = 32, channels: int = 1) -> ImageDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, bilinearly upsampled to `resolution`.

    Read from the copy scikit-learn installs, so it needs no network. `channels=3` repeats the grey
    channel, for search spaces whose stems expect RGB input.
    """
    if channels not in (1, 3):
        raise DatasetError(f"digits: channels must be 1 or 3, got {channels}")
    _check_resolution("digits", resolution)
    _check_size("digits", _DIGITS_IMAGES, channels, resolution)
    from sklearn.datasets import load_digits  # heavy import, paid only by those who use digits

    bunch = load_digits()
    ink = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), values 0..16
    pixels = np.clip(np.rint(ink * (255.0 / _DIGITS_MAX_VALUE)), 0, 255).astype(np.uint8)[:, None]
    pixels = resize_uint8(pixels, resolution)
    if channels == 3:
        pixels = np.repeat(pixels, 3, axis=1)
    labels = np.asarray(bunch.target, dtype=np.int64)
    class_names = tuple(str(name) for name in bunch.target_names)
    return validate_dataset(ImageDataset("digits", pixels, labels, class_names))


def _check_resolution(name: str, resolution: int) -> None:
    if resolution < MIN_RESOLUTION:
        raise DatasetError(f"{name}: resolution must be at least {MIN_RESOLUTION}, got {resolution}")


def _check_size(name: str, images: int, channels: int, resolution: int) -> None:
    """The limits uploads have, checked before anything is allocated (specs arrive from API clients)."""
    if images > DEFAULT_MAX_IMAGES:
        raise DatasetError(f"{name}: {images} images, more than the limit of {DEFAULT_MAX_IMAGES}")
    pixels = images * channels * resolution * resolution
    if pixels > DEFAULT_MAX_BYTES:
        raise DatasetError(f"{name}: {images} images at {resolution}x{resolution}x{channels} take {pixels} bytes, "
                           f"more than the limit of {DEFAULT_MAX_BYTES}")  # fmt: skip
