import math

import numpy as np
import pytest

from nas.strategies import mnas_reward, reward_exponents


@pytest.mark.parametrize(
    ("mode", "latency", "expected"),
    [
        ("soft", 10.0, 0.8),  # at the target: the accuracy itself
        ("soft", 5.0, 0.8 * 0.5**-0.07),  # twice as fast: about +5%
        ("soft", 20.0, 0.8 * 2.0**-0.07),  # twice as slow: about -5%
        ("hard", 10.0, 0.8),
        ("hard", 5.0, 0.8),  # no bonus under the target
        ("hard", 20.0, 0.4),  # accuracy divided by the overshoot
        ((-0.1, -0.5), 5.0, 0.8 * 0.5**-0.1),
        ((-0.1, -0.5), 40.0, 0.8 * 4.0**-0.5),
    ],
)
def test_reward_values(mode, latency: float, expected: float) -> None:
    assert mnas_reward(0.8, latency, 10.0, mode) == pytest.approx(expected, rel=1e-12)


def test_reward_soft_magnitudes() -> None:
    assert mnas_reward(1.0, 5.0, 10.0) == pytest.approx(1.0497, abs=1e-4)
    assert mnas_reward(1.0, 20.0, 10.0) == pytest.approx(0.9526, abs=1e-4)


def test_reward_is_vectorised_and_keeps_nan() -> None:
    accuracy = np.array([0.5, 0.6, np.nan])
    latency = np.array([4.0, 10.0, 16.0])
    rewards = mnas_reward(accuracy, latency, 8.0, "hard")
    assert isinstance(rewards, np.ndarray)
    np.testing.assert_allclose(rewards[:2], [0.5, 0.6 * 8.0 / 10.0])
    assert math.isnan(rewards[2])
    assert isinstance(mnas_reward(0.5, 4.0, 8.0), float)


def test_reward_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="reward mode"):
        reward_exponents("medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_ms must be positive"):
        mnas_reward(0.5, 0.0, 8.0)
    with pytest.raises(ValueError, match="budget_ms"):
        mnas_reward(0.5, 1.0, 0.0)
