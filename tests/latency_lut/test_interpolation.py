"""Interpolating latencies of unmeasured channel counts: exact arithmetic on synthetic tables that are
linear in each channel count, and the error report on a small table measured here for real."""

from __future__ import annotations

import math

import pytest

from latency_lut.device import Device
from latency_lut.interpolation import (
    INTERPOLATED_SOURCE,
    LatencyInterpolator,
    channel_point,
    interpolation_error_report,
)
from latency_lut.profiler import measure_key
from latency_lut.table import LatencyTable, LutEntry


def interpolate_latency_ms(table: LatencyTable, key: str) -> float | None:
    """A measured key's own latency, else the interpolation (as the runner fills a missing key)."""
    measured = table.entries.get(key)
    if measured is not None and measured.source != INTERPOLATED_SOURCE:
        return measured.median_ms
    return LatencyInterpolator(table).interpolate_ms(key)


def _table(values: dict[str, float], source: str = "profiler") -> LatencyTable:
    entries = {key: LutEntry(ms, 0.0, 5, "test", source) for key, ms in values.items()}
    return LatencyTable(Device(name="synthetic"), entries)


def test_channel_points_tie_the_widths_the_layers_tie() -> None:
    residual = channel_point("ir_k3_s1_e96_c24_hs@16x16x24")
    assert residual.axes == ("in=c", "e") and residual.coordinates == (24, 96)
    plain = channel_point("ir_k3_s2_e96_c24_hs@16x16x16")
    assert plain.axes == ("in", "e", "c") and plain.coordinates == (16, 96, 24)
    no_expansion = channel_point("ir_k3_s2_e16_c24_se_re@16x16x16")
    assert no_expansion.axes == ("in=e", "c")
    assert channel_point("ds_k3_s1_e32_c64_r6@8x8x32").axes == ("in=e", "c")
    assert channel_point("head_c96_h0_n10_hs@4x4x32").axes == ("in", "conv")
    assert channel_point("stem_k3_s2_c16_hs@32x32x3").axes == ("in", "c")
    # An expansion conv, a residual add or another input size make another family.
    assert residual.family != channel_point("ir_k3_s1_e24_c24_hs@16x16x24").family
    assert plain.family != channel_point("ir_k3_s2_e96_c24_hs@8x8x16").family


def test_linear_between_neighbours_along_one_channel_field() -> None:
    def latency(e: int) -> float:
        return 0.02 + 0.001 * e

    table = _table({f"ir_k3_s1_e{e}_c16_hs@16x16x16": latency(e) for e in (48, 96, 128)})
    assert interpolate_latency_ms(table, "ir_k3_s1_e64_c16_hs@16x16x16") == pytest.approx(latency(64))
    assert interpolate_latency_ms(table, "ir_k3_s1_e112_c16_hs@16x16x16") == pytest.approx(latency(112))
    # A measured key is returned as measured.
    assert interpolate_latency_ms(table, "ir_k3_s1_e96_c16_hs@16x16x16") == latency(96)
    # Output width (the stem's, the head's widths) and the residual chain's in = c move the same way.
    stem = _table({"stem_k3_s2_c16_hs@32x32x3": 0.1, "stem_k3_s2_c32_hs@32x32x3": 0.3})
    assert interpolate_latency_ms(stem, "stem_k3_s2_c24_hs@32x32x3") == pytest.approx(0.2)
    head = _table({"head_c64_h32_n10_hs@4x4x16": 0.1, "head_c128_h32_n10_hs@4x4x16": 0.2})
    assert interpolate_latency_ms(head, "head_c96_h32_n10_hs@4x4x16") == pytest.approx(0.15)
    chain = _table({"ir_k3_s1_e96_c16_hs@8x8x16": 0.1, "ir_k3_s1_e96_c32_hs@8x8x32": 0.2})
    assert interpolate_latency_ms(chain, "ir_k3_s1_e96_c24_hs@8x8x24") == pytest.approx(0.15)


def test_extrapolation_is_proportional_from_one_and_bounded_from_two() -> None:
    one = _table({"ir_k3_s1_e96_c16_hs@16x16x16": 0.12})
    assert interpolate_latency_ms(one, "ir_k3_s1_e48_c16_hs@16x16x16") == pytest.approx(0.06)
    # Two on one side: along their line (overhead 0.02 + 0.001 per channel) ...
    two = _table({f"ir_k3_s1_e{e}_c16_hs@16x16x16": 0.02 + 0.001 * e for e in (64, 96)})
    assert interpolate_latency_ms(two, "ir_k3_s1_e32_c16_hs@16x16x16") == pytest.approx(0.052)
    # ... but never beyond the nearest value or the proportional estimate, whatever noise says.
    tilted = _table({"ir_k3_s1_e64_c16_hs@16x16x16": 0.08, "ir_k3_s1_e96_c16_hs@16x16x16": 0.05})
    assert interpolate_latency_ms(tilted, "ir_k3_s1_e32_c16_hs@16x16x16") == pytest.approx(0.08)
    steep = _table({"ir_k3_s1_e64_c16_hs@16x16x16": 0.08, "ir_k3_s1_e96_c16_hs@16x16x16": 1.0})
    assert interpolate_latency_ms(steep, "ir_k3_s1_e32_c16_hs@16x16x16") == pytest.approx(0.04)


def test_several_fields_are_interpolated_on_the_grid_exactly_for_multilinear_latency() -> None:
    def latency(c_in: int, e: int, c: int) -> float:
        return 0.05 + 0.001 * e + 2e-5 * c_in * e + 3e-5 * e * c

    grid = {
        f"ir_k3_s2_e{e}_c{c}_hs@16x16x{c_in}": latency(c_in, e, c)
        for c_in in (16, 32)
        for e in (48, 96)
        for c in (16, 40)
    }
    table = _table(grid)
    assert interpolate_latency_ms(table, "ir_k3_s2_e64_c24_hs@16x16x24") == pytest.approx(latency(24, 64, 24))
    # Scattered: a corner missing still gives an estimate from what remains (mean over nesting orders).
    del table.entries["ir_k3_s2_e96_c40_hs@16x16x32"]
    estimate = interpolate_latency_ms(table, "ir_k3_s2_e64_c24_hs@16x16x24")
    assert estimate is not None and estimate == pytest.approx(latency(24, 64, 24), rel=0.2)


def test_no_estimate_without_a_family_member_and_interpolated_entries_never_feed_others() -> None:
    table = _table({"ir_k3_s1_e96_c16_hs@16x16x16": 0.1})
    assert interpolate_latency_ms(table, "ir_k5_s1_e96_c16_hs@16x16x16") is None  # another kernel
    assert interpolate_latency_ms(table, "ir_k3_s1_e16_c16_hs@16x16x16") is None  # no expansion conv
    cached = _table({"ir_k3_s1_e64_c16_hs@16x16x16": 0.5}, source=INTERPOLATED_SOURCE)
    assert interpolate_latency_ms(cached, "ir_k3_s1_e48_c16_hs@16x16x16") is None
    interpolator = LatencyInterpolator(table)
    assert interpolator.interpolate_ms("ir_k3_s1_e48_c16_hs@16x16x16") == pytest.approx(0.05)
    table.add("ir_k3_s1_e32_c16_hs@16x16x16", LutEntry(0.04, 0.0, 5, "test"))  # the index follows the table
    assert interpolator.interpolate_ms("ir_k3_s1_e48_c16_hs@16x16x16") == pytest.approx(0.055)


def test_error_report_is_zero_on_linear_latencies_and_names_what_it_cannot_do() -> None:
    keys = {f"ir_k3_s1_e{e}_c16_hs@16x16x16": 0.02 + 0.001 * e for e in (32, 48, 64, 80, 96)}
    keys["ir_k7_s1_e96_c16_hs@16x16x16"] = 0.3  # alone in its family
    table = _table(keys)
    report = interpolation_error_report(
        table, ["ir_k3_s1_e48_c16_hs@16x16x16", "ir_k3_s1_e80_c16_hs@16x16x16", "ir_k7_s1_e96_c16_hs@16x16x16"]
    )
    assert report["n_held_out"] == 3 and report["n_interpolated"] == 2
    assert report["not_interpolable"] == ["ir_k7_s1_e96_c16_hs@16x16x16"]
    assert report["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-9)
    assert report["max_abs_pct_error"] == pytest.approx(0.0, abs=1e-9)
    everything = interpolation_error_report(table)
    assert everything["hold_out"] == "leave-one-out" and everything["n_interpolated"] == 5
    with pytest.raises(KeyError, match="not measured"):
        interpolation_error_report(table, ["ir_k3_s1_e40_c16_hs@16x16x16"])


@pytest.fixture(scope="module")
def measured_table(fast_policy) -> LatencyTable:
    """Real ONNX Runtime timings at 16 px: expansion widths, residual-chain widths, output widths."""
    keys = [f"ir_k3_s1_e{e}_c16_hs@16x16x16" for e in (48, 64, 80, 96)]
    keys += [f"ir_k3_s1_e96_c{c}_hs@16x16x{c}" for c in (16, 24, 32, 40)]
    keys += [f"ir_k3_s2_e64_c{c}_hs@16x16x16" for c in (16, 24, 32, 40)]
    entries = {}
    for key in dict.fromkeys(keys):
        measured = measure_key(key, 1, fast_policy)
        entries[key] = LutEntry(measured.median_ms, measured.iqr_ms, measured.runs, measured.runtime_version)
    return LatencyTable(Device(name="this-machine-1t"), entries)


def test_error_report_against_real_measurements(measured_table: LatencyTable) -> None:
    interior = [
        "ir_k3_s1_e64_c16_hs@16x16x16",
        "ir_k3_s1_e80_c16_hs@16x16x16",
        "ir_k3_s1_e96_c24_hs@16x16x24",
        "ir_k3_s1_e96_c32_hs@16x16x32",
        "ir_k3_s2_e64_c24_hs@16x16x16",
        "ir_k3_s2_e64_c32_hs@16x16x16",
    ]
    report = interpolation_error_report(measured_table, interior)
    assert report["n_interpolated"] == len(interior) and report["not_interpolable"] == []
    for row in report["per_key"]:
        # Linear between two measured neighbours: within the range of the family's remaining keys.
        family = channel_point(row["key"]).family
        remaining = [
            entry.median_ms
            for key, entry in measured_table.entries.items()
            if key not in interior and channel_point(key).family == family
        ]
        assert min(remaining) <= row["interpolated_ms"] <= max(remaining)
        assert math.isfinite(row["abs_pct_error"])
    # Interior points lie between two measured neighbours; timings this small are noisy on a shared
    # machine, so only a gross failure (wrong neighbours, wrong arithmetic) trips this bound.
    assert report["mean_abs_pct_error"] < 60.0
    loo = interpolation_error_report(measured_table)
    assert loo["n_interpolated"] == len(measured_table) and loo["mean_abs_pct_error"] < 60.0
