"""Ask / tell search strategies over genomes of a `SearchSpace` (random, regularized evolution, NSGA-II).

`ParetoSearch` (and Optuna with it) is imported on first use, so `pareto_front` and the other
strategies stay cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.strategies.base import (
    STATUSES,
    LatencyPrice,
    Observation,
    SearchSpaceExhausted,
    Status,
    Strategy,
    arch_hash_of,
    observation_rewards,
)
from nas.strategies.evolution import RegularizedEvolution
from nas.strategies.factory import STRATEGY_NAMES, StrategyName, make_strategy, rebuild_strategy, strategy_class
from nas.strategies.front import pareto_front
from nas.strategies.random_search import RandomStrategy
from nas.strategies.reward import HARD_EXPONENTS, SOFT_EXPONENTS, RewardMode, mnas_reward, reward_exponents

if TYPE_CHECKING:
    from nas.strategies.pareto import ParetoSearch

__all__ = [
    "HARD_EXPONENTS",
    "SOFT_EXPONENTS",
    "STATUSES",
    "STRATEGY_NAMES",
    "LatencyPrice",
    "Observation",
    "ParetoSearch",
    "RandomStrategy",
    "RegularizedEvolution",
    "RewardMode",
    "SearchSpaceExhausted",
    "Status",
    "Strategy",
    "StrategyName",
    "arch_hash_of",
    "make_strategy",
    "mnas_reward",
    "observation_rewards",
    "pareto_front",
    "rebuild_strategy",
    "reward_exponents",
    "strategy_class",
]


def __getattr__(name: str) -> Any:
    if name == "ParetoSearch":
        from nas.strategies.pareto import ParetoSearch

        return ParetoSearch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
