import numpy as np

from nas.strategies import Observation, RandomStrategy, RegularizedEvolution, observation_rewards
from search_spaces import SearchSpace


def _best_within_budget(observations: list[Observation], budget_ms: float) -> float:
    return max(o.accuracy for o in observations if o.accuracy is not None and o.latency_ms <= budget_ms)


def test_evolution_beats_random_search(space: SearchSpace, price, run_search) -> None:
    """Same number of evaluations, five seeds: aging evolution finds clearly better networks."""
    evolution, random = [], []
    for seed in range(5):
        common = {"space": space, "budget_ms": 3.0, "price": price, "seed": seed}
        strategy = RegularizedEvolution(**common, population_size=20, sample_size=5)
        evolution.append(_best_within_budget(run_search(strategy, 120), 3.0))
        random.append(_best_within_budget(run_search(RandomStrategy(**common), 120), 3.0))
    assert np.mean(evolution) > np.mean(random) + 0.02, (evolution, random)


def test_population_ages_out_the_oldest(space: SearchSpace, price, run_search) -> None:
    strategy = RegularizedEvolution(space, 3.0, price, seed=2, population_size=8, sample_size=3)
    for _ in range(30):
        run_search(strategy, 1)
        assert len(strategy.population) <= 8
    assert list(strategy.population) == strategy.history[-8:]


def test_crossover_children_are_valid_and_new(space: SearchSpace, price, run_search) -> None:
    strategy = RegularizedEvolution(space, 3.0, price, seed=4, population_size=8, sample_size=3, crossover_prob=1.0)
    observations = run_search(strategy, 60)
    assert len({o.arch_hash for o in observations}) == 60
    assert price(np.stack([o.genome for o in observations])).max() <= 3.0


def test_unmeasured_observations_rank_lowest_and_pruned_ones_by_partial_accuracy(space: SearchSpace, price) -> None:
    strategy = RegularizedEvolution(space, 3.0, price, seed=0, population_size=4, sample_size=4)
    genomes = [strategy.ask() for _ in range(4)]
    outcomes = [(None, "failed"), (0.5, "pruned"), (0.4, "completed"), (None, "pruned")]
    for genome, (accuracy, status) in zip(genomes, outcomes, strict=True):
        strategy.tell(strategy.observe(genome, accuracy=accuracy, latency_ms=3.0, status=status))
    rewards = observation_rewards(strategy.population, 3.0, "soft")
    np.testing.assert_allclose(rewards, [-np.inf, 0.5, 0.4, -np.inf])
    rng = np.random.default_rng(0)
    for _ in range(10):  # the tournament holds the whole population: the pruned 0.5 always wins
        assert np.array_equal(strategy._tournament(rng), genomes[1])
    child = strategy.ask()
    assert not any(np.array_equal(child, g) for g in genomes)
