"""Measuring latency on this machine with ONNX Runtime.

Every measurement (one lookup-table key or a whole network) follows the same protocol: export to
ONNX with latency-neutral weights, open a session with fixed threads, warm up, then time single runs
until the spread is small (IQR / median <= target) or a cap is hit, and report the median.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from latency_lut.kit_runner import (
    GROUP_SIZE,
    QUICK_POLICY,
    Measurement,
    TimingPolicy,
    time_in_rounds,
    time_session,
    timing_session,
)
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
    "measure_networks",
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


def measure_in_groups(
    models: Iterable[tuple[str, Callable[[], tuple[bytes, tuple[int, ...]]]]],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[str, Measurement], None] | None = None,
    group_size: int = GROUP_SIZE,
) -> dict[str, Measurement]:
    """Measure (name, build) models in groups timed in interleaved rounds (the kit runner's protocol);
    `build()` gives the ONNX bytes and input shape. `on_measured` sees each group's results as soon as
    the group is timed, so an interrupted run keeps them."""
    results: dict[str, Measurement] = {}
    torch.set_num_threads(1)
    pending = list(models)
    for start in range(0, len(pending), group_size):
        group = pending[start : start + group_size]
        items = []
        for _, build in group:
            onnx_bytes, shape = build()
            items.append((timing_session(onnx_bytes, threads), tuple(shape)))
        for (name, _), measurement in zip(group, time_in_rounds(items, policy), strict=True):
            results[name] = measurement
            if on_measured is not None:
                on_measured(name, measurement)
    return results


def profile_keys(
    keys: Iterable[str],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[str, Measurement], None] | None = None,
) -> dict[str, Measurement]:
    """Measure each key (in groups timed in interleaved rounds); `on_measured` sees every result."""
    return measure_in_groups(((key, lambda key=key: layer_onnx(key)) for key in keys), threads, policy, on_measured)


def measure_networks(
    specs: Sequence[ArchSpec],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[ArchSpec, Measurement], None] | None = None,
) -> list[Measurement]:
    """End-to-end latency of several networks, timed together in interleaved rounds (so that every
    network's rounds fall in different minutes of a drifting machine); in the order given."""
    by_hash = {spec.content_hash(): spec for spec in specs}

    def build(spec: ArchSpec) -> tuple[bytes, tuple[int, ...]]:
        return network_onnx(spec), (1, spec.in_channels, spec.resolution, spec.resolution)

    report = None if on_measured is None else (lambda digest, m: on_measured(by_hash[digest], m))
    measured = measure_in_groups(
        ((digest, lambda spec=spec: build(spec)) for digest, spec in by_hash.items()), threads, policy, report
    )
    return [measured[spec.content_hash()] for spec in specs]
