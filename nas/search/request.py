"""What a user asks for when submitting a search, and the effort presets that size it."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from nas.evaluation.augmentation import AugmentMode
from search_spaces.space import SPACES

StrategyName = Literal["random", "evolution", "pareto", "supernet"]
"""`supernet`: one weight-sharing network trained once per dataset (and reused), then evolution over
thousands of its sub-networks scored with inherited weights; the rest search by training each candidate."""
EffortName = Literal["smoke", "quick", "default", "thorough"]


MIN_EPOCH_IMAGES = 1024
"""A search on a few hundred images (e.g. 4 classes x 70) trained 3 steps an epoch, 24 in its whole
final training, and every network stayed near chance (0.29 on 4 classes, tried as a new user would);
an epoch now sees at least this many images. Digits (1,078 train images) and photos are unchanged."""


class EffortPreset(BaseModel):
    """How much work a search does. Trials are sized for seconds of real training each on 2 cores."""

    model_config = ConfigDict(frozen=True)

    trials: int = Field(ge=1)
    epochs: int = Field(ge=1, description="training epochs per search trial (ASHA may stop a trial earlier)")
    final_epochs: int = Field(ge=1, description="training of the winner and of the baseline (training resolution)")
    deploy_epochs: int = Field(
        ge=0, description="fine-tuning of the winner and of the baseline at the deployment resolution"
    )
    netadapt_epochs: int = Field(ge=0, description="fine-tuning of each NetAdapt proposal")
    netadapt_iterations: int = Field(ge=0)
    max_train_images: int | None = None
    min_epoch_images: int | None = Field(
        default=MIN_EPOCH_IMAGES,
        description="an epoch over fewer train images repeats them (reshuffled) to see at least this many",
    )
    population_size: int = Field(ge=2)
    sample_size: int = Field(ge=1)


EFFORT_PRESETS: dict[str, EffortPreset] = {
    "smoke": EffortPreset(
        deploy_epochs=1,
        trials=4,
        epochs=1,
        final_epochs=2,
        netadapt_epochs=0,
        netadapt_iterations=8,
        max_train_images=256,
        min_epoch_images=None,
        population_size=2,
        sample_size=2,
    ),
    "quick": EffortPreset(
        deploy_epochs=3,
        trials=12,
        epochs=3,
        final_epochs=8,
        netadapt_epochs=1,
        netadapt_iterations=12,
        max_train_images=1024,
        population_size=4,
        sample_size=2,
    ),
    "default": EffortPreset(
        deploy_epochs=5,
        trials=24,
        epochs=5,
        final_epochs=15,
        netadapt_epochs=1,
        netadapt_iterations=20,
        population_size=8,
        sample_size=3,
    ),
    "thorough": EffortPreset(
        deploy_epochs=8,
        trials=80,
        epochs=8,
        final_epochs=40,
        netadapt_epochs=2,
        netadapt_iterations=40,
        population_size=20,
        sample_size=5,
    ),
}


MAX_WIDTHS = 16
"""Width multipliers a request may list: every width multiplies the lookup-table keys a search needs."""

DEFAULT_TRAIN_RESOLUTION = 32
"""Search trials train at this proxy size unless asked otherwise: on 2 cores a 32 px trial costs
seconds, a 128 px one sixteen times more; the winner is then fine-tuned at the deployment size."""


class SearchRequest(BaseModel):
    """A search: the best network of `space` for `dataset` whose latency on `device` is within budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(min_length=1, max_length=100)
    space: str = Field(default="mobilenet_v3_small", max_length=100)
    dataset: str = Field(min_length=1, max_length=500, description="'digits', 'synthetic[:opts]', or a dataset path")
    budget_ms: float = Field(gt=0, description="latency budget on the device, milliseconds")
    strategy: StrategyName = "evolution"
    effort: EffortName = "default"
    seed: int = Field(default=0, ge=0, lt=2**31)
    resolution: int = Field(
        default=32,
        ge=16,
        le=320,
        description="deployment input resolution: latency, budget, export and reported accuracy",
    )
    train_resolution: int | None = Field(
        default=None,
        ge=16,
        le=320,
        description=f"resolution the search's trials train at (a proxy; default min(resolution, "
        f"{DEFAULT_TRAIN_RESOLUTION})); at most `resolution`",
    )
    test_fraction: float = Field(
        default=0.2,
        ge=0.05,
        le=0.4,
        description="share of every class held out as the test set: never used to select anything, it is what "
        "the winner and the baseline report as test_accuracy (validation, 20%, selects)",
    )
    widths: tuple[float, ...] | None = Field(
        default=None, max_length=MAX_WIDTHS, description="width multipliers (default: the space's)"
    )
    reward: Literal["soft", "hard"] = "soft"
    netadapt: bool = True
    baseline: bool = True
    augment: AugmentMode = Field(
        default="auto",
        description="random changes to training batches: shift (moves and zooms of up to 1/8 and 10%), shift_flip "
        "(also mirror images; only where a mirrored image keeps its label), none; auto: shift when the train part "
        "is smaller than an epoch (a few hundred images), else none",
    )
    max_over_budget_ratio: float = Field(
        default=1.25,
        ge=1.0,
        le=10.0,
        description="train candidates predicted up to this factor over budget (NetAdapt shrinks the winner); "
        "without NetAdapt only candidates within budget are trained",
    )

    @field_validator("budget_ms")
    @classmethod
    def _finite_budget(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("budget_ms must be a finite positive number of milliseconds")
        return value

    @field_validator("space")
    @classmethod
    def _known_space(cls, value: str) -> str:
        if value not in SPACES:
            raise ValueError(f"unknown search space {value!r}; known: {', '.join(SPACES)}")
        return value

    @field_validator("train_resolution")
    @classmethod
    def _train_resolution_fits(cls, value: int | None, info: ValidationInfo) -> int | None:
        resolution = info.data.get("resolution")
        if value is not None and resolution is not None and value > resolution:
            raise ValueError(
                f"train_resolution {value} is above the deployment resolution {resolution}: "
                "trials train at a proxy size no larger than the size the network ships at"
            )
        return value

    @property
    def proxy_resolution(self) -> int:
        """The resolution search trials and NetAdapt's fine-tuning train at."""
        if self.train_resolution is not None:
            return self.train_resolution
        return min(self.resolution, DEFAULT_TRAIN_RESOLUTION)

    @property
    def preset(self) -> EffortPreset:
        return EFFORT_PRESETS[self.effort]

    @property
    def trials_total(self) -> int:
        """Candidates the search evaluates: trained trials, or a supernet's members scored."""
        if self.strategy == "supernet":
            from nas.search.supernet_search import SUPERNET_PLANS  # it imports this module

            return SUPERNET_PLANS[self.effort].evaluations
        return self.preset.trials
