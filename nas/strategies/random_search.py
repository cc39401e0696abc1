"""Uniform random search: the baseline every other strategy has to beat."""

from __future__ import annotations

import numpy as np

from nas.strategies.base import Strategy


class RandomStrategy(Strategy):
    """Uniform samples of the space, kept only when predicted within the latency limit.

    The filter makes the accepted samples uniform over the *feasible* part of the space.
    """

    name = "random"
    proposal_batch = 64

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self.space.sample_population(count, rng)
