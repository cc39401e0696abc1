"""Behaviour every strategy shares: feasible unique asks, determinism, rebuild, exhaustion."""

from collections.abc import Callable

import numpy as np
import pytest

from nas.strategies import Observation, SearchSpaceExhausted, Strategy, make_strategy, rebuild_strategy
from search_spaces import SearchSpace

NAMES = ["random", "evolution", "pareto"]
SMALL = {"random": {}, "evolution": {"population_size": 10, "sample_size": 3}, "pareto": {"population_size": 10}}


def build(name: str, space: SearchSpace, price, seed: int = 0, budget_ms: float = 3.0, **extra) -> Strategy:
    kwargs = {"space": space, "budget_ms": budget_ms, "price": price, "seed": seed, **SMALL[name], **extra}
    return make_strategy(name, **kwargs)  # type: ignore[arg-type]


def kwargs_of(name: str, space: SearchSpace, price, seed: int = 0, budget_ms: float = 3.0) -> dict:
    return {"space": space, "budget_ms": budget_ms, "price": price, "seed": seed, **SMALL[name]}


@pytest.mark.parametrize("name", NAMES)
def test_asks_decode_are_unique_and_within_the_limit(name: str, space: SearchSpace, price, run_search) -> None:
    strategy = build(name, space, price, max_over_budget_ratio=1.2)
    observations = run_search(strategy, 300)
    hashes = [space.decode(o.genome).content_hash() for o in observations]
    assert hashes == [o.arch_hash for o in observations]
    assert len(set(hashes)) == 300
    latencies = price(np.stack([o.genome for o in observations]))
    assert latencies.max() <= 3.0 * 1.2
    assert strategy.pending == {}
    assert len(strategy.history) == 300


@pytest.mark.parametrize("name", NAMES)
def test_tight_budget_rejects_without_returning(name: str, space: SearchSpace, price, run_search) -> None:
    strategy = build(name, space, price, budget_ms=2.2)
    observations = run_search(strategy, 20)
    assert price(np.stack([o.genome for o in observations])).max() <= 2.2
    assert strategy.rejected_over_budget > 0


@pytest.mark.parametrize("name", NAMES)
def test_pending_asks_count_as_seen(name: str, space: SearchSpace, price) -> None:
    strategy = build(name, space, price)
    asked = [strategy.ask() for _ in range(25)]
    assert len(strategy.pending) == 25
    assert len({g.tobytes() for g in asked}) == 25


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_tells_give_the_same_asks(name: str, space: SearchSpace, price, run_search) -> None:
    first = run_search(build(name, space, price, seed=7), 30)
    second = run_search(build(name, space, price, seed=7), 30)
    other = run_search(build(name, space, price, seed=8), 30)
    assert [o.arch_hash for o in first] == [o.arch_hash for o in second]
    assert [o.arch_hash for o in first] != [o.arch_hash for o in other]


@pytest.mark.parametrize("name", NAMES)
def test_rebuild_continues_where_the_original_was(name: str, space: SearchSpace, price, run_search) -> None:
    original = build(name, space, price, seed=3)
    stored = run_search(original, 40)
    rebuilt = rebuild_strategy(name, stored, **kwargs_of(name, space, price, seed=3))  # type: ignore[arg-type]
    assert rebuilt.history == original.history
    assert rebuilt.n_proposed == original.n_proposed == 40
    assert rebuilt.best() == original.best()
    continued = run_search(original, 10)
    resumed = run_search(rebuilt, 10)
    assert [o.arch_hash for o in resumed] == [o.arch_hash for o in continued]
    assert not {o.arch_hash for o in resumed} & {o.arch_hash for o in stored}


@pytest.mark.parametrize("name", NAMES)
def test_rebuild_forgets_pending_asks_and_reproposes_them(name: str, space: SearchSpace, price, run_search) -> None:
    """A crash loses the in-flight asks; the rebuilt strategy proposes the same next candidate again."""
    original = build(name, space, price, seed=5)
    stored = run_search(original, 40)
    in_flight = original.ask()
    original.ask()
    rebuilt = type(original).rebuild(stored, **kwargs_of(name, space, price, seed=5))
    assert rebuilt.pending == {}
    assert np.array_equal(rebuilt.ask(), in_flight)


@pytest.mark.parametrize("name", NAMES)
def test_exhausted_space_raises(name: str, tiny_space: SearchSpace) -> None:
    def price(genomes: np.ndarray) -> np.ndarray:
        return np.ones(len(genomes))

    strategy = make_strategy(name, space=tiny_space, budget_ms=2.0, price=price, seed=0)  # type: ignore[arg-type]
    only = strategy.ask()
    assert tiny_space.decode(only).content_hash() in strategy.pending
    with pytest.raises(SearchSpaceExhausted, match="already proposed"):
        strategy.ask()
    strategy.tell(strategy.observe(only, accuracy=0.5, latency_ms=1.0))
    with pytest.raises(SearchSpaceExhausted):
        strategy.ask()


@pytest.mark.parametrize("name", NAMES)
def test_gives_up_after_a_bounded_number_of_proposals(name: str, space: SearchSpace, price) -> None:
    strategy = build(name, space, price, budget_ms=0.5, max_proposals=64)  # nothing is that fast
    with pytest.raises(SearchSpaceExhausted, match="after 64 proposals"):
        strategy.ask()
    assert strategy.rejected_over_budget == 64


def test_tell_validates_observations(space: SearchSpace, price, accuracy: Callable) -> None:
    strategy = build("random", space, price)
    genome = strategy.ask()
    observation = strategy.observe(genome, accuracy=accuracy(genome), latency_ms=2.0)
    strategy.tell(observation)
    with pytest.raises(ValueError, match="already told"):
        strategy.tell(observation)
    other = space.sample(np.random.default_rng(99))
    with pytest.raises(ValueError, match="does not match"):
        strategy.tell(Observation(other, "0" * 20, 0.5, 2.0, "completed"))
    with pytest.raises(ValueError, match="needs an accuracy"):
        Observation(other, "x", None, 2.0, "completed")
    with pytest.raises(ValueError, match="status"):
        Observation(other, "x", None, 2.0, "lost")  # type: ignore[arg-type]


def test_told_unasked_genomes_are_never_asked(space: SearchSpace, price) -> None:
    strategy = build("random", space, price, seed=11)
    predicted = build("random", space, price, seed=11).ask()
    strategy.tell(strategy.observe(predicted, accuracy=0.5, latency_ms=2.0))
    assert strategy.n_proposed == 1
    assert not np.array_equal(strategy.ask(), predicted)


def test_best_is_the_highest_reward(space: SearchSpace, price) -> None:
    strategy = build("random", space, price, reward_mode="hard")
    genomes = [strategy.ask() for _ in range(4)]
    for genome, (acc, lat, status) in zip(
        genomes,
        [(0.70, 2.0, "completed"), (0.90, 6.0, "completed"), (0.75, 3.0, "completed"), (0.99, 1.0, "pruned")],
        strict=True,
    ):
        strategy.tell(strategy.observe(genome, accuracy=acc, latency_ms=lat, status=status))
    best = strategy.best()
    assert best is not None and best.accuracy == 0.75  # 0.90 at 2x the budget scores 0.45; pruned never wins


def test_observation_round_trips_through_a_dict(space: SearchSpace) -> None:
    genome = space.sample(np.random.default_rng(1))
    observation = Observation.create(space, genome, accuracy=None, latency_ms=1.5, status="failed")
    assert Observation.from_dict(observation.to_dict()) == observation
    assert not observation.genome.flags.writeable
