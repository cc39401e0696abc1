import numpy as np

from nas.strategies import Observation, pareto_front


def _obs(tag: int, accuracy: float | None, latency: float, status: str = "completed") -> Observation:
    return Observation(np.array([tag]), f"h{tag}", accuracy, latency, status)  # type: ignore[arg-type]


def test_pareto_front_on_a_hand_made_set() -> None:
    observations = [
        _obs(0, 0.70, 5.0),  # front
        _obs(1, 0.80, 8.0),  # front
        _obs(2, 0.75, 9.0),  # dominated by 1
        _obs(3, 0.60, 3.0),  # front
        _obs(4, 0.60, 4.0),  # dominated by 3 (same accuracy, slower)
        _obs(5, 0.90, 12.0),  # front
        _obs(6, 0.95, 2.0, "pruned"),  # not completed: ignored
        _obs(7, None, 1.0, "failed"),  # ignored
        _obs(8, 0.99, 1.5, "over_budget"),  # ignored
        _obs(9, 0.80, 8.0),  # equal to 1: neither dominates, both stay
        _obs(10, 0.79, 8.0),  # same latency as 1, less accurate: dominated
    ]
    front = pareto_front(observations)
    assert [o.arch_hash for o in front] == ["h3", "h0", "h1", "h9", "h5"]


def test_pareto_front_of_nothing_is_empty() -> None:
    assert pareto_front([]) == []
    assert pareto_front([_obs(0, None, 1.0, "failed")]) == []
