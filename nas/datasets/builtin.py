"""Datasets that ship with hwnas and need no upload or download: `synthetic`, `digits` and `photos`.

`synthetic` exists so that tests, demos and CI can run a whole search in seconds at any resolution
and class count; `digits` is the smallest *real* image dataset available offline (scikit-learn
bundles it), so a demo can show accuracy on handwriting rather than on generated patterns.

`digits` leaves little room between networks; `photos` is the harder real set beside it: 18
classes, each the crops of one photograph that scikit-image ships inside its wheel. Measured with
the search's final-training recipe (AdamW, lr 4e-3, batch 64) at 32 px on an 80/20 split,
MobileNetV3-Small at widths 0.5 and 1.0 reaches 73.7% and 74.6% on `photos` after 5 epochs (one
seed) and 78.4% and 81.6% after 15 (mean of two training seeds); on `digits`, 96.1% and 97.2%,
then 97.0% and 98.8%.
"""

from __future__ import annotations

import importlib.resources

import numpy as np
from PIL import Image

from nas.datasets.dataset import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    MIN_RESOLUTION,
    DatasetError,
    DatasetTooLargeError,
    ImageDataset,
    validate_dataset,
)
from nas.datasets.resize import resize_float, resize_uint8

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

# One class per photograph inside scikit-image's wheel: (class name, file in `skimage/data`). Read
# from the installed package, never through `skimage.data`'s fetchers, so nothing can download.
# Left out: drawings and renderings (horse, logo, colorwheel, phantom, chessboards), the 102 px
# microaneurysms, and motorcycle_right (the other half of motorcycle_left's stereo pair).
_PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "astronaut.png"),
    ("brick", "brick.png"),
    ("camera", "camera.png"),
    ("cell", "cell.png"),
    ("chelsea", "chelsea.png"),
    ("clock", "clock_motion.png"),
    ("coffee", "coffee.png"),
    ("coins", "coins.png"),
    ("grass", "grass.png"),
    ("gravel", "gravel.png"),
    ("hubble_deep_field", "hubble_deep_field.jpg"),
    ("immunohistochemistry", "ihc.png"),
    ("moon", "moon.png"),
    ("motorcycle", "motorcycle_left.png"),
    ("page", "page.png"),
    ("retina", "retina.jpg"),
    ("rocket", "rocket.jpg"),
    ("text", "text.png"),
)
_PHOTO_MAX_SIDE = 512  # retina, hubble and cell are shrunk to this short side: crops stay cheap
_CROP_SIDE = (0.15, 0.40)  # square crops, as fractions of the photo's short side
_MAX_OVERLAP = 0.5  # intersection over union allowed between two crops of one photo
_MIN_DETAIL = 3.0  # grey-level std (0-255) under which a crop is featureless (a bare wall)
_BRIGHTNESS = 20.0  # grey levels, each way
_CONTRAST = 0.25  # factor 1 +- this, about the crop's mean
_CANDIDATES = 256  # crop boxes drawn at a time
_CANDIDATE_BATCHES = 64  # before giving up: far more than 200 crops of the smallest photo need
_PHOTOS_MAX_PER_CLASS = 200


def synthetic_dataset(
    num_classes: int = 10,
    per_class: int = 50,
    resolution: int = 32,
    channels: int = 3,
    seed: int = 0,
    noise: float = 0.35,
    max_bytes: int = DEFAULT_MAX_BYTES,
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
    _check_size("synthetic", num_classes * per_class, channels, resolution, max_bytes)
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
    return validate_dataset(ImageDataset("synthetic", pixels, labels, class_names), max_bytes=max_bytes)


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


def digits_dataset(resolution: int = 32, channels: int = 1, max_bytes: int = DEFAULT_MAX_BYTES) -> ImageDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, bilinearly upsampled to `resolution`.

    Read from the copy scikit-learn installs, so it needs no network. `channels=3` repeats the grey
    channel, for search spaces whose stems expect RGB input.
    """
    if channels not in (1, 3):
        raise DatasetError(f"digits: channels must be 1 or 3, got {channels}")
    _check_resolution("digits", resolution)
    _check_size("digits", _DIGITS_IMAGES, channels, resolution, max_bytes)
    from sklearn.datasets import load_digits  # heavy import, paid only by those who use digits

    bunch = load_digits()
    ink = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), values 0..16
    pixels = np.clip(np.rint(ink * (255.0 / _DIGITS_MAX_VALUE)), 0, 255).astype(np.uint8)[:, None]
    pixels = resize_uint8(pixels, resolution)
    if channels == 3:
        pixels = np.repeat(pixels, 3, axis=1)
    labels = np.asarray(bunch.target, dtype=np.int64)
    class_names = tuple(str(name) for name in bunch.target_names)
    return validate_dataset(ImageDataset("digits", pixels, labels, class_names), max_bytes=max_bytes)


def photos_dataset(
    per_class: int = 150,
    resolution: int = 32,
    channels: int = 3,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageDataset:
    """Crops of 18 real photographs that ship with scikit-image; the class is the photograph.

    Each image is a square crop of random size (15-40% of the photo's short side) at a random
    position, flipped left-right half the time, with brightness (+-20 grey levels) and contrast
    (x0.75-1.25) jitter, resized to `resolution` with the project's resize. Grey photographs are
    repeated to three channels; `channels=1` uses the grey version of every photo instead (same
    crops), which takes colour away as a cue. A small CNN's commonest mistakes at 32 px are grass for gravel
    and the moon for the clock: the task is texture and colour recognition, only partly learnt.

    No two crops of one photo overlap by more than half (intersection over union at most
    `_MAX_OVERLAP`), so no validation image is a near-copy of a training one. Crops still share
    parts of their photo: the service's split is a random one over images, so it cannot keep a
    photo's regions apart, and nearly all of a validation crop's pixels appear in some training
    crop. Measured (MobileNetV3-Small 0.5, 15 epochs, 120 training and 30 validation crops per
    class): 78.2% with a random split, 68.5% and 72.0% when training crops lie wholly in one half
    of every photo and validation crops in the other; recognising a seen photo from a new framing
    is worth about 8 points. Crops whose grey levels are almost flat (the bare wall behind the
    clock) are redrawn. Crop k of a class is the same for any `per_class` above k, so small variants
    are prefixes of the default. More than 200 per class would need crops that nearly repeat.
    """
    if not 2 <= per_class <= _PHOTOS_MAX_PER_CLASS:
        raise DatasetError(f"photos: per_class must be between 2 and {_PHOTOS_MAX_PER_CLASS}, got {per_class}")
    if channels not in (1, 3):
        raise DatasetError(f"photos: channels must be 1 or 3, got {channels}")
    _check_resolution("photos", resolution)
    _check_size("photos", len(_PHOTOS) * per_class, channels, resolution, max_bytes)

    pixels = np.empty((len(_PHOTOS), per_class, channels, resolution, resolution), dtype=np.uint8)
    streams = np.random.SeedSequence(seed).spawn(len(_PHOTOS))
    for label, ((name, file), stream) in enumerate(zip(_PHOTOS, streams, strict=True)):
        box_seed, jitter_seed = stream.spawn(2)
        grey, colour = _photo(file)
        photo = grey[None] if channels == 1 else colour
        boxes = _crop_boxes(name, grey, per_class, np.random.default_rng(box_seed))
        crops = np.concatenate(
            [
                resize_float(photo[None, :, top : top + side, left : left + side], resolution)
                for top, left, side in boxes
            ]
        )
        pixels[label] = _jitter(crops, np.random.default_rng(jitter_seed))
    # Interleaved (one crop of every class, then the next) like `synthetic`'s labels.
    images = pixels.transpose(1, 0, 2, 3, 4).reshape(-1, channels, resolution, resolution)
    labels = np.tile(np.arange(len(_PHOTOS), dtype=np.int64), per_class)
    class_names = tuple(name for name, _ in _PHOTOS)
    return validate_dataset(ImageDataset("photos", images, labels, class_names), max_bytes=max_bytes)


def _photo(file: str) -> tuple[np.ndarray, np.ndarray]:
    """One photograph as uint8 grey (H, W) and colour (3, H, W) planes, its short side at most 512 px."""
    try:
        path = importlib.resources.files("skimage") / "data" / file
        with path.open("rb") as stream, Image.open(stream, formats=("PNG", "JPEG")) as opened:
            image = opened.convert("RGB")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DatasetError(f"photos: needs scikit-image's sample photograph data/{file} ({exc})") from exc
    scale = _PHOTO_MAX_SIDE / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    grey = np.asarray(image.convert("L"))
    colour = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
    return grey, colour


def _crop_boxes(name: str, grey: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` square boxes (top, left, side), drawn until each passes the overlap and detail rules.

    Candidates come from the stream in fixed-size batches and are accepted in order, so the first k
    boxes do not depend on `count`.
    """
    height, width = grey.shape
    short = min(height, width)
    low, high = _CROP_SIDE
    boxes = np.empty((0, 3), dtype=np.int64)
    for _ in range(_CANDIDATE_BATCHES):
        draws = rng.uniform(size=(_CANDIDATES, 3))
        side = np.rint(short * (low + (high - low) * draws[:, 0])).astype(np.int64)
        top = np.floor(draws[:, 1] * (height - side + 1)).astype(np.int64)
        left = np.floor(draws[:, 2] * (width - side + 1)).astype(np.int64)
        candidates = np.stack([top, left, side], axis=1)
        # Candidates too close to a kept box go all at once; the rest are taken in order.
        candidates = candidates[~_too_close(candidates, boxes).any(axis=1)]
        close = _too_close(candidates, candidates)
        taken: list[int] = []
        for i, (row, col, size) in enumerate(candidates):
            if close[i, taken].any() or grey[row : row + size, col : col + size].std() < _MIN_DETAIL:
                continue
            taken.append(i)
            if len(boxes) + len(taken) == count:
                return np.concatenate([boxes, candidates[taken]])
        boxes = np.concatenate([boxes, candidates[taken]])
    raise DatasetError(f"photos: could not place {count} distinct crops in {name!r}; ask for fewer per_class")


def _too_close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)): whether two (top, left, side) boxes overlap by more than `_MAX_OVERLAP` (IoU)."""
    a_top, a_left, a_side = (column[:, None] for column in a.T)
    b_top, b_left, b_side = b.T
    across = np.minimum(a_left + a_side, b_left + b_side) - np.maximum(a_left, b_left)
    down = np.minimum(a_top + a_side, b_top + b_side) - np.maximum(a_top, b_top)
    shared = np.maximum(across, 0) * np.maximum(down, 0)
    return shared > _MAX_OVERLAP * (a_side**2 + b_side**2 - shared)


def _jitter(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip half the crops left-right, scale contrast about each crop's mean and shift brightness.

    float32 (n, C, H, W) on 0-255 -> uint8. One row of draws per crop keeps prefixes prefixes.
    """
    draws = rng.uniform(size=(crops.shape[0], 3)).astype(np.float32)
    flip = draws[:, 0] < 0.5
    crops[flip] = crops[flip, ..., ::-1]
    contrast = (1 - _CONTRAST + 2 * _CONTRAST * draws[:, 1])[:, None, None, None]
    brightness = (_BRIGHTNESS * (2 * draws[:, 2] - 1))[:, None, None, None]
    mean = crops.mean(axis=(1, 2, 3), keepdims=True)
    crops = (crops - mean) * contrast + (mean + brightness)
    return np.clip(np.rint(crops, out=crops), 0, 255, out=crops).astype(np.uint8)


def _check_resolution(name: str, resolution: int) -> None:
    if resolution < MIN_RESOLUTION:
        raise DatasetError(f"{name}: resolution must be at least {MIN_RESOLUTION}, got {resolution}")


def _check_size(name: str, images: int, channels: int, resolution: int, max_bytes: int) -> None:
    """The limits uploads have, checked before anything is allocated (specs arrive from API clients)."""
    if images > DEFAULT_MAX_IMAGES:
        raise DatasetError(f"{name}: {images} images, more than the limit of {DEFAULT_MAX_IMAGES}")
    pixels = images * channels * resolution * resolution
    if pixels > max_bytes:
        raise DatasetTooLargeError(f"{name}: {images} images at {resolution}x{resolution}x{channels} take {pixels} "
                                   f"bytes, more than the limit of {max_bytes}", limit=max_bytes)  # fmt: skip
