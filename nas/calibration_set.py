"""The networks that calibrate a device's predictor for a space, chosen by the server.

A remote device (a phone) cannot pick its own random networks: the server must know which ones were
timed, fit on some and score on the others. So each space scope has one fixed set, drawn from a
fixed seed: the same networks for every device, every kit and every agent run. The first part fits
the calibration, the held-out part scores it (never the networks it was fitted on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search_spaces.arch_spec import ArchSpec
from search_spaces.space import SearchSpace

# 24 networks fit three coefficients with room to spare; 16 held-out networks give the report's
# shares in steps of 1/16. A tiny network times in well under a second, a 224 px one in a few, so a
# phone measures the whole set in minutes.
CALIBRATION_NETWORKS = 24
HELD_OUT_NETWORKS = 16
CALIBRATION_SEED = 20_251_125
# How many draws to try per wanted network before accepting that a very small space has fewer.
_DRAWS_PER_NETWORK = 50


def sample_specs(space: SearchSpace, n: int, seed: int) -> list[ArchSpec]:
    """`n` distinct random architectures of the space (fewer if it has fewer), reproducible from the seed."""
    rng = np.random.default_rng(seed)
    specs: dict[str, ArchSpec] = {}
    for _ in range(n * _DRAWS_PER_NETWORK):
        if len(specs) >= n:
            break
        spec = space.decode(space.sample(rng))
        specs.setdefault(spec.content_hash(), spec)
    return list(specs.values())


@dataclass(frozen=True)
class CalibrationSet:
    """A scope's calibration networks: `calibration` fits, `held_out` scores."""

    calibration: tuple[ArchSpec, ...]
    held_out: tuple[ArchSpec, ...]

    @property
    def all(self) -> tuple[ArchSpec, ...]:
        return self.calibration + self.held_out

    @property
    def hashes(self) -> dict[str, ArchSpec]:
        """Every network by content hash."""
        return {spec.content_hash(): spec for spec in self.all}

    def is_held_out(self, arch_hash: str) -> bool:
        return any(spec.content_hash() == arch_hash for spec in self.held_out)


def calibration_networks(
    space: SearchSpace, n_calibration: int | None = None, n_held_out: int | None = None
) -> tuple[list[ArchSpec], list[ArchSpec]]:
    """(calibration, held_out) networks of the space: the same every time for the same space.

    The draw is random, so the last `n_held_out` networks span the same range of sizes as the
    first ones. A space too small for both parts still keeps at least one network held out.
    """
    # The module's constants are read at call time, so one setting holds for the whole server.
    n_calibration = CALIBRATION_NETWORKS if n_calibration is None else n_calibration
    n_held_out = HELD_OUT_NETWORKS if n_held_out is None else n_held_out
    specs = sample_specs(space, n_calibration + n_held_out, CALIBRATION_SEED)
    held_out_count = min(n_held_out, max(1, len(specs) - n_calibration)) if len(specs) > 1 else 0
    cut = len(specs) - held_out_count
    return specs[:cut], specs[cut:]


def calibration_set(space: SearchSpace) -> CalibrationSet:
    calibration, held_out = calibration_networks(space)
    return CalibrationSet(tuple(calibration), tuple(held_out))
