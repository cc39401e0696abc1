"""How to feed an exported network: the preprocessing and class names every download carries.

A network is trained on standardised float images at one resolution; its user holds image files. The
steps between them are the service's own (`nas.datasets`: resize.py, split.py, the loaders, and the
runner's grayscale -> 3-channel repeat). They are written down once here as data (`Preprocessing`),
which goes into spec.json and the ONNX metadata, and applied by `to_network_input` (the float
reference the uint8 ONNX model in `nas.export` is checked against).

spec.json is the `ArchSpec` document with two more top-level keys, ``preprocessing`` and
``class_names``; every spec key stays where it was, and `ArchSpec.from_json` skips the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nas.datasets import DatasetSplit, ImageDataset
from nas.datasets.resize import resize_float
from search_spaces.arch_spec import ArchSpec

PREPROCESSING_VERSION = 1
PIXEL_DIVISOR = 255.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResizeMethod(_Frozen):
    """The service's one resize (`nas.datasets.resize`): the whole image to `resolution` x `resolution`
    (stretched when not square; never cropped or padded), bilinear with half-pixel centres
    (PyTorch's align_corners=False), antialiased only along a shrinking side (for enlarging, the
    antialiased and plain filters are identical)."""

    method: Literal["bilinear"] = "bilinear"
    align_corners: Literal[False] = False
    antialias: Literal["when_shrinking"] = "when_shrinking"
    aspect_ratio: Literal["stretch"] = "stretch"


class Preprocessing(_Frozen):
    """Raw image -> network input: `input[c] = (resize(pixels) / divide_by - mean[c]) / std[c]`.

    Decode the image as `color_mode` (Pillow's "L" for 8-bit grayscale or "RGB"), giving
    `image_channels` channels of uint8 pixels; resize it (`resize`) to `resolution`; divide by
    `divide_by`; give the network its `channel_order` (a grayscale channel is repeated to ``L,L,L``);
    subtract `mean` and divide by `std`, per channel (the train split's statistics on the [0, 1]
    scale); lay it out as `layout` `dtype`. `dataset_resolution` is the side the search's images had
    once loaded (uploads are made square when uploaded); an image of that size takes exactly the
    path the service's own images took.
    """

    version: int = PREPROCESSING_VERSION
    resolution: int = Field(ge=1)
    resize: ResizeMethod = ResizeMethod()
    image_channels: Literal[1, 3]
    color_mode: Literal["L", "RGB"]
    channel_order: tuple[str, ...]
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"
    divide_by: float = PIXEL_DIVISOR
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset_resolution: int = Field(ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessing:
        if len(self.mean) != len(self.channel_order) or len(self.std) != len(self.channel_order):
            raise ValueError(f"mean and std need one value per channel of {self.channel_order}")
        if (self.color_mode == "L") != (self.image_channels == 1):
            raise ValueError(f"color_mode {self.color_mode!r} does not give {self.image_channels} channel(s)")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self

    @property
    def network_channels(self) -> int:
        return len(self.channel_order)


def preprocessing_for(dataset: ImageDataset, split: DatasetSplit, network_channels: int = 3) -> Preprocessing:
    """What the network finished on `split` (the deployment-resolution split of `dataset`) expects.

    A grayscale split may already be repeated to 3 channels (the runner's `load_split` repeats images
    and statistics alike); a single-channel one is repeated here the same way."""
    grayscale = dataset.in_channels == 1
    mean, std = tuple(split.mean), tuple(split.std)
    if len(mean) == 1 and network_channels > 1:
        mean, std = mean * network_channels, std * network_channels
    if len(mean) != network_channels:
        raise ValueError(f"the split has statistics for {len(mean)} channels, the network takes {network_channels}")
    return Preprocessing(
        resolution=split.resolution,
        image_channels=dataset.in_channels,
        color_mode="L" if grayscale else "RGB",
        channel_order=("L",) * network_channels if grayscale else ("R", "G", "B"),
        mean=mean,
        std=std,
        dataset_resolution=dataset.resolution,
    )


def to_network_input(images: np.ndarray | list[np.ndarray], preprocessing: Preprocessing) -> np.ndarray:
    """uint8 images, each (H, W, C) with C = `image_channels` and any size -> float32 NCHW network input.

    The float reference for the uint8 ONNX model: the same functions the service prepared its own
    images with (pixels / 255, then `resize_float`, then the split's standardisation)."""
    size = preprocessing.resolution
    batch = np.empty((len(images), preprocessing.network_channels, size, size), dtype=np.float32)
    for index, image in enumerate(images):
        pixels = np.asarray(image)
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != preprocessing.image_channels:
            raise ValueError(
                f"image {index}: expected uint8 (H, W, {preprocessing.image_channels}), "
                f"got {pixels.dtype} {pixels.shape}"
            )
        scaled = pixels.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(preprocessing.divide_by)
        resized = resize_float(scaled, size)[0]
        if resized.shape[0] != preprocessing.network_channels:
            resized = np.repeat(resized, preprocessing.network_channels, axis=0)
        batch[index] = resized
    batch -= np.asarray(preprocessing.mean, dtype=np.float32)[None, :, None, None]
    batch /= np.asarray(preprocessing.std, dtype=np.float32)[None, :, None, None]
    return batch


@dataclass(frozen=True)
class SpecDocument:
    """A downloaded spec.json: the network, and (for exports that carry them) how to feed it and what
    its outputs mean. Older downloads have neither."""

    spec: ArchSpec
    preprocessing: Preprocessing | None
    class_names: tuple[str, ...] | None


def spec_document_json(spec: ArchSpec, preprocessing: Preprocessing, class_names: tuple[str, ...]) -> str:
    """spec.json: the spec's own keys, then `preprocessing` and `class_names` (in label order)."""
    if len(class_names) != spec.head.num_classes:
        raise ValueError(f"{len(class_names)} class names for a network with {spec.head.num_classes} outputs")
    document = spec.model_dump(mode="json")
    document["preprocessing"] = preprocessing.model_dump(mode="json")
    document["class_names"] = list(class_names)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def read_spec_document(text: str | bytes) -> SpecDocument:
    """Parse spec.json as downloaded; raises ValueError naming what is wrong."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ValueError(f"spec.json is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ValueError("spec.json is not a JSON object")
    preprocessing = document.get("preprocessing")
    names = document.get("class_names")
    return SpecDocument(
        spec=ArchSpec.from_json(json.dumps(document)),
        preprocessing=None if preprocessing is None else Preprocessing.model_validate(preprocessing),
        class_names=None if names is None else tuple(str(name) for name in names),
    )
