"""Measuring candidates: short seeded training runs and zero-cost proxies."""

from nas.evaluation.data import ArrayData, TrainingData, check_spec_matches, check_training_data, spec_for_data
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
    "ProxyMethod",
    "TrainingData",
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
