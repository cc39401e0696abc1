"""MnasNet's latency-aware reward: one scalar that trades accuracy against a latency target.

Tan et al. 2019 (MnasNet, eq. 2) score a network `m` as ``ACC(m) * (LAT(m) / T) ** w`` with
``w = alpha`` when ``LAT(m) <= T`` and ``w = beta`` otherwise. The *soft* constraint
(alpha = beta = -0.07) rewards a network twice as fast by about 5% accuracy, on both sides of the
target; the *hard* constraint (alpha = 0, beta = -1) gives nothing for being faster than the target
and divides accuracy by how far a network overshoots it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

RewardMode = Literal["soft", "hard"] | tuple[float, float]

SOFT_EXPONENTS: tuple[float, float] = (-0.07, -0.07)
HARD_EXPONENTS: tuple[float, float] = (0.0, -1.0)


def reward_exponents(mode: RewardMode) -> tuple[float, float]:
    """(alpha, beta) of a reward mode: the exponent at or under the target, and above it."""
    if mode == "soft":
        return SOFT_EXPONENTS
    if mode == "hard":
        return HARD_EXPONENTS
    if isinstance(mode, tuple) and len(mode) == 2:
        alpha, beta = (float(value) for value in mode)
        if not (np.isfinite(alpha) and np.isfinite(beta)):
            raise ValueError(f"reward exponents must be finite, got {mode}")
        return alpha, beta
    raise ValueError(f"reward mode must be 'soft', 'hard' or an (alpha, beta) pair, got {mode!r}")


def mnas_reward(
    accuracy: float | np.ndarray,
    latency_ms: float | np.ndarray,
    budget_ms: float,
    mode: RewardMode = "soft",
) -> float | np.ndarray:
    """``accuracy * (latency_ms / budget_ms) ** w``, elementwise over numpy arrays (broadcasting).

    A NaN accuracy (nothing measured) gives a NaN reward; callers decide where those rank.
    Returns a float when both inputs are scalars.
    """
    if not budget_ms > 0:
        raise ValueError(f"budget_ms must be positive, got {budget_ms}")
    alpha, beta = reward_exponents(mode)
    accuracy_arr = np.asarray(accuracy, dtype=np.float64)
    latency_arr = np.asarray(latency_ms, dtype=np.float64)
    if np.any(latency_arr <= 0):
        raise ValueError("latency_ms must be positive (a zero latency would make the reward infinite)")
    ratio = latency_arr / budget_ms
    exponent = np.where(ratio <= 1.0, alpha, beta)
    reward = accuracy_arr * np.power(ratio, exponent)
    if reward.ndim == 0:
        return float(reward)
    return reward
