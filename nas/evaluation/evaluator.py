"""One interface for "how good is this architecture": real training or a zero-cost proxy.

A search loop holds an `Evaluator` and never asks which kind it is; a two-stage search ranks with a
`ProxyEvaluator` first and trains the best few with a `TrainingEvaluator`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from nas.evaluation.data import TrainingData, check_training_data
from nas.evaluation.proxy import PROXY_METHODS, ProxyMethod, proxy_score
from nas.evaluation.training import EpochCallback, TrainingRecipe, train_and_evaluate
from search_spaces.arch_spec import ArchSpec

MetricValue = float | int | bool | str


@dataclass(frozen=True)
class EvaluationResult:
    """`accuracy` is what a strategy ranks by: validation top-1 for training, the score for a proxy.

    `per_epoch` is the validation accuracy after each epoch (empty for a proxy); `metrics` holds
    the evaluator-specific details, JSON-ready.
    """

    accuracy: float
    per_epoch: tuple[float, ...]
    seconds: float
    metrics: dict[str, MetricValue] = field(default_factory=dict)


@runtime_checkable
class Evaluator(Protocol):
    def evaluate(self, spec: ArchSpec, on_epoch: EpochCallback | None = None) -> EvaluationResult: ...


class TrainingEvaluator:
    """Accuracy from a short training run (`train_and_evaluate`); `accuracy` is the last epoch's.

    A diverged run reports accuracy 0 rather than raising, so one bad candidate does not end a search.
    """

    def __init__(self, data: TrainingData, recipe: TrainingRecipe) -> None:
        check_training_data(data)
        self.data = data
        self.recipe = recipe

    def evaluate(self, spec: ArchSpec, on_epoch: EpochCallback | None = None) -> EvaluationResult:
        result = train_and_evaluate(spec, self.data, self.recipe, on_epoch)
        finite_losses = [loss for loss in result.epoch_train_losses if loss == loss]
        return EvaluationResult(
            accuracy=result.final_accuracy,
            per_epoch=tuple(result.epoch_accuracies),
            seconds=result.train_seconds,
            metrics={
                "kind": "training",
                "best_accuracy": result.best_accuracy,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early,
                "diverged": result.diverged,
                "final_train_loss": finite_losses[-1] if finite_losses else float("nan"),
            },
        )


class ProxyEvaluator:
    """A training-free score in place of accuracy (see `nas.evaluation.proxy`).

    The score is a ranking, not a probability: compare it only with scores of the same method, data
    and batch size. `on_epoch` is accepted for the protocol and never called (there are no epochs).
    """

    def __init__(self, data: TrainingData, method: ProxyMethod = "naswot", batch_size: int = 64, seed: int = 0) -> None:
        if method not in PROXY_METHODS:
            raise ValueError(f"unknown proxy method {method!r}; known: {', '.join(PROXY_METHODS)}")
        check_training_data(data)
        self.data = data
        self.method: ProxyMethod = method
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, spec: ArchSpec, on_epoch: EpochCallback | None = None) -> EvaluationResult:
        started = time.perf_counter()
        score = proxy_score(spec, self.data, batch_size=self.batch_size, seed=self.seed, method=self.method)
        return EvaluationResult(
            accuracy=score,
            per_epoch=(),
            seconds=time.perf_counter() - started,
            metrics={"kind": "proxy", "method": self.method, "score": score, "batch_size": self.batch_size},
        )
