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
    """`n` distinct architectures spanning the space's sizes (fewer if it has fewer), reproducible.

    A uniform draw sums many independent choices, so nearly every network lands mid-size, and a
    calibration fitted on such networks extrapolates badly to the small ones that low budgets and
    NetAdapt reach (session 8, photos at 32 px: 24 uniform networks measured 0.25-0.45 ms; the fitted
    offset predicted the space's fastest network at 0.187 ms, measured 0.133 ms, and a search at a
    budget of 0.186 ms was refused as unreachable). So network i leans toward the cheap or the dear
    end of every choice by a share spread evenly over [0, 1] (in random order, so any part of the list
    spans the sizes): the list holds the space's smallest and largest networks and everything between.
    """
    rng = np.random.default_rng(seed)
    specs: dict[str, ArchSpec] = {}
    for _ in range(_DRAWS_PER_NETWORK):
        if len(specs) >= n:
            break
        lean = rng.permutation(np.linspace(0.0, 1.0, n)) if n > 1 else rng.uniform(0.0, 1.0, n)
        for genome in space.sample_population(n, rng, lean=lean):
            spec = space.decode(genome)
            specs.setdefault(spec.content_hash(), spec)
            if len(specs) >= n:
                break
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
