"""ONNX export of networks and single layers, and a parity check in ONNX Runtime."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import build_model

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_module(
    module: nn.Module, input_shape: tuple[int, ...], opset: int = OPSET, dynamic_batch: bool = False
) -> bytes:
    """Serialise a module (in eval mode) to ONNX bytes with a fixed input shape (the batch dimension
    left open with `dynamic_batch`).

    Uses the TorchScript-based exporter: it needs no extra packages and exports a small block in
    tens of milliseconds, which matters when profiling thousands of lookup-table keys.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    was_training = module.training
    module.eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.zeros(input_shape),),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                dynamo=False,
            )
    finally:
        module.train(was_training)
    return buffer.getvalue()


def export_spec(spec: ArchSpec, module: nn.Module | None = None, opset: int = OPSET) -> bytes:
    """ONNX bytes of a whole network (a freshly built one unless `module` is given)."""
    model = build_model(spec) if module is None else module
    return export_module(model, (1, spec.in_channels, spec.resolution, spec.resolution), opset)


def cpu_session(onnx_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def check_parity(
    module: nn.Module,
    onnx_bytes: bytes,
    input_shape: tuple[int, ...],
    tolerance: float = 1e-4,
    seed: int = 0,
    batches: int = 2,
) -> ParityReport:
    """Run the same random inputs through PyTorch and ONNX Runtime; report the largest difference.

    `tolerance` holds for outputs of magnitude up to 1 and grows with the largest output: float32
    sums over thousands of terms, added in another order, differ in their last bits (trained
    networks at 128-224 px have logits of 10-30, where 1e-4 absolute is below float32's resolution
    of the accumulated sums)."""
    generator = torch.Generator().manual_seed(seed)
    session = cpu_session(onnx_bytes)
    was_training = module.training
    module.eval()
    worst = 0.0
    scale = 1.0
    try:
        with torch.no_grad():
            for _ in range(batches):
                x = torch.randn(input_shape, generator=generator)
                expected = module(x).numpy()
                actual = session.run(None, {INPUT_NAME: x.numpy()})[0]
                worst = max(worst, float(np.max(np.abs(expected - actual))))
                scale = max(scale, float(np.max(np.abs(expected))))
    finally:
        module.train(was_training)
    return ParityReport(max_abs_diff=worst, tolerance=tolerance * scale)


def check_spec_parity(spec: ArchSpec, module: nn.Module | None = None, tolerance: float = 1e-4) -> ParityReport:
    model = build_model(spec) if module is None else module
    onnx_bytes = export_spec(spec, model)
    return check_parity(model, onnx_bytes, (1, spec.in_channels, spec.resolution, spec.resolution), tolerance)
