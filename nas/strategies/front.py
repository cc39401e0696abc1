"""The accuracy / latency Pareto front of a set of observations (numpy only, no Optuna)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nas.strategies.base import Observation


def pareto_front(observations: Iterable[Observation]) -> list[Observation]:
    """The completed observations no other completed one dominates, fastest first.

    `a` dominates `b` when it is at least as accurate and at least as fast, and strictly better in
    one of the two. Observations with equal accuracy and latency do not dominate each other, so all
    of them stay on the front. Ties in latency keep input order.
    """
    completed = [o for o in observations if o.status == "completed" and o.accuracy is not None]
    if not completed:
        return []
    accuracy = np.array([o.accuracy for o in completed], dtype=np.float64)
    latency = np.array([o.latency_ms for o in completed], dtype=np.float64)
    order = np.lexsort((-accuracy, latency))  # by latency, then most accurate first
    front: list[Observation] = []
    best_faster = -np.inf  # best accuracy among strictly faster observations
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and latency[order[stop]] == latency[order[start]]:
            stop += 1
        group = order[start:stop]
        group_best = accuracy[group[0]]
        if group_best > best_faster:
            front.extend(completed[i] for i in group if accuracy[i] == group_best)
        best_faster = max(best_faster, group_best)
        start = stop
    return front
