"""How well a lookup table predicts real end-to-end latency.

The calibrated predictor is fitted on one set of measured networks and scored on another (never on
the networks it was fitted on), beside two baselines: the raw LUT sum and a linear model of MAdds
fitted on the same calibration set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from latency_lut.predictor import Calibration, LatencyPredictor
from search_spaces.arch_spec import ArchSpec
from search_spaces.counting import count_spec


@dataclass(frozen=True)
class PredictorScore:
    name: str
    n: int
    within_5pct: float
    within_10pct: float
    rmse_ms: float
    mean_abs_pct_error: float
    spearman: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AccuracyReport:
    device: str
    n_calibration: int
    n_evaluation: int
    calibration: Calibration
    scores: tuple[PredictorScore, ...]

    def score(self, name: str) -> PredictorScore:
        return next(score for score in self.scores if score.name == name)

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "n_calibration": self.n_calibration,
            "n_evaluation": self.n_evaluation,
            "calibration": self.calibration.to_dict(),
            "scores": {score.name: score.to_dict() for score in self.scores},
        }


def score_predictions(name: str, predicted: Sequence[float], measured: Sequence[float]) -> PredictorScore:
    pred = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(measured, dtype=np.float64)
    if len(pred) != len(true) or len(true) == 0:
        raise ValueError("need the same, non-zero number of predictions and measurements")
    rel = np.abs(pred / true - 1.0)
    rho = float(spearmanr(pred, true).statistic) if len(true) > 2 and np.ptp(pred) > 0 else float("nan")
    return PredictorScore(
        name=name,
        n=len(true),
        within_5pct=float(np.mean(rel <= 0.05)),
        within_10pct=float(np.mean(rel <= 0.10)),
        rmse_ms=float(np.sqrt(np.mean((pred - true) ** 2))),
        mean_abs_pct_error=float(100 * np.mean(rel)),
        spearman=rho,
    )


def accuracy_report(
    predictor: LatencyPredictor,
    calibration_set: Sequence[tuple[ArchSpec, float]],
    evaluation_set: Sequence[tuple[ArchSpec, float]],
) -> AccuracyReport:
    """Fit on `calibration_set` (spec, measured ms), score on `evaluation_set`."""
    if not evaluation_set:
        raise ValueError("the evaluation set is empty")
    cal_specs = [spec for spec, _ in calibration_set]
    cal_measured = [ms for _, ms in calibration_set]
    calibrated = predictor.fit(cal_specs, cal_measured) if calibration_set else predictor
    eval_specs = [spec for spec, _ in evaluation_set]
    measured = [ms for _, ms in evaluation_set]

    scores = [
        score_predictions("calibrated", [calibrated.predict_ms(spec) for spec in eval_specs], measured),
        score_predictions("lut_sum", [predictor.raw_sum_ms(spec) for spec in eval_specs], measured),
    ]
    if len(calibration_set) >= 2:
        madds = np.array([count_spec(spec).madds for spec in cal_specs], dtype=np.float64)
        slope, intercept = np.polyfit(madds, np.asarray(cal_measured), 1)
        eval_madds = np.array([count_spec(spec).madds for spec in eval_specs], dtype=np.float64)
        scores.append(score_predictions("madds_linear", slope * eval_madds + intercept, measured))
    return AccuracyReport(
        device=predictor.table.device.name,
        n_calibration=len(calibration_set),
        n_evaluation=len(evaluation_set),
        calibration=calibrated.calibration,
        scores=tuple(scores),
    )
