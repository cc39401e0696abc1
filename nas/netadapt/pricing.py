"""Pricing NetAdapt's proposals with a lookup table that lacks their narrower keys.

NetAdapt asks for widths the search space never had, so its keys are missing from the table. On this
machine the worker measures them on demand; for a remote device they are interpolated between
measured channel counts (`interpolate_from`), and the worker reports the interpolation's
leave-one-out error on that device's own table (`latency_lut.interpolation.interpolation_error_report`)
as a search event. The runner caches each filled key into the table, marked by its `source`.
"""

from __future__ import annotations

from collections.abc import Callable

from latency_lut.interpolation import INTERPOLATED_SOURCE, LatencyInterpolator
from latency_lut.table import LatencyTable, LutEntry


class InterpolationError(LookupError):
    """A key's latency can be neither found in the table nor interpolated from it."""


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
