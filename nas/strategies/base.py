"""Ask / tell search strategies: a strategy proposes genomes, the caller runs them and reports back.

A strategy never trains, times or stores anything itself (Optuna's sampler/study split): the search
loop asks for a genome, evaluates it however it likes (training, a zero-cost proxy, a Ray Tune
trial) and tells the strategy what happened as an `Observation`.

Resume after a crash needs no saved strategy state. Everything a strategy knows is a function of
its constructor arguments and the observations told so far, in order:

* the random numbers of the k-th proposal come from ``np.random.default_rng([seed, k])``, where k
  counts the genomes this strategy has handed out or been told about, so no generator state has to
  be restored;
* `tell` is deterministic and draws no random numbers.

So ``Strategy.rebuild(stored_observations, **same_constructor_args)`` puts a fresh strategy exactly
where the old one was (genomes that were asked but never told are forgotten, and may be proposed
again, which is what a lost in-flight trial should be).

Strategies are not thread-safe; a search loop owns one strategy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Self, get_args

import numpy as np

from nas.strategies.reward import RewardMode, mnas_reward, reward_exponents
from search_spaces.space import SearchSpace

Status = Literal["completed", "pruned", "over_budget", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)

LatencyPrice = Callable[[np.ndarray], np.ndarray]
"""Predicted milliseconds for every row of an (n, genome_length) int64 genome array."""


class SearchSpaceExhausted(RuntimeError):
    """No new architecture within the latency limit could be found (the space, or its feasible part, is used up)."""


def arch_hash_of(space: SearchSpace, genome: np.ndarray) -> str:
    """The content hash of the network a genome decodes to (the candidate's identity)."""
    return space.decode(genome).content_hash()


@dataclass(frozen=True, eq=False)
class Observation:
    """What happened to one proposed architecture (a finished trial, as a strategy sees it).

    `accuracy` is None when nothing was measured (a failed trial, or one stopped before its first
    evaluation); a pruned trial may carry the accuracy it had reached when it was stopped.
    `latency_ms` is the predicted (or measured) latency the search judged the candidate by.
    """

    genome: np.ndarray
    arch_hash: str
    accuracy: float | None
    latency_ms: float
    status: Status

    def __post_init__(self) -> None:
        genome = np.array(self.genome, dtype=np.int64, copy=True)
        if genome.ndim != 1:
            raise ValueError(f"genome must be a 1-D vector, got shape {genome.shape}")
        genome.setflags(write=False)
        object.__setattr__(self, "genome", genome)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.accuracy is not None:
            accuracy = float(self.accuracy)
            if math.isnan(accuracy):
                raise ValueError("accuracy is NaN; use None when nothing was measured")
            object.__setattr__(self, "accuracy", accuracy)
        if self.status == "completed" and self.accuracy is None:
            raise ValueError("a completed observation needs an accuracy")
        latency = float(self.latency_ms)
        if not (math.isfinite(latency) and latency > 0):
            raise ValueError(f"latency_ms must be a positive finite number, got {self.latency_ms}")
        object.__setattr__(self, "latency_ms", latency)

    @classmethod
    def create(
        cls,
        space: SearchSpace,
        genome: np.ndarray,
        *,
        accuracy: float | None,
        latency_ms: float,
        status: Status,
    ) -> Observation:
        """An observation whose `arch_hash` is computed from the genome."""
        return cls(genome, arch_hash_of(space, genome), accuracy, latency_ms, status)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the genome as a list of ints)."""
        return {
            "genome": [int(g) for g in self.genome],
            "arch_hash": self.arch_hash,
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        return cls(
            genome=np.asarray(data["genome"], dtype=np.int64),
            arch_hash=data["arch_hash"],
            accuracy=data["accuracy"],
            latency_ms=data["latency_ms"],
            status=data["status"],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Observation):
            return NotImplemented
        return (
            self.arch_hash == other.arch_hash
            and self.accuracy == other.accuracy
            and self.latency_ms == other.latency_ms
            and self.status == other.status
            and np.array_equal(self.genome, other.genome)
        )

    def __hash__(self) -> int:
        return hash((self.arch_hash, self.accuracy, self.latency_ms, self.status))


def observation_rewards(observations: Iterable[Observation], budget_ms: float, mode: RewardMode) -> np.ndarray:
    """MnasNet reward per observation; -inf where nothing was measured (those rank below everything)."""
    items = list(observations)
    if not items:
        return np.zeros(0, dtype=np.float64)
    accuracy = np.array([np.nan if o.accuracy is None else o.accuracy for o in items], dtype=np.float64)
    latency = np.array([o.latency_ms for o in items], dtype=np.float64)
    rewards = np.asarray(mnas_reward(accuracy, latency, budget_ms, mode), dtype=np.float64)
    return np.where(np.isnan(rewards), -np.inf, rewards)


class Strategy(ABC):
    """Proposes latency-feasible, never-seen genomes of one search space; learns from observations.

    Common arguments:
        space: the search space whose genomes are proposed.
        budget_ms: the latency target (T of the MnasNet reward).
        price: vectorised latency predictor over an (n, genome_length) genome array, in ms.
        seed: the only source of randomness (see the module docstring).
        max_over_budget_ratio: proposals predicted above ``budget_ms * ratio`` are dropped before
            they are returned (counted in `rejected_over_budget`). Above 1 lets the search keep
            near-miss candidates that a later NetAdapt step can shrink.
        reward_mode: how `best` (and evolution's tournaments) trade accuracy against latency.
        max_proposals: how many proposals one `ask` may draw before it gives up with
            `SearchSpaceExhausted`.
    """

    name: str = "strategy"
    proposal_batch: int = 32

    def __init__(
        self,
        space: SearchSpace,
        budget_ms: float,
        price: LatencyPrice,
        seed: int,
        max_over_budget_ratio: float = 1.0,
        *,
        reward_mode: RewardMode = "soft",
        max_proposals: int = 4096,
    ) -> None:
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        if not max_over_budget_ratio > 0:
            raise ValueError(f"max_over_budget_ratio must be positive, got {max_over_budget_ratio}")
        if max_proposals < 1:
            raise ValueError(f"max_proposals must be at least 1, got {max_proposals}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        reward_exponents(reward_mode)  # validates the mode early
        self.space = space
        self.budget_ms = float(budget_ms)
        self.price = price
        self.seed = int(seed)
        self.max_over_budget_ratio = float(max_over_budget_ratio)
        self.reward_mode = reward_mode
        self.max_proposals = int(max_proposals)
        self.history: list[Observation] = []
        self.pending: dict[str, np.ndarray] = {}
        """Genomes handed out by `ask` and not yet told, by arch hash; they count as seen."""
        self.n_proposed = 0
        """Genomes handed out or told about so far: the k of the k-th proposal's random generator."""
        self.rejected_over_budget = 0
        self.rejected_duplicates = 0
        self._seen_hashes: set[str] = set()  # pending and told
        self._told: set[str] = set()
        self._seen_genomes: set[bytes] = set()
        self._space_size = space.size()

    # --- public API ------------------------------------------------------------------------------

    @property
    def latency_limit_ms(self) -> float:
        return self.budget_ms * self.max_over_budget_ratio

    def ask(self) -> np.ndarray:
        """A latency-feasible genome never asked or told before; `SearchSpaceExhausted` if none is found."""
        if len(self._seen_hashes) >= self._space_size:
            raise SearchSpaceExhausted(
                f"all {self._space_size} architectures of space {self.space.name!r} were already proposed"
            )
        rng = np.random.default_rng([self.seed, self.n_proposed])
        drawn = 0
        while drawn < self.max_proposals:
            count = min(self._batch_size(), self.max_proposals - drawn)
            try:
                batch = np.asarray(self._propose(rng, count), dtype=np.int64).reshape(-1, self.space.genome_length)
                if len(batch) == 0:
                    raise RuntimeError(f"{type(self).__name__} proposed no genomes")
                drawn += len(batch)
                chosen = self._first_new_feasible(batch)
            finally:
                self._after_batch()
            if chosen is not None:
                genome, arch_hash = chosen
                self._mark_seen(genome, arch_hash)
                self.pending[arch_hash] = genome
                self.n_proposed += 1
                return genome.copy()
        raise SearchSpaceExhausted(
            f"{type(self).__name__} found no new architecture predicted within {self.latency_limit_ms:.3g} ms "
            f"after {drawn} proposals ({len(self._seen_hashes)} architectures already proposed; "
            f"{self.rejected_over_budget} proposals over budget so far)"
        )

    def _first_new_feasible(self, batch: np.ndarray) -> tuple[np.ndarray, str] | None:
        """The first genome of the batch within the latency limit and never seen, with its hash."""
        latency = np.asarray(self.price(batch), dtype=np.float64).reshape(-1)
        if latency.shape != (len(batch),):
            raise ValueError(f"price returned shape {latency.shape} for {len(batch)} genomes")
        feasible = latency <= self.latency_limit_ms  # NaN prices count as infeasible
        self.rejected_over_budget += int((~feasible).sum())
        for index in np.flatnonzero(feasible):
            arch_hash = self._new_hash(batch[index])
            if arch_hash is not None:
                return batch[index].copy(), arch_hash
            self.rejected_duplicates += 1
        return None

    def tell(self, observation: Observation) -> None:
        """Record what happened to a genome (asked by this strategy, or not: then it counts as proposed)."""
        genome = np.asarray(observation.genome, dtype=np.int64)
        if genome.shape != (self.space.genome_length,):
            raise ValueError(f"genome must have {self.space.genome_length} genes, got shape {genome.shape}")
        arch_hash = observation.arch_hash
        if arch_hash in self.pending:
            if not np.array_equal(self.pending[arch_hash], genome):
                raise ValueError(f"observation of {arch_hash} carries a genome other than the one asked")
            del self.pending[arch_hash]
        else:
            if arch_hash in self._told:
                raise ValueError(f"architecture {arch_hash} was already told")
            actual = arch_hash_of(self.space, genome)
            if actual != arch_hash:
                raise ValueError(f"observation's arch_hash {arch_hash} does not match its genome ({actual})")
            self._mark_seen(genome, arch_hash)
            self.n_proposed += 1
        self._told.add(arch_hash)
        self.history.append(observation)
        self._on_tell(observation)

    def replay(self, observations: Iterable[Observation]) -> Self:
        """Tell every observation in order (what `rebuild` does on a fresh strategy)."""
        for observation in observations:
            self.tell(observation)
        return self

    @classmethod
    def rebuild(cls, observations: Iterable[Observation], /, *args: Any, **kwargs: Any) -> Self:
        """A strategy built with the given constructor arguments, with `observations` replayed in order."""
        return cls(*args, **kwargs).replay(observations)

    def best(self) -> Observation | None:
        """The completed observation with the highest MnasNet reward (`reward_mode`); earliest on ties."""
        completed = [o for o in self.history if o.status == "completed"]
        if not completed:
            return None
        rewards = observation_rewards(completed, self.budget_ms, self.reward_mode)
        return completed[int(np.argmax(rewards))]

    def arch_hash(self, genome: np.ndarray) -> str:
        return arch_hash_of(self.space, genome)

    def observe(
        self, genome: np.ndarray, *, accuracy: float | None, latency_ms: float, status: Status = "completed"
    ) -> Observation:
        """An `Observation` of a genome of this strategy's space (hash computed); it is not told."""
        return Observation.create(self.space, genome, accuracy=accuracy, latency_ms=latency_ms, status=status)

    # --- hooks for subclasses --------------------------------------------------------------------

    def _batch_size(self) -> int:
        """How many proposals to draw and price at once."""
        return self.proposal_batch

    @abstractmethod
    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Up to `count` candidate genomes as an (n, genome_length) array; filtering is done by `ask`."""

    def _on_tell(self, observation: Observation) -> None:  # noqa: B027 - optional hook
        """Update the strategy's state; must be deterministic and draw no random numbers."""

    def _after_batch(self) -> None:  # noqa: B027 - optional hook
        """Called after every proposal batch has been judged, whatever the outcome (even an error)."""

    # --- bookkeeping -----------------------------------------------------------------------------

    def _new_hash(self, genome: np.ndarray) -> str | None:
        """The genome's hash if no equal network was seen before, else None."""
        key = genome.tobytes()
        if key in self._seen_genomes:
            return None
        arch_hash = arch_hash_of(self.space, genome)
        if arch_hash in self._seen_hashes:
            self._seen_genomes.add(key)
            return None
        return arch_hash

    def _mark_seen(self, genome: np.ndarray, arch_hash: str) -> None:
        self._seen_genomes.add(np.asarray(genome, dtype=np.int64).tobytes())
        self._seen_hashes.add(arch_hash)
