"""Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image Classifier
Architecture Search", AmoebaNet).

A fixed-size population ordered by age: each child comes from the best of a small random sample of
the population (a tournament), and the *oldest* member dies when a child joins, whatever its score.
Ageing keeps the search from clinging to one lucky early network, which matters here because a
candidate's accuracy after a few epochs on two cores is noisy.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from nas.strategies.base import LatencyPrice, Observation, Strategy, observation_rewards
from nas.strategies.reward import RewardMode
from search_spaces.space import SearchSpace


class RegularizedEvolution(Strategy):
    """Aging evolution on genomes, ranked by the MnasNet reward.

    Args (beyond `Strategy`'s):
        population_size: P, the number of most recent observations that form the population; the
            first P proposals are uniform random samples.
        sample_size: S, how many members a tournament draws (without replacement).
        crossover_prob: probability that a child first crosses the tournament winner with a second
            tournament's winner (stage-wise crossover), before mutation.
        mutation_rate: per-decision redraw probability passed to `SearchSpace.mutate` (None: one
            decision per genome on average).

    Every told observation joins the population, whatever its status, and the oldest leaves once
    there are more than P. Ranking: observations with an accuracy are ranked by
    `mnas_reward(accuracy, latency_ms, budget_ms, reward_mode)`, so a pruned trial competes with the
    accuracy it had reached when it was stopped (an underestimate, which is the point of pruning it);
    observations without an accuracy (failed, or stopped before any evaluation) rank below all
    others and only win a tournament that holds nothing else.
    """

    name = "evolution"
    proposal_batch = 16

    def __init__(
        self,
        space: SearchSpace,
        budget_ms: float,
        price: LatencyPrice,
        seed: int,
        max_over_budget_ratio: float = 1.0,
        *,
        population_size: int = 20,
        sample_size: int = 5,
        crossover_prob: float = 0.0,
        mutation_rate: float | None = None,
        reward_mode: RewardMode = "soft",
        max_proposals: int = 4096,
    ) -> None:
        super().__init__(
            space,
            budget_ms,
            price,
            seed,
            max_over_budget_ratio,
            reward_mode=reward_mode,
            max_proposals=max_proposals,
        )
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size must be within 1..population_size ({population_size}), got {sample_size}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ValueError(f"crossover_prob must be within 0..1, got {crossover_prob}")
        if mutation_rate is not None and not 0.0 < mutation_rate <= 1.0:
            raise ValueError(f"mutation_rate must be within (0, 1], got {mutation_rate}")
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        self.crossover_prob = float(crossover_prob)
        self.mutation_rate = mutation_rate
        self.population: deque[Observation] = deque(maxlen=self.population_size)
        self._population_rewards: np.ndarray | None = None

    def _on_tell(self, observation: Observation) -> None:
        self.population.append(observation)  # the deque's maxlen drops the oldest
        self._population_rewards = None

    def _rewards(self) -> np.ndarray:
        if self._population_rewards is None:
            self._population_rewards = observation_rewards(self.population, self.budget_ms, self.reward_mode)
        return self._population_rewards

    def _tournament(self, rng: np.random.Generator) -> np.ndarray:
        rewards = self._rewards()
        size = min(self.sample_size, len(rewards))
        contestants = rng.choice(len(rewards), size=size, replace=False)
        winner = contestants[int(np.argmax(rewards[contestants]))]
        return self.population[int(winner)].genome

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.n_proposed < self.population_size or not self.population:
            return self.space.sample_population(count, rng)
        children = np.empty((count, self.space.genome_length), dtype=np.int64)
        for i in range(count):
            parent = self._tournament(rng)
            if self.crossover_prob > 0 and rng.random() < self.crossover_prob:
                parent = self.space.crossover(parent, self._tournament(rng), rng)
            children[i] = self.space.mutate(parent, rng, self.mutation_rate)
        return children
