"""Pricing NetAdapt's proposals with a lookup table that lacks their narrower keys.

NetAdapt asks for widths the search space never had, so its keys are missing from the table. On
this machine they are measured on demand (`profile_on_demand`); for a remote device they are
interpolated between measured channel counts (`interpolate_from`), and the interpolation's error
against real measurements comes from `latency_lut.interpolation.interpolation_error_report`. Either
way each filled key is cached into the table (marked by its `source`) and kept in `LutLatency.filled`
so the caller can store what was measured.
"""

from __future__ import annotations

from collections.abc import Callable

from latency_lut.device import Device
from latency_lut.interpolation import INTERPOLATED_SOURCE, LatencyInterpolator
from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
from latency_lut.predictor import LatencyPredictor
from latency_lut.profiler import measure_key
from latency_lut.table import LatencyTable, LutEntry
from search_spaces.arch_spec import ArchSpec

OnMissing = Callable[[str], float | LutEntry]
ON_DEMAND_SOURCE = "on_demand"


class InterpolationError(LookupError):
    """A key's latency can be neither found in the table nor interpolated from it."""


class LutLatency:
    """`spec -> predicted ms` through `predictor`, filling missing keys with `on_missing` first."""

    def __init__(self, predictor: LatencyPredictor, on_missing: OnMissing) -> None:
        self.predictor = predictor
        self.on_missing = on_missing
        self.filled: dict[str, LutEntry] = {}

    def __call__(self, spec: ArchSpec) -> float:
        table = self.predictor.table
        for key in table.missing_keys(spec.block_keys()):
            found = self.on_missing(key)
            if not isinstance(found, LutEntry):
                found = LutEntry(float(found), 0.0, 1, table.device.runtime_version, ON_DEMAND_SOURCE)
            problems = found.problems()
            if problems:
                raise ValueError(f"on_missing gave an unusable latency for {key}: {'; '.join(problems)}")
            table.add(key, found)
            self.filled[key] = found
        return self.predictor.predict_ms(spec)


def lut_latency_fn(predictor: LatencyPredictor, on_missing: OnMissing) -> LutLatency:
    """A latency function for `netadapt`: the table's prediction, missing keys filled (and cached)
    through `on_missing` (a key -> milliseconds or a `LutEntry`)."""
    return LutLatency(predictor, on_missing)


def profile_on_demand(threads: int, policy: TimingPolicy = QUICK_POLICY) -> Callable[[str], LutEntry]:
    """Measure each missing key on this machine, by the profiler's own protocol."""

    def measure(key: str) -> LutEntry:
        measured = measure_key(key, threads, policy)
        return LutEntry(measured.median_ms, measured.iqr_ms, measured.runs, measured.runtime_version, "profiler")

    return measure


def interpolate_from(table: LatencyTable) -> Callable[[str], LutEntry]:
    """Interpolate each missing key from `table`'s measured keys (never from interpolated ones)."""
    interpolator = LatencyInterpolator(table)

    def interpolate(key: str) -> LutEntry:
        estimate = interpolator.interpolate_ms(key)
        if estimate is None:
            raise InterpolationError(
                f"cannot interpolate {key} for device {table.device.name!r}: the table has no measured key "
                "that differs from it only in channel counts (same kind, kernel, stride, SE, activation, input "
                "size and layers); measure it with a profiling kit"
            )
        return LutEntry(estimate, 0.0, 1, table.device.runtime_version, INTERPOLATED_SOURCE)

    return interpolate


def on_missing_for(
    device: Device, table: LatencyTable, policy: TimingPolicy = QUICK_POLICY
) -> Callable[[str], LutEntry]:
    """Profile on demand when `device` is this machine, interpolate from `table` otherwise."""
    from nas.latency import is_this_machine  # the store-backed layer; imported only when asked

    if is_this_machine(device):
        return profile_on_demand(device.threads, policy)
    return interpolate_from(table)
