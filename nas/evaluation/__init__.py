"""Measuring candidates: short seeded training runs, zero-cost proxies, and one `Evaluator` interface over both."""

from nas.evaluation.data import ArrayData, TrainingData, check_spec_matches, check_training_data, spec_for_data
from nas.evaluation.evaluator import EvaluationResult, Evaluator, ProxyEvaluator, TrainingEvaluator
from nas.evaluation.proxy import PROXY_METHODS, ProxyMethod, naswot_score, proxy_score, synflow_score
from nas.evaluation.training import (
    EpochCallback,
    TrainingRecipe,
    TrainingResult,
    evaluate_accuracy,
    fine_tune,
    train_and_evaluate,
)

__all__ = [
    "PROXY_METHODS",
    "ArrayData",
    "EpochCallback",
    "EvaluationResult",
    "Evaluator",
    "ProxyEvaluator",
    "ProxyMethod",
    "TrainingData",
    "TrainingEvaluator",
    "TrainingRecipe",
    "TrainingResult",
    "check_spec_matches",
    "check_training_data",
    "evaluate_accuracy",
    "fine_tune",
    "naswot_score",
    "proxy_score",
    "spec_for_data",
    "synflow_score",
    "train_and_evaluate",
]
