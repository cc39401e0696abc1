"""Multi-objective search (maximise accuracy, minimise latency) with Optuna's NSGA-II, ask/tell.

The genome's decisions become Optuna categorical parameters: ``resolution``, ``width``,
``depth_<stage>`` and, for every block slot of every stage, ``s<stage>b<slot>_kernel``,
``_expansion``, ``_se`` and ``_act``. Every trial carries *all* slot parameters (a fixed-length
chromosome), so NSGA-II's crossover and mutation work on all of them; slots beyond a stage's depth
are ignored when the genome is built (-1 there).

How the Optuna study is kept (so resume is exact):

* While the first NSGA-II generation fills, proposals are uniform random genomes drawn in
  vectorised batches (what NSGA-II would do, without an Optuna trial per rejected proposal).
  Afterwards each `ask` draws children from ``study.ask`` with a fresh NSGA-II sampler whose seed
  comes from the strategy's per-proposal generator. Every proposal trial is closed as FAIL
  straight away, whether it is returned or not (it was over budget, a duplicate, or is now
  pending). FAIL trials are invisible to NSGA-II (it only breeds from COMPLETE trials).

Optuna's logging is turned down to WARNING while the strategy calls it (a global setting,
restored afterwards), so a search does not print a line per proposal.
* Each `tell` *adds* a trial (`optuna.trial.create_trial` + `study.add_trial`) holding the told
  genome's canonical parameters: unused slots repeat the stage's last used block. NSGA-II's
  generation number is written onto the added trial by the sampler's own rule (a generation is
  full after `population_size` COMPLETE trials).

So the trials NSGA-II learns from are a pure function of the told observations, and
`ParetoSearch.rebuild` (which only adds trials) reproduces them exactly; with the per-proposal
seeding, a rebuilt strategy asks what the original would have asked. A rebuilt study lacks the
original's FAIL proposal trials; `n_observed_trials` counts the trials that hold observations.

Status mapping: completed -> COMPLETE with values (accuracy, latency_ms) and the constraint
``latency_ms - budget_ms * max_over_budget_ratio`` (<= 0 is feasible; Optuna's NSGA-II ranks
infeasible trials below all feasible ones); over_budget with an accuracy -> COMPLETE and always
infeasible; over_budget without one and failed -> FAIL; pruned -> PRUNED (NSGA-II ignores it).
Proposals predicted over the limit are never returned (the common ask-time filter).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import NSGAIISampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from nas.strategies.base import LatencyPrice, Observation, Strategy
from nas.strategies.front import pareto_front
from nas.strategies.reward import RewardMode
from search_spaces.space import GENES_PER_SLOT, UNUSED, SearchSpace

LATENCY_CONSTRAINT = "latency_over_limit_ms"
ARCH_HASH_ATTR = "hwnas:arch_hash"
STATUS_ATTR = "hwnas:status"
# Proposals drawn at once while the first generation is sampled uniformly at random.
RANDOM_BATCH = 64
# Infeasible by at least this much, for trials told as over budget whatever their latency.
_MIN_VIOLATION_MS = 1e-6


class FixedSpaceNSGAIISampler(NSGAIISampler):
    """Optuna's NSGA-II with two changes that keep it fast and replayable; the algorithm is the same.

    * The relative search space is the genome's fixed parameter set, given once, instead of the
      intersection of every COMPLETE trial's distributions, which Optuna recomputes from scratch
      for each new sampler instance (quadratic over a search; every trial here carries all
      parameters, so the two are equal once a trial has completed).
    * Parent populations come back in trial order. Optuna returns a freshly selected population in
      selection order but a cached one in trial order; since the seeded child generation indexes
      into that list, the order must not depend on whether the cache was warm (it is cold in a
      rebuilt study).
    """

    def __init__(self, relative_space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._relative_space = {
            name: distribution for name, distribution in sorted(relative_space.items()) if not distribution.single()
        }

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._relative_space)

    def select_parent(self, study: optuna.Study, generation: int) -> list[FrozenTrial]:
        return sorted(super().select_parent(study, generation), key=lambda trial: trial.number)

    @classmethod
    def generation_key(cls) -> str:
        """The system attribute NSGA-II reads a COMPLETE trial's generation from."""
        getter = getattr(cls, "_get_generation_key", None)
        return getter() if getter is not None else f"{cls.__name__}:generation"


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines while the strategy drives it, then restore the level."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


class GenomeParams:
    """The genome <-> Optuna parameters mapping of one search space."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        dist: dict[str, CategoricalDistribution] = {
            "resolution": CategoricalDistribution(space.resolutions),
            "width": CategoricalDistribution(space.widths),
        }
        for stage_i, stage in enumerate(space.stages):
            dist[f"depth_{stage_i}"] = CategoricalDistribution(stage.depths)
        self._slot_fields = (
            ("kernel", space.kernels),
            ("expansion", space.expansions),
            ("se", space.se_options),
            ("act", space.activations),
        )
        for stage_i, stage in enumerate(space.stages):
            for j in range(stage.max_depth):
                for field_name, choices in self._slot_fields:
                    dist[self.slot_param(stage_i, j, field_name)] = CategoricalDistribution(choices)
        self.distributions = dist

    @staticmethod
    def slot_param(stage_i: int, block_j: int, field_name: str) -> str:
        return f"s{stage_i}b{block_j}_{field_name}"

    def genome(self, params: dict[str, Any]) -> np.ndarray:
        space = self.space
        genes = np.full(space.genome_length, UNUSED, dtype=np.int64)
        genes[0] = space.resolutions.index(params["resolution"])
        genes[1] = space.widths.index(params["width"])
        for stage_i, stage in enumerate(space.stages):
            depth = params[f"depth_{stage_i}"]
            genes[2 + stage_i] = stage.depths.index(depth)
            for j in range(depth):
                base = space.slot_gene_index(space.stage_slot_offsets[stage_i] + j)
                for offset, (field_name, choices) in enumerate(self._slot_fields):
                    genes[base + offset] = choices.index(params[self.slot_param(stage_i, j, field_name)])
        return genes

    def params(self, genome: np.ndarray) -> dict[str, Any]:
        """Canonical parameters of a genome: unused slots repeat the stage's last used block."""
        space = self.space
        genes = np.asarray(genome, dtype=np.int64)
        params: dict[str, Any] = {
            "resolution": space.resolutions[int(genes[0])],
            "width": space.widths[int(genes[1])],
        }
        for stage_i, stage in enumerate(space.stages):
            depth = stage.depths[int(genes[2 + stage_i])]
            params[f"depth_{stage_i}"] = depth
            last = [0] * GENES_PER_SLOT
            for j in range(stage.max_depth):
                base = space.slot_gene_index(space.stage_slot_offsets[stage_i] + j)
                if j < depth:
                    last = [int(g) for g in genes[base : base + GENES_PER_SLOT]]
                for offset, (field_name, choices) in enumerate(self._slot_fields):
                    params[self.slot_param(stage_i, j, field_name)] = choices[last[offset]]
        return params


class ParetoSearch(Strategy):
    """NSGA-II over (accuracy up, latency down), driven ask/tell; see the module docstring.

    Args (beyond `Strategy`'s): `population_size`, `mutation_prob`, `crossover_prob` and
    `swapping_prob` are NSGA-II's (Optuna's `NSGAIISampler`).
    """

    name = "pareto"
    proposal_batch = 1  # each NSGA-II child is an Optuna trial: draw them one at a time

    def __init__(
        self,
        space: SearchSpace,
        budget_ms: float,
        price: LatencyPrice,
        seed: int,
        max_over_budget_ratio: float = 1.0,
        *,
        population_size: int = 20,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
        swapping_prob: float = 0.5,
        reward_mode: RewardMode = "soft",
        max_proposals: int = 512,
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
        self.population_size = int(population_size)
        self.mutation_prob = mutation_prob
        self.crossover_prob = float(crossover_prob)
        self.swapping_prob = float(swapping_prob)
        self.genome_params = GenomeParams(space)
        self._generation_key = FixedSpaceNSGAIISampler.generation_key()
        self._generation = 0
        self._generation_count = 0
        self._proposal_trials: list[optuna.trial.Trial] = []
        with _quiet_optuna():
            self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=self._make_sampler(self.seed))

    # --- NSGA-II bookkeeping ---------------------------------------------------------------------

    def _make_sampler(self, seed: int) -> FixedSpaceNSGAIISampler:
        return FixedSpaceNSGAIISampler(
            self.genome_params.distributions,
            population_size=self.population_size,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
            swapping_prob=self.swapping_prob,
            seed=seed,
        )

    @property
    def generation(self) -> int:
        """NSGA-II generation the next COMPLETE trial joins (0 while the first population fills)."""
        return self._generation + (1 if self._generation_count >= self.population_size else 0)

    @property
    def n_observed_trials(self) -> int:
        """Study trials that hold a told observation (proposal trials excluded)."""
        return sum(1 for t in self.study.get_trials(deepcopy=False) if ARCH_HASH_ATTR in t.user_attrs)

    def front(self) -> list[Observation]:
        return pareto_front(self.history)

    # --- Strategy hooks --------------------------------------------------------------------------

    def _batch_size(self) -> int:
        return RANDOM_BATCH if self.generation == 0 else self.proposal_batch

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.generation == 0:
            # NSGA-II's first generation is uniform random sampling: draw it vectorised, without
            # an Optuna trial per proposal (a tight budget can reject most of them).
            self._proposal_trials = []
            return self.space.sample_population(count, rng)
        self.study.sampler = self._make_sampler(int(rng.integers(0, 2**31 - 1)))
        with _quiet_optuna():
            for _ in range(count):
                self._proposal_trials.append(self.study.ask(self.genome_params.distributions))
        return np.stack([self.genome_params.genome(trial.params) for trial in self._proposal_trials])

    def _after_batch(self) -> None:
        with _quiet_optuna():
            for trial in self._proposal_trials:
                self.study.tell(trial, state=TrialState.FAIL)
        self._proposal_trials = []

    def _on_tell(self, observation: Observation) -> None:
        values: list[float] | None = None
        constraints: dict[str, float] | None = None
        system_attrs: dict[str, Any] = {}
        has_accuracy = observation.accuracy is not None
        if observation.status == "completed" or (observation.status == "over_budget" and has_accuracy):
            state = TrialState.COMPLETE
            values = [float(observation.accuracy), observation.latency_ms]  # type: ignore[arg-type]
            violation = observation.latency_ms - self.latency_limit_ms
            if observation.status == "over_budget":
                violation = max(violation, _MIN_VIOLATION_MS)
            constraints = {LATENCY_CONSTRAINT: violation}
            system_attrs[self._generation_key] = self._next_generation()
        elif observation.status == "pruned":
            state = TrialState.PRUNED
        else:
            state = TrialState.FAIL
        trial = create_trial(
            state=state,
            values=values,
            params=self.genome_params.params(observation.genome),
            distributions=self.genome_params.distributions,
            user_attrs={ARCH_HASH_ATTR: observation.arch_hash, STATUS_ATTR: observation.status},
            system_attrs=system_attrs,
            constraints=constraints,
        )
        with _quiet_optuna():
            self.study.add_trial(trial)

    def _next_generation(self) -> int:
        # Optuna's rule (BaseGASampler.get_trial_generation): join the newest generation until it
        # holds population_size COMPLETE trials, then open the next one.
        if self._generation_count >= self.population_size:
            self._generation += 1
            self._generation_count = 0
        self._generation_count += 1
        return self._generation
