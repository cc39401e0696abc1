"""The NetAdapt loop (Yang et al. 2018), with MobileNetV3's choice rule.

Each iteration sets a latency-reduction target (a decaying fraction of the current latency, never
more than what the budget still needs). For every prunable group it proposes the widest width that
saves at least the target (fewest channels removed), prunes the current model to it, and lets the
caller fine-tune briefly and score it. The proposal kept is the one losing the least accuracy per
millisecond saved (MobileNetV3 section 4.2: largest accuracy change / latency change); its
fine-tuned model carries on to the next iteration. When no group can meet the target, the target is
relaxed to what the best group can save (at most half the old one), so many small groups still
make progress; the loop stops when the budget holds, when nothing can shrink, or after
`max_iterations`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from nas.netadapt.groups import ChannelGroup, apply_widths, candidate_widths, prunable_groups
from nas.netadapt.pruning import prune_model
from search_spaces.arch_spec import ArchSpec

LatencyFn = Callable[[ArchSpec], float]
EvaluateFn = Callable[[nn.Module, ArchSpec], float]


@dataclass(frozen=True)
class NetAdaptProposal:
    """One group narrowed in one iteration, after the caller's short fine-tune."""

    iteration: int
    group: str
    width_before: int
    width: int
    spec: ArchSpec
    latency_ms: float
    latency_saved_ms: float
    accuracy: float
    accuracy_change: float
    chosen: bool = False

    @property
    def score(self) -> float:
        """Accuracy change per millisecond saved (higher is better); NaN accuracy ranks last."""
        if math.isnan(self.accuracy_change):
            return -math.inf
        return self.accuracy_change / self.latency_saved_ms


@dataclass(frozen=True)
class NetAdaptStep:
    iteration: int
    latency_before_ms: float
    target_ms: float
    relaxed: bool
    proposals: tuple[NetAdaptProposal, ...]
    chosen: NetAdaptProposal


@dataclass
class NetAdaptResult:
    spec: ArchSpec
    model: nn.Module
    latency_ms: float
    accuracy: float | None
    met_budget: bool
    stop_reason: str
    initial_latency_ms: float
    steps: list[NetAdaptStep] = field(default_factory=list)
    final_accuracy: float | None = None

    @property
    def history(self) -> list[NetAdaptProposal]:
        """Every proposal of every iteration (chosen or not), in order: candidates to store."""
        return [proposal for step in self.steps for proposal in step.proposals]

    @property
    def iterations(self) -> int:
        return len(self.steps)


class _Pricer:
    """`latency_ms` memoised by spec: the scan of widths asks for the same specs again after a relaxed target."""

    def __init__(self, latency_ms: LatencyFn) -> None:
        self.latency_ms = latency_ms
        self.cache: dict[str, float] = {}

    def __call__(self, spec: ArchSpec) -> float:
        digest = spec.content_hash()
        if digest not in self.cache:
            self.cache[digest] = float(self.latency_ms(spec))
        return self.cache[digest]


def _widest_meeting(
    spec: ArchSpec, group: ChannelGroup, current_ms: float, target_ms: float, price: _Pricer
) -> tuple[int, ArchSpec, float, float]:
    """(width, spec, latency, best saving seen): the widest width saving >= target, or width 0 if none."""
    best_saving = -math.inf
    for width in candidate_widths(spec, group):
        narrowed = apply_widths(spec, group, width)
        latency = price(narrowed)
        saving = current_ms - latency
        best_saving = max(best_saving, saving)
        if saving >= target_ms:
            return width, narrowed, latency, best_saving
    return 0, spec, current_ms, best_saving


def netadapt(
    spec: ArchSpec,
    model: nn.Module,
    latency_ms: LatencyFn,
    budget_ms: float,
    evaluate: EvaluateFn,
    *,
    initial_reduction: float = 0.05,
    reduction_decay: float = 0.98,
    max_iterations: int = 50,
    on_step: Callable[[NetAdaptStep], None] | None = None,
    initial_accuracy: float | None = None,
    fine_tune: EvaluateFn | None = None,
) -> NetAdaptResult:
    """Shrink `spec` (trained as `model`) until `latency_ms` says it fits `budget_ms`.

    `evaluate(pruned_model, pruned_spec)` fine-tunes a proposal briefly (in place) and returns its
    accuracy; it is also called once on the starting model unless `initial_accuracy` is given.
    `fine_tune`, if given, is the long fine-tune of the final model; its accuracy is
    `final_accuracy`. The caller's `model` is never modified.
    """
    if not 0 < initial_reduction < 1 or not 0 < reduction_decay <= 1:
        raise ValueError("initial_reduction must be within (0, 1) and reduction_decay within (0, 1]")
    price = _Pricer(latency_ms)
    current_spec, current_model = spec, copy.deepcopy(model)
    current_ms = start_ms = price(spec)
    accuracy = initial_accuracy
    steps: list[NetAdaptStep] = []
    reduction = initial_reduction
    stop_reason = "budget met"
    while current_ms > budget_ms:
        if len(steps) >= max_iterations:
            stop_reason = "max_iterations reached"
            break
        if accuracy is None:
            accuracy = float(evaluate(current_model, current_spec))
        groups = prunable_groups(current_spec)
        target = min(reduction * current_ms, current_ms - budget_ms)
        relaxed = False
        found = [(group, *_widest_meeting(current_spec, group, current_ms, target, price)) for group in groups]
        if not any(width for _, width, *_ in found):
            best_saving = max((saving for *_, saving in found), default=-math.inf)
            if best_saving <= 0:
                stop_reason = "no narrower width lowers the latency" if groups else "no group can shrink further"
                break
            target, relaxed = min(target / 2, best_saving), True
            found = [(group, *_widest_meeting(current_spec, group, current_ms, target, price)) for group in groups]
        proposals: list[NetAdaptProposal] = []
        best, best_model = -1, current_model
        for group, width, narrowed, latency, _ in found:
            if not width:
                continue
            pruned = prune_model(current_model, current_spec, narrowed)
            score = float(evaluate(pruned, narrowed))
            proposals.append(
                NetAdaptProposal(
                    iteration=len(steps),
                    group=group.name,
                    width_before=group.width,
                    width=width,
                    spec=narrowed,
                    latency_ms=latency,
                    latency_saved_ms=current_ms - latency,
                    accuracy=score,
                    accuracy_change=score - accuracy,
                )
            )
            if best < 0 or proposals[-1].score > proposals[best].score:
                best, best_model = len(proposals) - 1, pruned  # only the leading model stays in memory
        proposals[best] = chosen = replace(proposals[best], chosen=True)
        step = NetAdaptStep(len(steps), current_ms, target, relaxed, tuple(proposals), chosen)
        steps.append(step)
        current_spec, current_model, current_ms, accuracy = chosen.spec, best_model, chosen.latency_ms, chosen.accuracy
        reduction *= reduction_decay
        if on_step is not None:
            on_step(step)
    result = NetAdaptResult(
        spec=current_spec,
        model=current_model,
        latency_ms=current_ms,
        accuracy=accuracy,
        met_budget=current_ms <= budget_ms,
        stop_reason=stop_reason,
        initial_latency_ms=start_ms,
        steps=steps,
    )
    if fine_tune is not None:
        result.final_accuracy = float(fine_tune(current_model, current_spec))
    return result
