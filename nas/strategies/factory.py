"""Build a strategy by name (what a search request names), fresh or rebuilt from stored observations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, get_args

from nas.strategies.base import Observation, Strategy

StrategyName = Literal["random", "evolution", "pareto"]
STRATEGY_NAMES: tuple[str, ...] = get_args(StrategyName)


def strategy_class(name: StrategyName) -> type[Strategy]:
    if name == "random":
        from nas.strategies.random_search import RandomStrategy

        return RandomStrategy
    if name == "evolution":
        from nas.strategies.evolution import RegularizedEvolution

        return RegularizedEvolution
    if name == "pareto":
        from nas.strategies.pareto import ParetoSearch  # imports Optuna, so only when asked for

        return ParetoSearch
    raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}")


def make_strategy(name: StrategyName, **kwargs: Any) -> Strategy:
    """A new strategy; `kwargs` are the class's constructor arguments (space, budget_ms, price, seed, ...)."""
    return strategy_class(name)(**kwargs)


def rebuild_strategy(name: StrategyName, observations: Iterable[Observation], **kwargs: Any) -> Strategy:
    """The strategy `make_strategy(name, **kwargs)` would be after being told `observations` in order."""
    return strategy_class(name).rebuild(observations, **kwargs)
