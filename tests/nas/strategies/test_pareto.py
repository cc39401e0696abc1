import numpy as np
from optuna.trial import TrialState

from nas.strategies import ParetoSearch, pareto_front
from nas.strategies.pareto import ARCH_HASH_ATTR, LATENCY_CONSTRAINT, FixedSpaceNSGAIISampler, GenomeParams
from search_spaces import SearchSpace


def test_genome_params_round_trip(space: SearchSpace) -> None:
    mapping = GenomeParams(space)
    for genome in space.sample_population(200, np.random.default_rng(0)):
        params = mapping.params(genome)
        assert set(params) == set(mapping.distributions)
        assert np.array_equal(mapping.genome(params), genome)


def test_rebuild_gives_the_same_study_trials(space: SearchSpace, price, run_search) -> None:
    kwargs = {"space": space, "budget_ms": 3.0, "price": price, "seed": 1, "population_size": 10}
    original = ParetoSearch(**kwargs)
    stored = run_search(original, 40)
    rebuilt = ParetoSearch.rebuild(stored, **kwargs)
    assert rebuilt.n_observed_trials == original.n_observed_trials == 40
    assert len(rebuilt.study.trials) == 40  # the original also holds its FAIL proposal trials
    assert len(original.study.trials) > 40
    observed = [t for t in original.study.trials if ARCH_HASH_ATTR in t.user_attrs]
    for before, after in zip(observed, rebuilt.study.trials, strict=True):
        assert (before.params, before.values, before.state) == (after.params, after.values, after.state)
    assert rebuilt.generation == original.generation == 4
    resumed = run_search(rebuilt, 10)
    assert len({o.arch_hash for o in resumed} | {o.arch_hash for o in stored}) == 50
    assert all(space.decode(o.genome).content_hash() == o.arch_hash for o in resumed)


def test_generations_fill_then_nsga_ii_breeds(space: SearchSpace, price, run_search) -> None:
    strategy = ParetoSearch(space, 3.0, price, seed=2, population_size=10)
    run_search(strategy, 25)
    key = FixedSpaceNSGAIISampler.generation_key()
    complete = strategy.study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.system_attrs[key] for t in complete] == [0] * 10 + [1] * 10 + [2] * 5
    sampler = strategy.study.sampler
    assert isinstance(sampler, FixedSpaceNSGAIISampler)
    parents = sampler.get_parent_population(strategy.study, 2)
    assert len(parents) == 10
    assert [t.number for t in parents] == sorted(t.number for t in parents)


def test_statuses_map_to_optuna_states(space: SearchSpace, price) -> None:
    strategy = ParetoSearch(space, 3.0, price, seed=3, population_size=4)
    genomes = [strategy.ask() for _ in range(5)]
    outcomes = [
        (0.6, 2.5, "completed"),
        (0.7, 3.5, "over_budget"),
        (None, 2.0, "over_budget"),
        (0.3, 2.0, "pruned"),
        (None, 2.0, "failed"),
    ]
    for genome, (accuracy, latency, status) in zip(genomes, outcomes, strict=True):
        strategy.tell(strategy.observe(genome, accuracy=accuracy, latency_ms=latency, status=status))
    trials = [t for t in strategy.study.trials if ARCH_HASH_ATTR in t.user_attrs]
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.PRUNED,
        TrialState.FAIL,
    ]
    assert trials[0].values == [0.6, 2.5] and trials[0].constraints[LATENCY_CONSTRAINT] <= 0
    assert trials[1].constraints[LATENCY_CONSTRAINT] > 0
    assert strategy.front() == pareto_front(strategy.history) == [strategy.history[0]]
