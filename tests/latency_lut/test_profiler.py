"""The timing protocol and the per-key / whole-network profilers, measured for real at tiny sizes."""

import hashlib
import math

import onnx
import pytest
import torch

from latency_lut.device import Device, this_machine
from latency_lut.kit_runner import TimingPolicy, time_session, timing_session
from latency_lut.profiler import apply_latency_weights, layer_onnx, measure_key, measure_network, profile_keys
from search_spaces import reference_spec
from search_spaces.arch_spec import LayerKey
from search_spaces.builder import build_layer

FAST = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)
KEYS = ["stem_k3_s2_c16_hs@32x32x3", "ir_k5_s2_e72_c40_se_hs@16x16x24", "head_c576_h1024_n10_hs@1x1x96"]


def test_layer_onnx_is_deterministic_and_valid() -> None:
    first, shape = layer_onnx(KEYS[1])
    second, _ = layer_onnx(KEYS[1])
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert shape == (1, 24, 16, 16)
    model = onnx.load_from_string(first)
    onnx.checker.check_model(model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17


def test_latency_weights_are_periodic_and_nonzero() -> None:
    module = apply_latency_weights(build_layer(LayerKey.parse(KEYS[1])))
    for name, parameter in module.named_parameters():
        assert torch.all(parameter != 0), name
    assert not module.training


def test_measure_key_respects_the_policy() -> None:
    measurement = measure_key(KEYS[1], threads=1, policy=FAST)
    assert math.isfinite(measurement.median_ms) and measurement.median_ms > 0
    assert 3 <= measurement.runs <= 8 + FAST.batch_runs
    assert measurement.iqr_ms >= 0 and measurement.runtime_version


def test_time_session_stops_at_the_run_cap() -> None:
    onnx_bytes, shape = layer_onnx(KEYS[0])
    strict = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=12, batch_runs=4, target_spread=0.0, max_seconds=10)
    measurement = time_session(timing_session(onnx_bytes, 1), shape, strict)
    assert measurement.runs == 12  # a spread of exactly zero never happens; the cap ends it


def test_profile_keys_reports_each_key_as_it_goes() -> None:
    seen = []
    results = profile_keys(KEYS, threads=1, policy=FAST, on_measured=lambda key, m: seen.append(key))
    assert seen == KEYS and set(results) == set(KEYS)


def test_measure_network_end_to_end() -> None:
    spec = reference_spec("mobilenet_v3_small", width=0.35, resolution=32, num_classes=10)
    measurement = measure_network(spec, threads=1, policy=FAST)
    assert measurement.median_ms > 0


def test_device_names_and_this_machine() -> None:
    device = this_machine("laptop-1t", threads=1)
    assert device.runtime == "onnxruntime" and device.threads == 1 and "machine" in device.facts
    assert this_machine("laptop-2t", threads=2) != device
    for bad in ["", "has space", "-leading", "x" * 101, "semi;colon"]:
        with pytest.raises(ValueError, match="device name"):
            Device(name=bad)
    with pytest.raises(ValueError):
        Device(name="ok", threads=0)


def test_time_in_rounds_takes_the_median_over_rounds_and_shares_the_caps() -> None:
    from latency_lut.kit_runner import time_in_rounds

    policy = TimingPolicy(warmup_runs=1, min_runs=6, max_runs=12, batch_runs=2, max_seconds=0.3, rounds=3)
    assert policy.per_round().max_runs == 4 and policy.per_round().max_seconds == pytest.approx(0.1)
    sessions = [timing_session(layer_onnx(key)[0], 1) for key in KEYS[:2]]
    measured = time_in_rounds([(s, layer_onnx(k)[1]) for s, k in zip(sessions, KEYS[:2], strict=True)], policy)
    assert len(measured) == 2
    for measurement in measured:
        assert measurement.median_ms > 0 and 3 <= measurement.runs <= policy.max_runs


def test_a_reference_clock_puts_groups_timed_at_different_speeds_on_one_scale(monkeypatch) -> None:
    """The second group is timed while the machine runs at half speed (every time doubles, the
    reference's too): normalised by the reference, its keys read as at the first group's speed."""
    from latency_lut import profiler
    from latency_lut.kit_runner import Measurement
    from latency_lut.profiler import ReferenceClock, measure_in_groups, reference_network

    slowdown = iter([1.0, 2.0])

    def fake_rounds(items, policy):  # every model "takes" 1 ms, the reference (3rd item) 5 ms, x slowdown
        factor = next(slowdown)
        times = [1.0 * factor] * 2 + [5.0 * factor] * (len(items) - 2)
        return [Measurement(t, 0.1 * t, 9, "test") for t in times]

    monkeypatch.setattr(profiler, "time_in_rounds", fake_rounds)
    clock = ReferenceClock(reference_network(32))
    keys = [f"k{i}" for i in range(4)]
    models = [(key, lambda key=key: layer_onnx(KEYS[0])) for key in keys]
    measured = measure_in_groups(models, 1, FAST, group_size=2, clock=clock)
    assert clock.anchor_ms == 5.0
    assert [measured[key].median_ms for key in keys] == [1.0, 1.0, 1.0, 1.0]
    # Without the clock the second group reads twice as slow.
    slowdown = iter([1.0, 2.0])
    raw = measure_in_groups(models, 1, FAST, group_size=2)
    assert [raw[key].median_ms for key in keys] == [1.0, 1.0, 2.0, 2.0]
