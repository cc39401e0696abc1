"""Weight sharing: one supernet trained once, every member of a search space scored with its weights.

`train_supernet` trains a `SuperNet` with the sandwich rule; `InheritedEvaluator` (or
`inherited_accuracy`) scores members after BatchNorm recalibration; `SuperNet.extract` copies a
member out as a plain network; `save_supernet` / `load_supernet` keep the trained artifact.
"""

from nas.supernet.artifact import SupernetFileError, load_supernet, save_supernet, space_fingerprint, space_key
from nas.supernet.evaluate import (
    DEFAULT_CALIBRATION_IMAGES,
    InheritedEvaluator,
    InheritedScore,
    calibrated_network,
    calibration_subset,
    inherited_accuracy,
)
from nas.supernet.model import (
    Architecture,
    SuperNet,
    UnsupportedSpaceError,
    supports_weight_sharing,
    weight_sharing_problem,
)
from nas.supernet.training import SupernetEpochCallback, SupernetRecipe, SupernetTrainingResult, train_supernet

__all__ = [
    "DEFAULT_CALIBRATION_IMAGES",
    "Architecture",
    "InheritedEvaluator",
    "InheritedScore",
    "SuperNet",
    "SupernetEpochCallback",
    "SupernetFileError",
    "SupernetRecipe",
    "SupernetTrainingResult",
    "UnsupportedSpaceError",
    "calibrated_network",
    "calibration_subset",
    "inherited_accuracy",
    "load_supernet",
    "save_supernet",
    "space_fingerprint",
    "space_key",
    "supports_weight_sharing",
    "train_supernet",
    "weight_sharing_problem",
]
