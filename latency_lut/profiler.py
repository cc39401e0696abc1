"""Measuring latency on this machine with ONNX Runtime.

Every measurement (one lookup-table key or a whole network) follows the same protocol: export to
ONNX with latency-neutral weights, open a session with fixed threads, warm up, then time single runs
until the spread is small (IQR / median <= target) or a cap is hit, and report the median.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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


@dataclass
class ReferenceClock:
    """Puts timings taken minutes apart on one scale: a fixed reference network is timed in every
    group, in the same interleaved rounds as the group's models, and each model's latency is
    multiplied by `anchor_ms / reference now`. `anchor_ms` is the reference's latency when the
    device was first measured (the caller stores it): everything then reads as at that speed.

    Why: on this VM the same networks re-measured 3-5 minutes later were 6% slower on average (only
    37% within ±5% of their first measurement), although inside one group the rounds agree to 1-2%.
    Drift of that kind moves the reference with the models timed beside it.
    """

    reference: ArchSpec
    anchor_ms: float | None = None

    @property
    def digest(self) -> str:
        return self.reference.content_hash()

    def factor(self, reference_ms: float) -> float:
        if self.anchor_ms is None:
            self.anchor_ms = reference_ms
        return self.anchor_ms / reference_ms


def reference_network(resolution: int) -> ArchSpec:
    """The drift reference at `resolution`: MobileNetV3-Small 1.0, a mid-sized network of the same
    operators (depthwise and pointwise convolutions, SE, h-swish) as the networks it normalises."""
    from search_spaces.reference import reference_spec

    return reference_spec("mobilenet_v3_small", width=1.0, resolution=resolution, num_classes=1000)


def _scaled(measurement: Measurement, factor: float) -> Measurement:
    return Measurement(
        measurement.median_ms * factor, measurement.iqr_ms * factor, measurement.runs, measurement.runtime_version
    )


def measure_in_groups(
    models: Iterable[tuple[str, Callable[[], tuple[bytes, tuple[int, ...]]]]],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[str, Measurement], None] | None = None,
    group_size: int = GROUP_SIZE,
    clock: ReferenceClock | None = None,
) -> dict[str, Measurement]:
    """Measure (name, build) models in groups timed in interleaved rounds (the kit runner's protocol);
    `build()` gives the ONNX bytes and input shape. With a `clock`, its reference network is timed in
    every group too and the group's latencies are normalised by it. `on_measured` sees each group's
    results as soon as the group is timed, so an interrupted run keeps them."""
    results: dict[str, Measurement] = {}
    torch.set_num_threads(1)
    pending = list(models)
    reference_item = None
    if clock is not None:
        spec = clock.reference
        reference_item = (
            timing_session(network_onnx(spec), threads),
            (1, spec.in_channels, spec.resolution, spec.resolution),
        )
    for start in range(0, len(pending), group_size):
        group = pending[start : start + group_size]
        items = []
        for _, build in group:
            onnx_bytes, shape = build()
            items.append((timing_session(onnx_bytes, threads), tuple(shape)))
        if reference_item is not None:
            items.append(reference_item)
        measured = time_in_rounds(items, policy)
        factor = 1.0 if clock is None else clock.factor(measured[-1].median_ms)
        for (name, _), measurement in zip(group, measured, strict=False):
            results[name] = _scaled(measurement, factor)
            if on_measured is not None:
                on_measured(name, results[name])
    return results


def profile_keys(
    keys: Iterable[str],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[str, Measurement], None] | None = None,
    clock: ReferenceClock | None = None,
) -> dict[str, Measurement]:
    """Measure each key (in groups timed in interleaved rounds); `on_measured` sees every result."""
    models = ((key, lambda key=key: layer_onnx(key)) for key in keys)
    return measure_in_groups(models, threads, policy, on_measured, clock=clock)


def measure_networks(
    specs: Sequence[ArchSpec],
    threads: int,
    policy: TimingPolicy = TimingPolicy(),
    on_measured: Callable[[ArchSpec, Measurement], None] | None = None,
    clock: ReferenceClock | None = None,
) -> list[Measurement]:
    """End-to-end latency of several networks, timed together in interleaved rounds (so that every
    network's rounds fall in different minutes of a drifting machine); in the order given. With a
    `clock`, normalised by its reference network (see `ReferenceClock`)."""
    by_hash = {spec.content_hash(): spec for spec in specs}

    def build(spec: ArchSpec) -> tuple[bytes, tuple[int, ...]]:
        return network_onnx(spec), (1, spec.in_channels, spec.resolution, spec.resolution)

    report = None if on_measured is None else (lambda digest, m: on_measured(by_hash[digest], m))
    models = ((digest, lambda spec=spec: build(spec)) for digest, spec in by_hash.items())
    measured = measure_in_groups(models, threads, policy, report, clock=clock)
    return [measured[spec.content_hash()] for spec in specs]
