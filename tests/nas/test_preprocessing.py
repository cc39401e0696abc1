"""The preprocessing and class names a download carries: built from the deployment split, written into
spec.json beside the spec's own keys, and read back (old spec readers keep working)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from nas.datasets import ImageDataset, split_dataset, synthetic_dataset
from nas.datasets.resize import resize_float
from nas.preprocessing import (
    Preprocessing,
    preprocessing_for,
    read_spec_document,
    spec_document_json,
    to_network_input,
)
from search_spaces.arch_spec import ArchSpec
from search_spaces.reference import reference_spec


def _grayscale(resolution: int = 8) -> ImageDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 1, resolution, resolution), dtype=np.uint8)
    return ImageDataset("gray", images, np.repeat(np.arange(3), 4), ("zero", "one", "two"))


def test_preprocessing_of_a_grayscale_dataset_repeats_channel_and_statistics() -> None:
    dataset = _grayscale()
    split = split_dataset(dataset, seed=0, resolution=16)
    preprocessing = preprocessing_for(dataset, split)
    assert preprocessing.resolution == 16 and preprocessing.dataset_resolution == 8
    assert preprocessing.image_channels == 1 and preprocessing.color_mode == "L"
    assert preprocessing.channel_order == ("L", "L", "L") and preprocessing.network_channels == 3
    assert preprocessing.mean == split.mean * 3 and preprocessing.std == split.std * 3
    assert preprocessing.divide_by == 255.0 and preprocessing.layout == "NCHW"
    assert preprocessing.resize.method == "bilinear" and preprocessing.resize.antialias == "when_shrinking"


def test_preprocessing_of_an_rgb_dataset() -> None:
    dataset = synthetic_dataset(num_classes=3, per_class=6, resolution=24)
    split = split_dataset(dataset, seed=0, resolution=16)
    preprocessing = preprocessing_for(dataset, split)
    assert preprocessing.channel_order == ("R", "G", "B") and preprocessing.color_mode == "RGB"
    assert preprocessing.mean == split.mean and preprocessing.std == split.std
    assert (preprocessing.resolution, preprocessing.dataset_resolution) == (16, 24)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"mean": (0.5, 0.5)}, "one value per channel"),
        ({"color_mode": "RGB"}, "does not give 1 channel"),
        ({"std": (1.0, 0.0, 1.0)}, "std must be positive"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_inconsistent_preprocessing_is_refused(changes: dict, words: str) -> None:
    dataset = _grayscale()
    valid = preprocessing_for(dataset, split_dataset(dataset, resolution=16)).model_dump()
    with pytest.raises(ValidationError, match=words):
        Preprocessing.model_validate({**valid, **changes})


def test_the_float_reference_is_the_services_resize_and_standardisation() -> None:
    dataset = synthetic_dataset(num_classes=3, per_class=6, resolution=24)
    split = split_dataset(dataset, seed=0, resolution=16)
    preprocessing = preprocessing_for(dataset, split)
    images = dataset.images[:4]
    expected = resize_float(images.astype(np.float32) / np.float32(255), 16)
    expected = (expected - np.float32(split.mean)[None, :, None, None]) / np.float32(split.std)[None, :, None, None]
    nhwc = list(images.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(to_network_input(nhwc, preprocessing), expected, atol=1e-6)
    # At the dataset's own size it is exactly the split's own standardisation.
    at_size = split_dataset(dataset, seed=0)
    own_size = to_network_input(nhwc, preprocessing_for(dataset, at_size))
    np.testing.assert_array_equal(own_size, at_size.standardize(images))
    with pytest.raises(ValueError, match=r"expected uint8 \(H, W, 3\)"):
        to_network_input([images[0].transpose(1, 2, 0).astype(np.float32)], preprocessing)
    with pytest.raises(ValueError, match=r"expected uint8 \(H, W, 3\)"):
        to_network_input([images[0, :1].transpose(1, 2, 0)], preprocessing)


def test_spec_json_keeps_every_spec_key_and_adds_preprocessing_and_class_names() -> None:
    dataset = _grayscale()
    preprocessing = preprocessing_for(dataset, split_dataset(dataset, resolution=16))
    spec = reference_spec("mobilenet_v3_small", width=0.35, resolution=16, num_classes=3)
    text = spec_document_json(spec, preprocessing, dataset.class_names)
    document = json.loads(text)
    assert {key: document[key] for key in json.loads(spec.to_json())} == json.loads(spec.to_json())
    assert document["class_names"] == ["zero", "one", "two"]
    assert document["preprocessing"]["mean"] == list(preprocessing.mean)
    # Readers of the spec alone still read it, and the network's hash does not change.
    assert ArchSpec.from_json(text) == spec and ArchSpec.from_json(text).content_hash() == spec.content_hash()
    read = read_spec_document(text)
    assert (read.spec, read.preprocessing, read.class_names) == (spec, preprocessing, dataset.class_names)
    old = read_spec_document(spec.to_json())  # a download from before preprocessing was written
    assert old.spec == spec and old.preprocessing is None and old.class_names is None
    with pytest.raises(ValueError, match="2 class names for a network with 3 outputs"):
        spec_document_json(spec, preprocessing, ("a", "b"))
    with pytest.raises(ValueError, match="not JSON"):
        read_spec_document("{")
    with pytest.raises(ValidationError):
        ArchSpec.from_json("{")
    with pytest.raises(ValidationError, match="unexpected"):
        ArchSpec.from_json(json.dumps({**json.loads(spec.to_json()), "unexpected": 1}))
