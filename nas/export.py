"""The files a finished network ships as: spec.json, model.onnx and model_uint8.onnx.

model.onnx takes the standardised float input the network was trained on (batch 1, NCHW), and
carries the preprocessing and class names in its metadata. model_uint8.onnx takes raw images as they
are decoded, uint8 NHWC of any height and width, and does the whole preprocessing in its graph
(cast, /255, the service's resize, grayscale -> 3 channels, standardisation, NHWC -> NCHW) before
the network; it outputs logits and probabilities. Its resize is ONNX Resize (opset 18) with
antialias and exclude_outside, which is what PyTorch's antialiased bilinear filter computes
(weights falling outside the image dropped and the rest renormalised); when enlarging, the
antialiased filter equals the plain one, so one node covers both directions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from nas.datasets import DatasetSplit, ImageDataset
from nas.preprocessing import Preprocessing, preprocessing_for, spec_document_json, to_network_input
from search_spaces.arch_spec import ArchSpec
from search_spaces.onnx_export import INPUT_NAME, OUTPUT_NAME, ParityReport, cpu_session, export_module, export_spec

# Resize's `antialias` attribute needs opset 18.
UINT8_OPSET = 18
UINT8_INPUT = "image"
LOGITS = "logits"
PROBABILITIES = "probabilities"
METADATA_PREPROCESSING = "hwnas.preprocessing"
METADATA_CLASS_NAMES = "hwnas.class_names"
METADATA_INPUT = "hwnas.input"
FILES = {"spec": "spec.json", "onnx": "model.onnx", "onnx_uint8": "model_uint8.onnx"}
# Relative to the largest logit (as in `check_parity`): float32 resizing and standardisation agree
# to ~1e-6, and a network amplifies that by little.
UINT8_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportedNetwork:
    files: dict[str, str]
    onnx_bytes: bytes
    uint8_parity: ParityReport


def write_download(
    directory: Path, spec: ArchSpec, model: nn.Module, dataset: ImageDataset, split: DatasetSplit
) -> ExportedNetwork:
    """Write spec.json, model.onnx and model_uint8.onnx of `model` (finished on `split`, the deployment
    split of `dataset`) into `directory`; raise if the uint8 model does not compute what the float
    pipeline and PyTorch compute."""
    if split.resolution != spec.resolution:
        raise ValueError(f"the split is at {split.resolution} px, the network ships at {spec.resolution} px")
    preprocessing = preprocessing_for(dataset, split, spec.in_channels)
    class_names = tuple(split.class_names)
    onnx_bytes = with_metadata(export_spec(spec, model), preprocessing, class_names, "float32 NCHW")
    uint8_bytes = export_uint8_model(spec, model, preprocessing, class_names)
    parity = check_uint8_parity(model, uint8_bytes, preprocessing)
    if not parity.ok:
        raise RuntimeError(f"model_uint8.onnx differs from the float pipeline by {parity.max_abs_diff:.2e}")
    (directory / FILES["spec"]).write_text(spec_document_json(spec, preprocessing, class_names), encoding="utf-8")
    (directory / FILES["onnx"]).write_bytes(onnx_bytes)
    (directory / FILES["onnx_uint8"]).write_bytes(uint8_bytes)
    return ExportedNetwork(files=dict(FILES), onnx_bytes=onnx_bytes, uint8_parity=parity)


def with_metadata(onnx_bytes: bytes, preprocessing: Preprocessing, class_names: tuple[str, ...], takes: str) -> bytes:
    """The model with the preprocessing, class names and a word on its input in `metadata_props`."""
    model = onnx.load_from_string(onnx_bytes)
    _set_metadata(model, preprocessing, class_names, takes)
    return model.SerializeToString()


def _set_metadata(
    model: onnx.ModelProto, preprocessing: Preprocessing, class_names: tuple[str, ...], takes: str
) -> None:
    props = {prop.key: prop.value for prop in model.metadata_props}
    props[METADATA_PREPROCESSING] = preprocessing.model_dump_json()
    props[METADATA_CLASS_NAMES] = json.dumps(list(class_names), ensure_ascii=False)
    props[METADATA_INPUT] = takes
    helper.set_model_props(model, props)


def export_uint8_model(
    spec: ArchSpec, model: nn.Module, preprocessing: Preprocessing, class_names: tuple[str, ...]
) -> bytes:
    """model_uint8.onnx: raw uint8 images [N, H, W, C] in, `logits` and `probabilities` [N, K] out."""
    size = preprocessing.resolution
    network_bytes = export_module(model, (1, spec.in_channels, size, size), UINT8_OPSET, dynamic_batch=True)
    composed = _prepend_preprocessing(onnx.load_from_string(network_bytes), preprocessing, spec.head.num_classes)
    _set_metadata(composed, preprocessing, class_names, f"uint8 NHWC, {preprocessing.image_channels} channel(s)")
    onnx.checker.check_model(composed, full_check=True)
    return composed.SerializeToString()


def preprocessing_model(preprocessing: Preprocessing) -> onnx.ModelProto:
    """The preprocessing alone: raw uint8 images [N, H, W, C] in, the network's float input
    [N, 3, R, R] out (named like the network's input). model_uint8.onnx is this in front of the network."""
    nodes, initializers = _preprocessing_nodes(preprocessing)
    graph = helper.make_graph(
        nodes,
        "hwnas_preprocessing",
        [_uint8_input(preprocessing)],
        [
            helper.make_tensor_value_info(
                INPUT_NAME,
                TensorProto.FLOAT,
                ["batch", preprocessing.network_channels, preprocessing.resolution, preprocessing.resolution],
            )
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", UINT8_OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _uint8_input(preprocessing: Preprocessing) -> onnx.ValueInfoProto:
    shape = ["batch", "height", "width", preprocessing.image_channels]
    return helper.make_tensor_value_info(UINT8_INPUT, TensorProto.UINT8, shape)


def _preprocessing_nodes(preprocessing: Preprocessing) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes from the uint8 input to the network's float input, in the service's order: cast, /255,
    NHWC -> NCHW, resize, repeat a grayscale channel, standardise."""
    size = preprocessing.resolution
    initializers = [
        numpy_helper.from_array(np.array(preprocessing.divide_by, dtype=np.float32), "hwnas_divide_by"),
        numpy_helper.from_array(np.array([size, size], dtype=np.int64), "hwnas_size"),
        numpy_helper.from_array(np.array(preprocessing.mean, dtype=np.float32).reshape(1, -1, 1, 1), "hwnas_mean"),
        numpy_helper.from_array(np.array(preprocessing.std, dtype=np.float32).reshape(1, -1, 1, 1), "hwnas_std"),
    ]
    nodes = [
        helper.make_node("Cast", [UINT8_INPUT], ["hwnas_float"], to=TensorProto.FLOAT, name="hwnas_cast"),
        helper.make_node("Div", ["hwnas_float", "hwnas_divide_by"], ["hwnas_scaled"], name="hwnas_scale"),
        helper.make_node("Transpose", ["hwnas_scaled"], ["hwnas_nchw"], perm=[0, 3, 1, 2], name="hwnas_to_nchw"),
        helper.make_node(
            "Resize",
            ["hwnas_nchw", "", "", "hwnas_size"],
            ["hwnas_resized"],
            name="hwnas_resize",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
            antialias=1,
            exclude_outside=1,
            axes=[2, 3],
        ),
    ]
    resized = "hwnas_resized"
    if preprocessing.image_channels != preprocessing.network_channels:
        repeat = np.array([1, preprocessing.network_channels, 1, 1], dtype=np.int64)
        initializers.append(numpy_helper.from_array(repeat, "hwnas_channels"))
        nodes.append(
            helper.make_node("Expand", [resized, "hwnas_channels"], ["hwnas_repeated"], name="hwnas_gray_to_3")
        )
        resized = "hwnas_repeated"
    nodes += [
        helper.make_node("Sub", [resized, "hwnas_mean"], ["hwnas_centred"], name="hwnas_subtract_mean"),
        helper.make_node("Div", ["hwnas_centred", "hwnas_std"], [INPUT_NAME], name="hwnas_divide_std"),
    ]
    return nodes, initializers


def _prepend_preprocessing(network: onnx.ModelProto, preprocessing: Preprocessing, num_classes: int) -> onnx.ModelProto:
    """The network's graph with the preprocessing nodes in front (they produce its float input) and a
    softmax beside its logits."""
    graph = network.graph
    nodes, initializers = _preprocessing_nodes(preprocessing)
    network_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + network_nodes)
    graph.node.append(helper.make_node("Identity", [OUTPUT_NAME], [LOGITS], name="hwnas_logits"))
    graph.node.append(helper.make_node("Softmax", [OUTPUT_NAME], [PROBABILITIES], axis=1, name="hwnas_softmax"))
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.append(_uint8_input(preprocessing))
    del graph.output[:]
    for name in (LOGITS, PROBABILITIES):
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", num_classes]))
    return network


def check_uint8_parity(
    model: nn.Module, uint8_bytes: bytes, preprocessing: Preprocessing, seed: int = 0
) -> ParityReport:
    """Random raw images at the network's size, smaller, larger, and mixed (one side each way), through
    model_uint8.onnx and through `to_network_input` + PyTorch: the largest logit difference."""
    size = preprocessing.resolution
    shapes = [
        (size, size),
        (size // 2 + 1, max(1, size // 2 - 1)),
        (2 * size + 3, size + 5),
        (max(1, size - 3), 3 * size),
    ]
    rng = np.random.default_rng(seed)
    session = cpu_session(uint8_bytes)
    was_training = model.training
    model.eval()
    worst, scale = 0.0, 1.0
    try:
        with torch.no_grad():
            for height, width in shapes:
                images = rng.integers(0, 256, (2, height, width, preprocessing.image_channels), dtype=np.uint8)
                expected = model(torch.from_numpy(to_network_input(list(images), preprocessing))).numpy()
                actual = session.run([LOGITS], {UINT8_INPUT: images})[0]
                worst = max(worst, float(np.max(np.abs(expected - actual))))
                scale = max(scale, float(np.max(np.abs(expected))))
    finally:
        model.train(was_training)
    return ParityReport(max_abs_diff=worst, tolerance=UINT8_TOLERANCE * scale)
