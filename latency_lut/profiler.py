"""Measuring latency on this machine with ONNX Runtime.

Every measurement (one lookup-table key or a whole network) follows the same protocol: export to
ONNX with latency-neutral weights, open a session with fixed threads, warm up, then time single runs
until the spread is small (IQR / median <= target) or a cap is hit, and report the median.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from latency_lut.kit_runner import QUICK_POLICY, Measurement, TimingPolicy, time_session, timing_session
from search_spaces.arch_spec import ArchSpec, LayerKey
from search_spaces.builder import build_layer, build_model
from search_spaces.onnx_export import export_module

__all__ = [
    "QUICK_POLICY",
    "Measurement",
    "TimingPolicy",
    "apply_latency_weights",
    "layer_onnx",
    "measure_key",
    "measure_network",
    "measure_onnx",
    "network_onnx",
    "profile_keys",
]

# A short period makes the weight tensors compress to almost nothing in a profiling kit; dense fp32
# kernels do not depend on the values, and no value is zero or subnormal.
_PATTERN = torch.tensor([0.9, -0.7, 0.5, -0.3, 0.8, -0.6, 0.4, -0.2, 1.0, -0.9, 0.6, -0.5, 0.3])


def apply_latency_weights(module: nn.Module) -> nn.Module:
    """Give every weight a deterministic periodic pattern (scaled by fan-in) and identity BatchNorm.

    The profiled ONNX files are then reproducible and tiny once zipped, and activations keep a sane
    magnitude through a whole network.
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.zero_()
                layer.running_var.fill_(1.0)
                layer.weight.fill_(1.0)
                layer.bias.fill_(0.01)
            elif isinstance(layer, nn.Conv2d | nn.Linear):
                weight = layer.weight
                fan_in = weight[0].numel()
                values = _PATTERN.repeat(weight.numel() // len(_PATTERN) + 1)[: weight.numel()]
                weight.copy_(values.view_as(weight) * math.sqrt(2.0 / fan_in))
                if layer.bias is not None:
                    layer.bias.fill_(0.01)
    return module.eval()


def layer_onnx(key: str | LayerKey) -> tuple[bytes, tuple[int, int, int, int]]:
    """ONNX bytes of one lookup-table key built alone, and its input shape."""
    parsed = LayerKey.parse(key) if isinstance(key, str) else key
    module = apply_latency_weights(build_layer(parsed))
    return export_module(module, parsed.input_shape), parsed.input_shape


def network_onnx(spec: ArchSpec) -> bytes:
    model = apply_latency_weights(build_model(spec))
    return export_module(model, (1, spec.in_channels, spec.resolution, spec.resolution))


def measure_onnx(
    onnx_bytes: bytes, input_shape: tuple[int, ...], threads: int, policy: TimingPolicy = TimingPolicy()
) -> Measurement:
    return time_session(timing_session(onnx_bytes, threads), input_shape, policy)


def measure_key(key: str, threads: int, policy: TimingPolicy = TimingPolicy()) -> Measurement:
    onnx_bytes, shape = layer_onnx(key)
    return measure_onnx(onnx_bytes, shape, threads, policy)


def measure_network(spec: ArchSpec, threads: int, policy: TimingPolicy = TimingPolicy()) -> Measurement:
    """End-to-end latency of a whole network, by the same protocol as the lookup-table keys."""
    shape = (1, spec.in_channels, spec.resolution, spec.resolution)
    return measure_onnx(network_onnx(spec), shape, threads, policy)


def profile_keys(
    keys: Iterable[str],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[str, Measurement], None] | None = None,
) -> dict[str, Measurement]:
    """Measure each key in turn; `on_measured` sees every result at once, so work survives an abort."""
    results: dict[str, Measurement] = {}
    torch.set_num_threads(1)
    for key in keys:
        measurement = measure_key(key, threads, policy)
        results[key] = measurement
        if on_measured is not None:
            on_measured(key, measurement)
    return results
