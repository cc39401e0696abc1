"""Latencies of unmeasured channel counts, interpolated from measured neighbours.

A device that cannot be profiled here (a phone running a kit) has only the keys its kit measured.
NetAdapt asks for narrower versions of those keys; rather than shipping a kit per iteration, their
latency is interpolated between measured keys that differ from them only in channel counts, and the
error of doing so is reported against real measurements (`interpolation_error_report`).

Keys as points. A key splits into a *family* (everything that is not a channel count: kind, kernel,
stride, SE, activation, input height and width, classes, and which optional layers exist) and a
point of free channel *coordinates*. Channel counts that the architecture ties together form one
coordinate, because moving one without the other would change the layers, not just their widths:

    ir with expansion, residual      (in = c, e)      ir with expansion, no residual   (in, e, c)
    ir without expansion, residual   (in = e = c)     ir without expansion, no residual (in = e, c)
    ds                               (in = e, c)      stem (in, c);  head (in, conv?, hidden?)

So the family also records whether an ``ir`` block has its expansion conv (e != in) and its residual
add, and whether the head has its conv and hidden layers: a neighbour without the expansion conv
says little about a key with one. A residual chain pruned by NetAdapt moves one coordinate per key
(in = c), exactly like the expansion width of a single block.

Interpolation. Along one coordinate: linear between the nearest measured lower and upper
neighbours. Outside the measured range, from the nearest neighbour: with only that one, proportional
to the channel count (latency roughly scales with the width of the layers it drives); with a second
one on the same side, along the line through both, but kept between the nearest value (as if all
of it were fixed overhead) and the proportional estimate (as if none were), because at small sizes
a fixed per-layer overhead makes pure proportion overshoot and noise can tilt a two-point line
anywhere. No neighbour: no estimate. When the
missing key differs from every measured key in several coordinates, the estimate is the
tensor-product (nested) one: interpolate along the first coordinate between slices of the table
that are themselves estimated along the remaining coordinates. On a complete grid this is
multilinear interpolation, exact for anything linear in each channel count separately (a 1x1
convolution's cost is in x out). On scattered tables the nesting order matters, so the estimate is
the mean over every order that succeeds. Only measured entries are used: entries whose source is
``"interpolated"`` (as cached by NetAdapt) never feed further interpolations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import permutations

from latency_lut.table import LatencyTable
from search_spaces.arch_spec import BlockSpec, HeadSpec, LayerKey, StemSpec

INTERPOLATED_SOURCE = "interpolated"

Family = tuple[object, ...]
Coordinates = tuple[int, ...]


@dataclass(frozen=True)
class ChannelPoint:
    """A key as a family and its free channel coordinates (named, for reports and errors)."""

    family: Family
    axes: tuple[str, ...]
    coordinates: Coordinates


def channel_point(key: str) -> ChannelPoint:
    """Split a layer key into its family and channel coordinates (see the module docstring)."""
    parsed = LayerKey.parse(key)
    layer, size, c_in = parsed.layer, (parsed.height, parsed.width), parsed.in_channels
    if isinstance(layer, StemSpec):
        family = ("stem", layer.kernel, layer.stride, layer.activation, *size)
        return ChannelPoint(family, ("in", "c"), (c_in, layer.out_channels))
    if isinstance(layer, HeadSpec):
        family = (
            "head",
            layer.num_classes,
            layer.activation,
            *size,
            layer.conv_channels > 0,
            layer.hidden_channels > 0,
        )
        axes, coords = ["in"], [c_in]
        if layer.conv_channels:
            axes.append("conv")
            coords.append(layer.conv_channels)
        if layer.hidden_channels:
            axes.append("hidden")
            coords.append(layer.hidden_channels)
        return ChannelPoint(family, tuple(axes), tuple(coords))
    return _block_point(layer, size, c_in)


def _block_point(block: BlockSpec, size: tuple[int, int], c_in: int) -> ChannelPoint:
    expansion = block.kind == "ir" and block.mid_channels != c_in
    residual = block.has_residual(c_in)
    family = (block.kind, block.kernel, block.stride, block.se, block.activation, *size, expansion, residual)
    mid, out = block.mid_channels, block.out_channels
    if block.kind == "ds":
        return ChannelPoint(family, ("in=e", "c"), (c_in, out))
    if expansion and residual:
        return ChannelPoint(family, ("in=c", "e"), (c_in, mid))
    if expansion:
        return ChannelPoint(family, ("in", "e", "c"), (c_in, mid, out))
    if residual:
        return ChannelPoint(family, ("in=e=c",), (c_in,))
    return ChannelPoint(family, ("in=e", "c"), (c_in, out))


def _along_axis(target: int, lower: list[tuple[int, float]], upper: list[tuple[int, float]]) -> float | None:
    """Estimate at `target` from the nearest anchors below and above it (nearest first)."""
    if lower and upper:
        (x0, y0), (x1, y1) = lower[0], upper[0]
        return y0 + (y1 - y0) * (target - x0) / (x1 - x0)
    side = lower or upper
    if not side:
        return None
    x, y = side[0]
    proportional = y * target / x
    if len(side) == 1:
        return proportional
    # Latency ~ overhead + slope * channels with both terms >= 0 lies between the nearest value
    # (all overhead) and the proportional estimate (no overhead); the line through the two nearest
    # anchors finds where, and noise in them cannot throw it outside that interval.
    (x2, y2) = side[1]
    linear = y + (y - y2) * (target - x) / (x - x2)
    low, high = sorted((y, proportional))
    return min(max(linear, low), high)


def _nested_estimate(
    target: Coordinates, points: list[tuple[Coordinates, float]], order: tuple[int, ...]
) -> float | None:
    """Interpolate along `order[0]` between slices estimated along the remaining axes."""
    if not order:
        return points[0][1] if points else None
    axis, rest = order[0], order[1:]
    slices: dict[int, list[tuple[Coordinates, float]]] = {}
    for coords, value in points:
        slices.setdefault(coords[axis], []).append((coords, value))
    wanted = target[axis]
    if wanted in slices:
        exact = _nested_estimate(target, slices[wanted], rest)
        if exact is not None:
            return exact

    def nearest_two(values: Iterable[int]) -> list[tuple[int, float]]:
        anchors = []
        for value in values:
            estimate = _nested_estimate(target, slices[value], rest)
            if estimate is not None:
                anchors.append((value, estimate))
                if len(anchors) == 2:
                    break
        return anchors

    lower = nearest_two(sorted((v for v in slices if v < wanted), reverse=True))
    upper = nearest_two(sorted(v for v in slices if v > wanted))
    return _along_axis(wanted, lower, upper)


class LatencyInterpolator:
    """A table's measured keys indexed by family, for many interpolations in a row.

    The index follows the table as keys are added to it (NetAdapt caches what it prices); values are
    read from the table at each call, so a re-measured key is used at its new value.
    """

    def __init__(self, table: LatencyTable) -> None:
        self.table = table
        self._families: dict[Family, dict[str, Coordinates]] = {}
        self._seen: set[str] = set()

    def _refresh(self) -> None:
        for key in [k for k in self.table.entries if k not in self._seen]:
            self._seen.add(key)
            try:
                point = channel_point(key)
            except ValueError:
                continue  # a key this version cannot parse has no neighbours
            self._families.setdefault(point.family, {})[key] = point.coordinates

    def _measured(self, key: str) -> float | None:
        entry = self.table.entries.get(key)
        if entry is None or entry.source == INTERPOLATED_SOURCE:
            return None
        return entry.median_ms

    def neighbours(self, key: str, exclude: Iterable[str] = ()) -> list[str]:
        """Measured keys of the same family (the only ones an estimate of `key` can use)."""
        self._refresh()
        excluded = set(exclude) | {key}
        family = self._families.get(channel_point(key).family, {})
        return [k for k in family if k not in excluded and self._measured(k) is not None]

    def interpolate_ms(self, key: str, exclude: Iterable[str] = ()) -> float | None:
        """The latency of `key` estimated from measured keys of its family, `exclude`d keys and
        `key` itself left out; None when its family has no measured key."""
        self._refresh()
        point = channel_point(key)
        excluded = set(exclude) | {key}
        points = []
        for other, coords in self._families.get(point.family, {}).items():
            value = None if other in excluded else self._measured(other)
            if value is not None:
                points.append((coords, value))
        if not points:
            return None
        estimates = [
            estimate
            for order in permutations(range(len(point.coordinates)))
            if (estimate := _nested_estimate(point.coordinates, points, order)) is not None
        ]
        if not estimates:
            return None
        return float(sum(estimates) / len(estimates))


def interpolation_error_report(
    table: LatencyTable, keys_to_hold_out: Iterable[str] | None = None, *, leave_one_out: bool = False
) -> dict:
    """How far interpolation lands from real measurements of the same table.

    Each held-out key (measured in `table`) is interpolated from the table's other measured keys:
    with all held-out keys removed together (default: the situation of widths a kit never measured),
    or one at a time (`leave_one_out`). Without `keys_to_hold_out`, every measured key is held out
    one at a time. Percentages are absolute errors relative to the measurement; keys that cannot be
    interpolated (no family member left) are listed, not counted.
    """
    measured = [k for k, e in table.entries.items() if e.source != INTERPOLATED_SOURCE]
    if keys_to_hold_out is None:
        held_out, leave_one_out = measured, True
    else:
        held_out = list(dict.fromkeys(keys_to_hold_out))
    unknown = [k for k in held_out if k not in measured]
    if unknown:
        raise KeyError(f"cannot hold out keys the table has not measured: {', '.join(unknown[:5])}")
    interpolator = LatencyInterpolator(table)
    rows, not_interpolable = [], []
    for key in held_out:
        estimate = interpolator.interpolate_ms(key, exclude=() if leave_one_out else held_out)
        if estimate is None:
            not_interpolable.append(key)
            continue
        actual = table.latency_ms(key)
        rows.append(
            {
                "key": key,
                "measured_ms": actual,
                "interpolated_ms": estimate,
                "abs_pct_error": 100.0 * abs(estimate - actual) / actual,
            }
        )
    errors = [row["abs_pct_error"] for row in rows]
    worst = max(rows, key=lambda row: row["abs_pct_error"]) if rows else None
    return {
        "device": table.device.name,
        "method": "nested linear in channel counts; bounded extrapolation outside the measured range",
        "hold_out": "leave-one-out" if leave_one_out else "together",
        "n_held_out": len(held_out),
        "n_interpolated": len(rows),
        "not_interpolable": not_interpolable,
        "mean_abs_pct_error": (sum(errors) / len(errors)) if errors else math.nan,
        "median_abs_pct_error": _median(errors),
        "max_abs_pct_error": max(errors) if errors else math.nan,
        "worst_key": worst["key"] if worst else None,
        "per_key": rows,
    }


def _median(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
