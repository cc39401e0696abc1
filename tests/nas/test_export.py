"""model.onnx and model_uint8.onnx: the uint8 model's graph does the service's preprocessing (raw images
of any size, grayscale and RGB, enlarged and shrunk) and then the network, to float32 precision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from nas.datasets import DatasetSplit, ImageDataset, split_dataset, synthetic_dataset
from nas.datasets.resize import resize_float
from nas.export import (
    LOGITS,
    METADATA_CLASS_NAMES,
    METADATA_PREPROCESSING,
    PROBABILITIES,
    UINT8_INPUT,
    export_uint8_model,
    preprocessing_model,
    write_download,
)
from nas.preprocessing import Preprocessing, preprocessing_for, read_spec_document
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import build_model
from search_spaces.onnx_export import INPUT_NAME, cpu_session
from search_spaces.reference import reference_spec

RESOLUTION = 16
# Raw sizes (height, width): the deployment size, enlarged, shrunk, and one side each way.
RAW_SIZES = [(16, 16), (8, 8), (11, 5), (40, 40), (300, 200), (13, 29), (50, 9), (7, 100)]


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _grayscale_dataset() -> ImageDataset:
    """Grayscale 8x8 images (the deployment resolution enlarges them), three named classes."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 1, 8, 8), dtype=np.uint8)
    return ImageDataset("gray", images, np.repeat(np.arange(3), 8), ("cat", "dog", "émeu"))


def _rgb_dataset() -> ImageDataset:
    """RGB 24x24 images (the deployment resolution shrinks them)."""
    return synthetic_dataset(num_classes=3, per_class=8, resolution=24)


DATASETS = {"grayscale": _grayscale_dataset, "rgb": _rgb_dataset}


def _service_input(raw: np.ndarray, split: DatasetSplit) -> np.ndarray:
    """What the service feeds its networks, from uint8 NHWC images: resize.py on pixels / 255, the
    grayscale channel repeated (runner.load_split), then the split's standardisation."""
    scaled = raw.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    x = resize_float(scaled, RESOLUTION)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    mean, std = np.float32(split.mean), np.float32(split.std)
    if mean.shape[0] == 1:
        mean, std = np.repeat(mean, 3), np.repeat(std, 3)
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


def _lively(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and scales and larger classifier weights, so the logits are far from
    zero (a fresh network's are tiny, and would hide differences)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.3, generator=generator)
                module.running_var.uniform_(0.2, 1.0, generator=generator)
                module.weight.uniform_(0.8, 2.0, generator=generator)
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 3.0 / module.in_features**0.5, generator=generator)
    return model.eval()


def _network(num_classes: int = 3) -> tuple[ArchSpec, nn.Module]:
    spec = reference_spec("mobilenet_v3_small", width=0.35, resolution=RESOLUTION, num_classes=num_classes)
    torch.manual_seed(0)
    return spec, _lively(build_model(spec))


def _setup(kind: str) -> tuple[ImageDataset, DatasetSplit, Preprocessing]:
    dataset = DATASETS[kind]()
    split = split_dataset(dataset, seed=0, resolution=RESOLUTION)
    return dataset, split, preprocessing_for(dataset, split)


@pytest.mark.parametrize("kind", ["grayscale", "rgb"])
def test_preprocessing_graph_is_the_services_float_pipeline(kind: str) -> None:
    dataset, split, preprocessing = _setup(kind)
    session = cpu_session(preprocessing_model(preprocessing).SerializeToString())
    rng = np.random.default_rng(1)
    worst = 0.0
    for height, width in RAW_SIZES:
        raw = rng.integers(0, 256, (3, height, width, dataset.in_channels), dtype=np.uint8)
        graph = session.run([INPUT_NAME], {UINT8_INPUT: raw})[0]
        expected = _service_input(raw, split)
        assert graph.shape == expected.shape == (3, 3, RESOLUTION, RESOLUTION)
        worst = max(worst, float(np.max(np.abs(graph - expected))))
    # Standardised units (std ~0.3 of the [0, 1] scale): float32 rounding, ~1e-6 measured.
    print(f"{kind}: largest network-input difference {worst:.2e}")
    assert worst < 2e-5, worst


@pytest.mark.parametrize("kind", ["grayscale", "rgb"])
def test_the_dataset_images_get_the_arrays_split_dataset_made(kind: str) -> None:
    """At the dataset's own size, the graph computes what split_dataset fed the network."""
    dataset, split, preprocessing = _setup(kind)
    session = cpu_session(preprocessing_model(preprocessing).SerializeToString())
    raw = dataset.images.transpose(0, 2, 3, 1)
    graph = session.run([INPUT_NAME], {UINT8_INPUT: raw})[0]
    # split.x_train and x_val are the dataset's images in dataset order within each part.
    expected = np.concatenate([split.x_train, split.x_val])
    if expected.shape[1] == 1:
        expected = np.repeat(expected, 3, axis=1)
    rows = {row.tobytes(): row for row in graph[:, :1]}  # one channel identifies an image
    assert len(rows) == len(dataset)
    worst = 0.0
    for row in expected:
        match = min(rows.values(), key=lambda candidate: float(np.abs(candidate - row[:1]).max()))
        worst = max(worst, float(np.abs(match - row[:1]).max()))
    assert worst < 2e-5, worst


@pytest.mark.parametrize("kind", ["grayscale", "rgb"])
def test_uint8_model_equals_the_float_pipeline_and_the_network(kind: str) -> None:
    dataset, split, preprocessing = _setup(kind)
    spec, model = _network()
    session = cpu_session(export_uint8_model(spec, model, preprocessing, split.class_names))
    rng = np.random.default_rng(2)
    worst, largest = 0.0, 0.0
    for height, width in RAW_SIZES:
        raw = rng.integers(0, 256, (4, height, width, dataset.in_channels), dtype=np.uint8)
        logits, probabilities = session.run([LOGITS, PROBABILITIES], {UINT8_INPUT: raw})
        with torch.no_grad():
            expected = model(torch.from_numpy(_service_input(raw, split))).numpy()
        assert logits.shape == probabilities.shape == (4, 3)
        worst = max(worst, float(np.max(np.abs(logits - expected))))
        largest = max(largest, float(np.max(np.abs(expected))))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(probabilities, torch.softmax(torch.from_numpy(expected), 1).numpy(), atol=1e-5)
        assert (logits.argmax(1) == expected.argmax(1)).all()
    assert largest > 1.0  # logits large enough that a wrong input would show
    print(f"{kind}: largest logit difference {worst:.2e} (largest logit {largest:.2f})")
    assert worst < 1e-4 * largest, (worst, largest)


def test_uint8_model_inputs_outputs_and_metadata() -> None:
    dataset, split, preprocessing = _setup("grayscale")
    spec, model = _network()
    model_bytes = export_uint8_model(spec, model, preprocessing, split.class_names)
    proto = onnx.load_from_string(model_bytes)
    assert proto.opset_import[0].version == 18
    (image,) = proto.graph.input
    assert image.name == UINT8_INPUT and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 1]
    assert [o.name for o in proto.graph.output] == [LOGITS, PROBABILITIES]
    props = {p.key: p.value for p in proto.metadata_props}
    assert Preprocessing.model_validate_json(props[METADATA_PREPROCESSING]) == preprocessing
    assert json.loads(props[METADATA_CLASS_NAMES]) == ["cat", "dog", "émeu"]


@pytest.mark.parametrize("kind", ["grayscale", "rgb"])
def test_write_download_writes_the_three_files(kind: str, tmp_path: Path) -> None:
    dataset, split, preprocessing = _setup(kind)
    spec, model = _network()
    exported = write_download(tmp_path, spec, model, dataset, split)
    assert exported.files == {"spec": "spec.json", "onnx": "model.onnx", "onnx_uint8": "model_uint8.onnx"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model_uint8.onnx", "spec.json"]
    assert exported.uint8_parity.ok and exported.onnx_bytes == (tmp_path / "model.onnx").read_bytes()
    document = read_spec_document((tmp_path / "spec.json").read_text(encoding="utf-8"))
    assert document.spec == spec and document.preprocessing == preprocessing
    assert document.class_names == dataset.class_names
    # model.onnx: the float input as before, the same preprocessing and class names in its metadata.
    proto = onnx.load(tmp_path / "model.onnx")
    props = {p.key: p.value for p in proto.metadata_props}
    assert Preprocessing.model_validate_json(props[METADATA_PREPROCESSING]) == preprocessing
    assert json.loads(props[METADATA_CLASS_NAMES]) == list(dataset.class_names)
    raw = dataset.images[:1].transpose(0, 2, 3, 1)
    float_logits = cpu_session(exported.onnx_bytes).run(None, {INPUT_NAME: _service_input(raw, split)})[0]
    uint8_logits = cpu_session((tmp_path / "model_uint8.onnx").read_bytes()).run([LOGITS], {UINT8_INPUT: raw})[0]
    np.testing.assert_allclose(uint8_logits, float_logits, atol=1e-4)
    with pytest.raises(ValueError, match="the split is at 16 px, the network ships at 32 px"):
        write_download(tmp_path, spec.with_resolution(32), model, dataset, split)
