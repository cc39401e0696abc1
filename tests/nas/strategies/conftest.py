"""Fixtures for the strategy tests: a real search space and a cheap synthetic objective.

The objective stands in for training and for the latency predictor so the search logic can be
tested in milliseconds; it claims nothing about real accuracy or latency. Latency grows with
depth, expansion, kernel and SE; accuracy grows with the same choices, plus h-swish and SE give
accuracy almost for free, so a search that learns beats one that does not.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pytest

from nas.strategies import Observation, Strategy
from search_spaces import SPACES, SearchSpace
from search_spaces.space import GENES_PER_SLOT, StageChoices

SearchRun = Callable[[Strategy, int], list[Observation]]


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    return SPACES["mobilenet_v3_small"].with_options(resolutions=(32, 48, 64), num_classes=10)


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    """A space with exactly one architecture."""
    return SearchSpace(
        name="tiny",
        description="one architecture",
        stem_channels=16,
        stages=(StageChoices(24, 2, (1,)),),
        head_hidden_channels=64,
        kernels=(3,),
        expansions=(3,),
        se_options=(False,),
        activations=("relu",),
        widths=(1.0,),
        resolutions=(32,),
        num_classes=10,
    )


def _slot_genes(space: SearchSpace, genomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    genes = np.atleast_2d(np.asarray(genomes, dtype=np.int64))
    slots = genes[:, space.slot_gene_index(0) :].reshape(len(genes), space.n_slots, GENES_PER_SLOT)
    active = slots[:, :, 0] >= 0
    return np.where(active[:, :, None], slots, 0), active


@pytest.fixture(scope="session")
def price(space: SearchSpace) -> Callable[[np.ndarray], np.ndarray]:
    """Synthetic 'milliseconds': 1.1 to 5.9 over this space, about 3 on average."""

    def synthetic_price(genomes: np.ndarray) -> np.ndarray:
        genes = np.atleast_2d(np.asarray(genomes, dtype=np.int64))
        slots, active = _slot_genes(space, genes)
        per_block = 0.10 + 0.06 * slots[:, :, 1] + 0.04 * slots[:, :, 0] + 0.02 * slots[:, :, 2]
        return 0.5 + 0.25 * genes[:, 0] + 0.2 * genes[:, 1] + (per_block * active).sum(axis=1)

    return synthetic_price


@pytest.fixture(scope="session")
def accuracy(space: SearchSpace) -> Callable[[np.ndarray], float]:
    """Synthetic accuracy in about 0.3-0.95, plus a little deterministic per-genome noise."""
    max_score = space.n_slots * 2.4

    def synthetic_accuracy(genome: np.ndarray) -> float:
        genes = np.asarray(genome, dtype=np.int64)
        slots, active = _slot_genes(space, genes)
        score = (0.4 * slots[0, :, 1] + 0.3 * slots[0, :, 0] + 0.6 * slots[0, :, 2] + 0.8 * slots[0, :, 3])[
            active[0]
        ].sum()
        noise = zlib.crc32(genes.tobytes()) / 2**32
        return float(0.3 + 0.5 * score / max_score + 0.05 * genes[0] + 0.025 * genes[1] + 0.01 * noise)

    return synthetic_accuracy


@pytest.fixture(scope="session")
def run_search(price: Callable[[np.ndarray], np.ndarray], accuracy: Callable[[np.ndarray], float]) -> SearchRun:
    """Ask / evaluate / tell `steps` times, one candidate at a time; returns the new observations."""

    def run(strategy: Strategy, steps: int) -> list[Observation]:
        observations = []
        for _ in range(steps):
            genome = strategy.ask()
            observation = strategy.observe(
                genome, accuracy=accuracy(genome), latency_ms=float(price(genome[None])[0]), status="completed"
            )
            strategy.tell(observation)
            observations.append(observation)
        return observations

    return run
