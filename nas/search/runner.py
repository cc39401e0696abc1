"""One search, start to finish: data, LUT, budgeted search on Ray Tune, NetAdapt, final training,
export, and the MobileNetV3-Small baseline.

The runner talks to the outside world only through a `SearchRecorder` (store candidates and events,
report progress, say whether to stop), so it runs the same from the database-backed worker, from a
script, or from a test.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from latency_lut.kit_runner import TimingPolicy
from latency_lut.predictor import LatencyPredictor, MissingKeysError
from latency_lut.profiler import measure_network
from latency_lut.table import LatencyTable, LutEntry
from nas.datasets import DatasetSplit, ImageDataset, load_dataset, split_dataset
from nas.evaluation.augmentation import resolve_augment
from nas.evaluation.training import TrainingRecipe, evaluate_accuracy, fine_tune, train_and_evaluate
from nas.export import write_download
from nas.netadapt.pricing import InterpolationError, interpolate_from
from nas.search.execution import TrialRecord, TuneSettings, run_trials
from nas.search.request import SearchRequest
from nas.search.supernet_search import SupernetPhase, SupernetStore
from nas.strategies import Observation, make_strategy
from search_spaces.arch_spec import ArchSpec
from search_spaces.counting import count_spec
from search_spaces.onnx_export import check_parity
from search_spaces.reference import WIDTH_RANGE, reference_spec
from search_spaces.space import SearchSpace, get_space


class BudgetUnreachableError(ValueError):
    def __init__(self, budget_ms: float, fastest_ms: float, device: str) -> None:
        self.fastest_ms = fastest_ms
        super().__init__(
            f"budget_ms {budget_ms:g} is below the smallest latency this space can reach on device {device!r} "
            f"({fastest_ms:.4g} ms)"
        )


class SearchCancelled(Exception):
    """The search was asked to stop (cancel, or another worker took it over)."""


@dataclass(frozen=True)
class CandidateRecord:
    arch_hash: str
    spec: ArchSpec
    genome: list[int] | None
    phase: str
    status: str
    predicted_ms: float
    accuracy: float | None
    accuracies: list[float]
    train_seconds: float | None
    trial_id: str | None = None
    error: str | None = None
    evaluation: str = "trained"
    """"trained" (its own weights) or "inherited" (scored with a supernet's shared weights)."""


@dataclass(frozen=True)
class ArchitectureRecord:
    role: str
    spec: ArchSpec
    predicted_ms: float
    measured_ms: float | None
    accuracy: float
    accuracies: list[float]
    artifact_dir: Path
    files: dict[str, str]
    parity_max_abs_diff: float
    test_accuracy: float | None = None
    """On the held-out test images (never used to select), at the deployment resolution."""
    test_indices: tuple[int, ...] = ()
    """Positions of the test images in the dataset as loaded."""
    initial_weights: str = "random"
    """What the final training started from: "random", or "supernet" (the weights the member inherits)."""


@dataclass
class SearchOutcome:
    winner: ArchitectureRecord
    baseline: ArchitectureRecord | None
    trials: int
    over_budget_skipped: int
    fastest_ms: float
    summary: dict[str, Any] = field(default_factory=dict)


class SearchRecorder(Protocol):
    def stored_candidates(self, phase: str) -> list[CandidateRecord]: ...

    def record_candidate(self, candidate: CandidateRecord) -> None: ...

    def event(self, kind: str, message: str, data: dict | None = None, level: str = "info") -> None: ...

    def progress(self, phase: str, fraction: float, trials_done: int, trials_total: int, skipped: int) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class MemoryRecorder:
    """Keeps everything in lists: for scripts, benchmarks and tests."""

    candidates: list[CandidateRecord] = field(default_factory=list)
    events: list[tuple[str, str, dict | None]] = field(default_factory=list)
    stop: Callable[[], bool] = lambda: False
    echo: bool = False

    def stored_candidates(self, phase: str) -> list[CandidateRecord]:
        return [c for c in self.candidates if c.phase == phase]

    def record_candidate(self, candidate: CandidateRecord) -> None:
        self.candidates.append(candidate)

    def event(self, kind: str, message: str, data: dict | None = None, level: str = "info") -> None:
        self.events.append((kind, message, data))
        if self.echo:
            print(f"[{kind}] {message}", flush=True)

    def progress(self, phase: str, fraction: float, trials_done: int, trials_total: int, skipped: int) -> None:
        return None

    def should_stop(self) -> bool:
        return self.stop()


# --- set-up ------------------------------------------------------------------------------------------


def load_split(
    request: SearchRequest, resolution: int | None = None, dataset: ImageDataset | None = None
) -> DatasetSplit:
    """The request's dataset, split and resized to `resolution` (default: the deployment resolution);
    grayscale is repeated to RGB (the spaces take 3 channels). The split depends only on the data and
    the seed, so the training-resolution and deployment-resolution splits hold the same images."""
    dataset = dataset if dataset is not None else load_dataset(request.dataset)
    size = request.resolution if resolution is None else resolution
    split = split_dataset(
        dataset, val_fraction=VAL_FRACTION, seed=request.seed, resolution=size, test_fraction=request.test_fraction
    )
    if split.in_channels == 3:
        return split
    repeat = lambda x: np.ascontiguousarray(np.repeat(x, 3, axis=1))  # noqa: E731
    return replace(
        split,
        in_channels=3,
        x_train=repeat(split.x_train),
        x_val=repeat(split.x_val),
        x_test=repeat(split.x_test),
        mean=tuple(split.mean) * 3,
        std=tuple(split.std) * 3,
    )


VAL_FRACTION = 0.2
"""Share of every class that selects (search trials, NetAdapt); the request's test_fraction is held out apart."""


def search_space_for(request: SearchRequest, num_classes: int) -> SearchSpace:
    return get_space(request.space).with_options(
        resolutions=[request.resolution], widths=request.widths, num_classes=num_classes
    )


def training_recipe(request: SearchRequest, epochs: int, lr: float = 4e-3) -> TrainingRecipe:
    preset = request.preset
    return TrainingRecipe(
        epochs=epochs,
        batch_size=64,
        optimizer="adamw",
        lr=lr,
        weight_decay=0.02,
        label_smoothing=0.1,
        seed=request.seed,
        max_train_images=preset.max_train_images,
        min_epoch_images=preset.min_epoch_images,
        augment=request.augment,
    )


# --- the phases --------------------------------------------------------------------------------------


def check_budget(
    request: SearchRequest, predictor: LatencyPredictor, space: SearchSpace, *, missing_ok: bool = False
) -> float | None:
    """The one budget check, made at submission and again when a worker starts the search.

    The device's table must cover the space (with `missing_ok`, a device some machine measures may lack
    keys: its worker profiles them first, and None is returned), and the budget must be at least the
    fastest network the space can reach on the device. Returns that fastest latency (ms).
    """
    device = predictor.table.device.name
    missing = predictor.table.missing_keys(space.block_keys())
    if missing and not missing_ok:
        raise MissingKeysError(device, missing, space=request.space, resolution=request.resolution)
    if missing:
        # Keys the worker will profile (e.g. the classifier for this dataset's class count) cost at least
        # nothing: the fastest network priced without them is a lower bound, and a budget below it is
        # refused now rather than after the worker profiled and calibrated.
        at_least = LatencyTable(predictor.table.device, predictor.table.entries)
        for key in missing:
            at_least.add(key, LutEntry(0.0, 0.0, 1, "lower bound"))
        # (A calibration's scale is positive, so a smaller sum never prices higher.)
        lower_bound, _ = LatencyPredictor(at_least, predictor.calibration).pricer(space).fastest()
        if request.budget_ms < lower_bound:
            raise BudgetUnreachableError(request.budget_ms, lower_bound, device)
        return None
    fastest_ms, _ = predictor.pricer(space).fastest()
    if request.budget_ms < fastest_ms:
        raise BudgetUnreachableError(request.budget_ms, fastest_ms, device)
    return fastest_ms


@dataclass
class _Run:
    """What the phases of one search share."""

    request: SearchRequest
    predictor: LatencyPredictor
    recorder: SearchRecorder
    artifact_dir: Path
    measure_locally: bool
    measure: Callable[[ArchSpec], float] | None
    latency_of: Callable[[ArchSpec], float]
    dataset: ImageDataset
    split: DatasetSplit
    space: SearchSpace
    pricer: Any
    round_latency_of: Callable[[ArchSpec], float]
    fastest_ms: float
    trials_done: int = 0
    skipped: int = 0
    inherited_network: Callable[[ArchSpec], torch.nn.Module | None] | None = None
    """A supernet search's trained supernet, as `SupernetPhase.inherited_network`: the winner's start."""

    def progress(self, phase: str, fraction: float) -> None:
        self.recorder.progress(phase, fraction, self.trials_done, self.request.trials_total, self.skipped)

    def stop_if_asked(self, where: str) -> None:
        if self.recorder.should_stop():
            raise SearchCancelled(f"stopped {where}")

    @property
    def evaluate(self) -> Callable[[ArchSpec, Callable[[int, float, float], bool | None]], Any]:
        return _trial_evaluator(self.split, training_recipe(self.request, self.request.preset.epochs))


def _trial_evaluator(
    split: DatasetSplit, recipe: TrainingRecipe
) -> Callable[[ArchSpec, Callable[[int, float, float], bool | None]], Any]:
    """A search trial: train at the proxy resolution (latency is priced at the deployment one). A closure
    over the data and the recipe only: Ray ships it to the trials' processes."""

    def evaluate(spec: ArchSpec, on_epoch: Callable[[int, float, float], bool | None]) -> Any:
        return train_and_evaluate(spec.with_resolution(split.resolution), split, recipe, on_epoch=on_epoch)

    return evaluate


def run_search(
    request: SearchRequest,
    predictor: LatencyPredictor,
    recorder: SearchRecorder,
    artifact_dir: Path,
    *,
    measure_locally: bool,
    threads: int = 1,
    latency_for_missing: MissingLatencies | None = None,
    measure: Callable[[ArchSpec], float] | None = None,
    supernets: SupernetStore | None = None,
) -> SearchOutcome:
    """Run a whole search. `predictor` must cover the space at the request's resolution.

    `measure_locally`: the device is this machine, so the winner's and the baseline's latency are
    measured end to end (and `latency_for_missing` may profile keys NetAdapt needs on demand), and
    the budget is held against those measurements, not only against the prediction: a winner that
    measures over budget is shrunk further (or, without NetAdapt, replaced by the most accurate
    candidate that measures within it). `measure` replaces the end-to-end measurement (tests).

    The phases, each a function below: set-up (data, split, the budget check), search (Ray Tune
    trials, or a supernet), shrink (NetAdapt and the measured budget), final training and export, the
    baseline, the summary. A cancel (or a lost claim) is honoured in every phase: between trials, between
    NetAdapt proposals, between training epochs, and before each phase.
    """
    if measure is None and measure_locally:
        measure = lambda spec: measure_network(spec, threads, TimingPolicy()).median_ms  # noqa: E731
    started = time.perf_counter()
    run = _set_up(request, predictor, recorder, artifact_dir, measure_locally, measure, latency_for_missing)
    strategy = _search_phase(run, supernets)
    winner_spec = _shrink_phase(run, strategy)
    finisher = _Finisher(
        run.split,
        training_recipe(request, request.preset.final_epochs),
        run.latency_of,
        artifact_dir,
        measure,
        recorder,
        deploy=_DeploymentData(request, run.dataset, run.split),
        # On this machine a measurement costs a second; on a remote device it is a job someone runs.
        width_by_measurement=measure_locally,
        budget_ms=request.budget_ms,
        initial=run.inherited_network,
    )
    run.stop_if_asked("before final training")
    run.progress("final", 0.85)
    winner = finisher.finish("winner", winner_spec)
    baseline = None
    if request.baseline:
        run.stop_if_asked("before the baseline")
        run.progress("final", 0.93)
        baseline = finisher.baseline(request)
    outcome = SearchOutcome(
        winner=winner,
        baseline=baseline,
        trials=run.trials_done,
        over_budget_skipped=run.skipped,
        fastest_ms=run.fastest_ms,
    )
    outcome.summary = summarize(outcome, request, time.perf_counter() - started)
    recorder.event("done", _summary_line(outcome.summary), outcome.summary)
    run.progress("done", 1.0)
    return outcome


def _set_up(
    request: SearchRequest,
    predictor: LatencyPredictor,
    recorder: SearchRecorder,
    artifact_dir: Path,
    measure_locally: bool,
    measure: Callable[[ArchSpec], float] | None,
    latency_for_missing: MissingLatencies | None,
) -> _Run:
    """Data, split at the proxy resolution, the space, and the budget check."""
    preset = request.preset
    proxy = request.proxy_resolution
    dataset = load_dataset(request.dataset)
    # Trials train at the proxy resolution; latency is always priced at the deployment resolution.
    split = load_split(request, proxy, dataset)
    space = search_space_for(request, split.num_classes)
    fastest_ms = check_budget(request, predictor, space)
    assert fastest_ms is not None  # missing keys raise without missing_ok
    n_train = min(len(split.x_train), preset.max_train_images or len(split.x_train))
    augment = resolve_augment(request.augment, n_train, preset.min_epoch_images)
    recorder.event(
        "start",
        f"{request.strategy} search of {space.name} for {split.name} at {request.resolution} px "
        f"(trials train at {proxy} px) "
        f"({split.num_classes} classes), budget {request.budget_ms:g} ms on {predictor.table.device.name}; "
        f"{n_train} train images, augmentation {augment}",
        {
            "fastest_ms": fastest_ms,
            "trials": preset.trials,
            "resolution": request.resolution,
            "train_resolution": proxy,
            "train_images": n_train,
            "augment": augment,
        },
    )
    return _Run(
        request=request,
        predictor=predictor,
        recorder=recorder,
        artifact_dir=Path(artifact_dir),
        measure_locally=measure_locally,
        measure=measure,
        latency_of=_latency_function(predictor, latency_for_missing),
        round_latency_of=_estimating_latency(predictor, latency_for_missing),
        dataset=dataset,
        split=split,
        space=space,
        pricer=predictor.pricer(space),
        fastest_ms=fastest_ms,
    )


def _search_phase(run: _Run, supernets: SupernetStore | None) -> Any:
    """Budgeted search through Ray Tune (or a supernet); returns the strategy with its history."""
    request = run.request
    if request.strategy == "supernet":
        phase = SupernetPhase(
            request,
            run.space,
            run.dataset,
            run.split,
            run.pricer.predict_ms,
            run.recorder,
            supernets or SupernetStore(run.artifact_dir.parent / "supernets"),
            run.evaluate,
            _supernet_candidate,
        )
        strategy, run.trials_done = phase.run()
        run.inherited_network = phase.inherited_network
    else:
        strategy, run.trials_done = _strategy_search(
            request, run.space, run.split, run.pricer, run.recorder, run.evaluate
        )
    run.skipped = strategy.rejected_over_budget
    return strategy


def _shrink_phase(run: _Run, strategy: Any) -> ArchSpec:
    """The search's pick, shrunk by NetAdapt when it is over budget and held to the measured budget."""
    request, recorder = run.request, run.recorder
    best = _choose_best(strategy, request)
    if best is None:
        raise RuntimeError("no trial reported an accuracy; see the search's events for the trials' errors")
    winner_spec = run.space.decode(best.genome)
    recorder.event(
        "search_done",
        f"best of {run.trials_done} trials: acc {best.accuracy:.3f} at {best.latency_ms:.3f} ms "
        f"({strategy.rejected_over_budget} proposals over budget were never trained)",
        {"over_budget_skipped": strategy.rejected_over_budget},
    )
    run.stop_if_asked("after the search phase")
    pruned_chain = [winner_spec]
    if request.netadapt and run.latency_of(winner_spec) > request.budget_ms:
        run.progress("netadapt", 0.75)
        pruned_chain = _run_netadapt(request, run.split, winner_spec, run.latency_of, recorder)
        winner_spec = pruned_chain[-1]
    if run.measure is not None:
        run.stop_if_asked("before measuring the winner")
        run.progress("final", 0.82)
        winner_spec = _meet_measured_budget(
            request, run.split, run.space, strategy, winner_spec, run.latency_of, run.measure, recorder,
            pruned_from=pruned_chain[:-1], round_latency_of=run.round_latency_of,
        )  # fmt: skip
    return winner_spec


def _strategy_search(
    request: SearchRequest,
    space: SearchSpace,
    split: DatasetSplit,
    pricer: Any,
    recorder: SearchRecorder,
    evaluate: Callable[[ArchSpec, Callable[[int, float, float], bool | None]], Any],
) -> tuple[Any, int]:
    """The ask/tell strategies' search phase: every candidate trained as a Ray Tune trial."""
    preset = request.preset
    strategy_kwargs: dict[str, Any] = {}
    if request.strategy in ("evolution", "pareto"):
        strategy_kwargs["population_size"] = preset.population_size
    if request.strategy == "evolution":
        strategy_kwargs["sample_size"] = preset.sample_size
    strategy = make_strategy(
        request.strategy,
        space=space,
        budget_ms=request.budget_ms,
        price=pricer.predict_ms,
        seed=request.seed,
        # Without NetAdapt nothing can shrink a candidate over the budget: training one is wasted.
        max_over_budget_ratio=request.max_over_budget_ratio if request.netadapt else 1.0,
        reward_mode=request.reward,
        **strategy_kwargs,
    )
    done = recorder.stored_candidates("search")
    strategy.replay([_observation(space, c) for c in done if c.genome is not None])
    if done:
        recorder.event("resume", f"rebuilt the strategy from {len(done)} stored candidates; none is trained again")
    trials_done = len(done)

    def on_finished(trial: TrialRecord) -> None:
        nonlocal trials_done
        trials_done += 1
        record = CandidateRecord(
            arch_hash=trial.spec.content_hash(),
            spec=trial.spec,
            genome=trial.genome,
            phase="search",
            status=trial.status,
            predicted_ms=trial.predicted_ms,
            accuracy=trial.accuracy,
            accuracies=trial.accuracies,
            train_seconds=trial.train_seconds,
            trial_id=trial.trial_id,
            error=trial.error,
        )
        recorder.record_candidate(record)
        accuracy = "-" if trial.accuracy is None else f"{trial.accuracy:.3f}"
        recorder.event(
            "trial",
            f"{trial.status} acc {accuracy} at {trial.predicted_ms:.3f} ms: {trial.spec.to_string()[:120]}",
            {"arch_hash": record.arch_hash, "accuracy": trial.accuracy, "predicted_ms": trial.predicted_ms},
        )
        recorder.progress(
            "search", 0.7 * trials_done / preset.trials, trials_done, preset.trials, strategy.rejected_over_budget
        )

    cpus = max(1, os.cpu_count() or 1)
    run_trials(
        strategy,
        space,
        pricer.predict_ms,
        evaluate,
        preset.trials - trials_done,
        TuneSettings(epochs=preset.epochs, max_concurrent=cpus, cpus_per_trial=1.0),
        on_finished,
        should_stop=recorder.should_stop,
    )
    if recorder.should_stop():
        raise SearchCancelled("stopped between trials")
    return strategy, trials_done


def _supernet_candidate(
    genome: Any, spec: ArchSpec, predicted_ms: float, accuracy: float | None, evaluation: str, trial: Any
) -> CandidateRecord:
    """A supernet search's candidate: a member scored with inherited weights, or a short-listed one trained."""
    return CandidateRecord(
        arch_hash=spec.content_hash(),
        spec=spec,
        genome=[int(g) for g in genome],
        phase="search",
        status=trial.status if trial is not None else "completed",
        predicted_ms=predicted_ms,
        accuracy=accuracy,
        accuracies=list(trial.accuracies) if trial is not None else ([accuracy] if accuracy is not None else []),
        train_seconds=trial.train_seconds if trial is not None else None,
        trial_id=trial.trial_id if trial is not None else None,
        error=trial.error if trial is not None else None,
        evaluation=evaluation,
    )


def _choose_best(strategy: Any, request: SearchRequest) -> Observation | None:
    """The search phase's pick: the most accurate completed candidate predicted within the budget.

    The MnasNet reward steers the search (a soft reward lets it explore networks slightly over the
    budget), but what a user asked for is the best network *within* the budget, so a feasible
    candidate always wins. Only when no completed candidate fits does the reward's pick go on to
    NetAdapt, which shrinks it to the budget.
    """
    feasible = [
        o
        for o in strategy.history
        if o.status == "completed" and o.accuracy is not None and o.latency_ms <= request.budget_ms
    ]
    if feasible:
        return max(feasible, key=lambda o: (o.accuracy, -o.latency_ms))
    return strategy.best() or _best_partial(strategy.history, request)


MEASURED_ROUNDS = 3
"""How many times a winner that measures over budget is shrunk again (or replaced) before giving up."""

REMEASURES = 2
"""A network that measures over budget is measured again up to this many times and keeps its lowest
median: on a shared machine interference only adds time (session 7, back to back, one network's median
ranged 0.124-0.149 ms, IQR 20-40% of it), and one unlucky median had cost a NetAdapt round (minutes)
and a network pruned far below the budget."""


def lowest_of_measurements(measure: Callable[[ArchSpec], float], budget_ms: float) -> Callable[[ArchSpec], float]:
    """`measure`, repeated (at most REMEASURES more times) while the lowest result is over `budget_ms`."""

    def measured(spec: ArchSpec) -> float:
        lowest = measure(spec)
        for _ in range(REMEASURES):
            if lowest <= budget_ms:
                break
            lowest = min(lowest, measure(spec))
        return lowest

    return measured


ROUND_MARGIN = 0.03
"""A measured round prunes to this share under the budget (the machine's re-measurement noise, session 8:
+1.1% to +2.5% back to back), so its network rarely lands over it by a hair."""

WALK_BACK_BELOW = 0.9
"""A network NetAdapt pruned that measures under this share of the budget is walked back (see
`_walk_back`). Session 7: rescaled by one measured/predicted ratio, pruned networks measured 2-5x under
the budget (0.04-0.09 ms against 0.218) and lost 5-45 points of accuracy they did not need to lose."""


def _meet_measured_budget(
    request: SearchRequest,
    split: DatasetSplit,
    space: SearchSpace,
    strategy: Any,
    spec: ArchSpec,
    latency_of: Callable[[ArchSpec], float],
    measure: Callable[[ArchSpec], float],
    recorder: SearchRecorder,
    pruned_from: Sequence[ArchSpec] = (),
    round_latency_of: Callable[[ArchSpec], float] | None = None,
) -> ArchSpec:
    """Hold the budget against an end-to-end measurement on this machine.

    The LUT predicts a network as a sum of its layers plus a calibration fitted on a handful of
    networks; for tiny inputs (per-call overhead dominates) a near-budget winner can still measure
    10-30% over. NetAdapt's own papers prune against measured latency, so this does the same: the
    ratio measured / predicted of the winner rescales the predictor for this network's family and
    NetAdapt runs again to the rescaled budget, re-measuring until it fits. Without NetAdapt, the
    completed candidates are tried most accurate first and the first that measures within budget wins.

    `pruned_from`: the networks NetAdapt already went through to reach `spec` (least pruned first,
    each one iteration wider than the next). Whenever the pruned network measures well under the
    budget, the chain is walked back to the least-pruned network that measures within it.

    `round_latency_of`: what NetAdapt's measured rounds price with (default `latency_of`), e.g.
    `_estimating_latency`: a round's prices are rescaled by a measurement and its result is measured.
    """
    budget = request.budget_ms
    measure = lowest_of_measurements(measure, budget)
    chain = [*pruned_from, spec]
    measured = measure(spec)
    predicted = latency_of(spec)
    data = {"predicted_ms": predicted, "measured_ms": measured, "budget_ms": budget}
    if measured <= budget:
        recorder.event("measure", f"winner measures {measured:.4f} ms (predicted {predicted:.4f}): within budget", data)
        return _walk_back(chain, -1, measured, measure, budget, recorder)
    recorder.event(
        "measure",
        f"winner measures {measured:.4f} ms, over the {budget:g} ms budget (predicted {predicted:.4f}); "
        "trying the next candidates" + (", then pruning it against the measurement" if request.netadapt else ""),
        data,
        level="warning",
    )
    if not request.netadapt:
        return _first_measured_within(request, space, strategy, spec, measured, measure, recorder)
    alternative = _alternative_within(request, space, strategy, spec, measured / predicted, measure, recorder)
    if alternative is not None:
        return alternative
    price = round_latency_of or latency_of
    for round_number in range(1, MEASURED_ROUNDS + 1):
        over = len(chain) - 1
        ratio = measured / price(spec)
        corrected = lambda s, r=ratio: price(s) * r  # noqa: E731
        # A round trims a few percent: which layer to narrow is told well enough by its accuracy right
        # after pruning (no fine-tuning; the winner is trained from scratch anyway), and it aims a
        # little under the budget, so that one round is usually enough (session 8: a round with
        # fine-tuned proposals cost 100-155 s, and a network 0.7% over the budget needed a second).
        target = budget * (1 - ROUND_MARGIN)
        chain += _run_netadapt(request, split, spec, corrected, recorder, budget_ms=target, fine_tune_epochs=0)[1:]
        spec = chain[-1]
        measured = measure(spec)
        recorder.event(
            "measure",
            f"round {round_number}: pruned to {measured:.4f} ms measured (predicted x{ratio:.3f} = "
            f"{corrected(spec):.4f})",
            {"measured_ms": measured, "ratio": ratio, "round": round_number},
        )
        if measured <= budget:
            return _walk_back(chain, over, measured, measure, budget, recorder)
    recorder.event(
        "measure",
        f"NetAdapt's network still measures {measured:.4f} ms after {MEASURED_ROUNDS} rounds; "
        "trying the search's candidates",
        level="warning",
    )
    return _first_measured_within(request, space, strategy, spec, measured, measure, recorder)


def _walk_back(
    chain: Sequence[ArchSpec],
    over: int,
    last_ms: float,
    measure: Callable[[ArchSpec], float],
    budget_ms: float,
    recorder: SearchRecorder,
) -> ArchSpec:
    """The least-pruned network of `chain` that measures within budget, found by bisection.

    `chain` runs from least to most pruned (NetAdapt's iterations); its last network measured
    `last_ms`, within budget; `chain[over]` measured over it (-1: none was measured). Latency falls
    along the chain, so a bisection finds the boundary in log2(len) measurements. Nothing happens
    when the last network is already close to the budget (>= WALK_BACK_BELOW of it).
    """
    within = len(chain) - 1
    if within - over <= 1 or last_ms >= WALK_BACK_BELOW * budget_ms:
        return chain[within]
    start, within_ms, measurements = within, last_ms, 0
    while within - over > 1:
        middle = (over + within) // 2
        middle_ms = measure(chain[middle])
        measurements += 1
        if middle_ms <= budget_ms:
            within, within_ms = middle, middle_ms
        else:
            over = middle
    recorder.event(
        "measure",
        (
            f"walked back {start - within} of NetAdapt's iterations ({measurements} measurements): the least-pruned "
            f"network within budget measures {within_ms:.4f} ms (the most pruned {last_ms:.4f})"
            if within != start
            else f"NetAdapt's last network is the least pruned within budget ({measurements} measurements)"
        ),
        {"measured_ms": within_ms, "walked_back": start - within, "measurements": measurements},
    )
    return chain[within]


ALTERNATIVES = 3
"""Before NetAdapt prunes against a measurement, up to this many of the search's other candidates that
the measurement-corrected prediction puts within budget are measured, most accurate first, and the first
within budget wins. A measurement costs a second or two; a measured NetAdapt round cost 55-280 s in
session 8 and, at 32 px, barely moved the measured latency (0.2466 -> 0.2447 -> 0.2418 ms while the
prediction fell 10%). Every winner is trained again afterwards, so a candidate loses nothing by
not being the search's first pick but its rank."""


def ranked_candidates(strategy: Any) -> list[Observation]:
    """The search's candidates, most accurate first: those trained (completed), then the members a
    supernet scored with inherited weights (`strategy.members`, ranked by their fitness), each once."""
    trained = sorted(
        (o for o in strategy.history if o.status == "completed" and o.accuracy is not None),
        key=lambda o: (-o.accuracy, o.latency_ms),
    )
    scored = sorted(
        (o for o in getattr(strategy, "members", ()) if o.accuracy is not None),
        key=lambda o: (-o.accuracy, o.latency_ms),
    )
    seen: set[str] = set()
    ranked = []
    for observation in [*trained, *scored]:
        if observation.arch_hash not in seen:
            seen.add(observation.arch_hash)
            ranked.append(observation)
    return ranked


def _alternative_within(
    request: SearchRequest,
    space: SearchSpace,
    strategy: Any,
    spec: ArchSpec,
    ratio: float,
    measure: Callable[[ArchSpec], float],
    recorder: SearchRecorder,
) -> ArchSpec | None:
    """The most accurate of the search's other candidates (at most ALTERNATIVES measured) whose
    prediction, scaled by `ratio` (the pick's measured / predicted), is within budget and whose
    measurement is; None when none of those measured is."""
    budget = request.budget_ms
    tried: list[float] = []
    for observation in ranked_candidates(strategy):
        if len(tried) >= ALTERNATIVES:
            break
        if observation.latency_ms * ratio > budget:
            continue
        candidate = space.decode(observation.genome)
        if candidate.content_hash() == spec.content_hash():
            continue
        measured = measure(candidate)
        tried.append(measured)
        if measured <= budget:
            recorder.event(
                "measure",
                f"candidate #{len(tried)} (score {observation.accuracy:.3f}, predicted {observation.latency_ms:.4f} "
                f"x{ratio:.3f}) measures {measured:.4f} ms: within budget; it replaces the pick",
                {"measured_ms": measured, "accuracy": observation.accuracy, "alternatives_measured": len(tried)},
            )
            return candidate
    recorder.event(
        "measure",
        (
            f"none of the {len(tried)} next candidates predicted within budget at x{ratio:.3f} measured within it "
            f"({', '.join(f'{m:.4f}' for m in tried)} ms)"
            if tried
            else f"no other candidate is predicted within budget at x{ratio:.3f}"
        )
        + "; pruning the pick against the measurement",
        {"alternatives_measured": len(tried)},
    )
    return None


def _first_measured_within(
    request: SearchRequest,
    space: SearchSpace,
    strategy: Any,
    spec: ArchSpec,
    spec_ms: float,
    measure: Callable[[ArchSpec], float],
    recorder: SearchRecorder,
    limit: int = 10,
) -> ArchSpec:
    """The most accurate completed candidate that measures within budget (at most `limit` measured);
    if none does, the fastest of those measured, `spec` (measured `spec_ms`) included."""
    ranked = ranked_candidates(strategy)
    fastest, fastest_ms = spec, spec_ms
    tried = {spec.content_hash()}
    for observation in ranked:
        candidate = space.decode(observation.genome)
        if candidate.content_hash() in tried:
            continue
        if len(tried) > limit:
            break
        tried.add(candidate.content_hash())
        measured = measure(candidate)
        if measured <= request.budget_ms:
            recorder.event(
                "measure",
                f"candidate at acc {observation.accuracy:.3f} measures {measured:.4f} ms: within budget; it wins",
                {"measured_ms": measured, "accuracy": observation.accuracy},
            )
            return candidate
        if measured < fastest_ms:
            fastest, fastest_ms = candidate, measured
    recorder.event(
        "measure",
        f"no candidate measured within budget; keeping the fastest tried ({fastest_ms:.4f} ms)",
        level="warning",
    )
    return fastest


def _best_partial(history: Sequence[Observation], request: SearchRequest) -> Observation | None:
    """When every trial was stopped early, the best by reward among those that reported an accuracy."""
    from nas.strategies import mnas_reward

    scored = [o for o in history if o.accuracy is not None]
    if not scored:
        return None
    return max(scored, key=lambda o: mnas_reward(o.accuracy, o.latency_ms, request.budget_ms, mode=request.reward))


def _observation(space: SearchSpace, candidate: CandidateRecord) -> Observation:
    return Observation.create(
        space,
        np.asarray(candidate.genome, dtype=np.int64),
        accuracy=candidate.accuracy,
        latency_ms=candidate.predicted_ms,
        status=candidate.status,  # type: ignore[arg-type]
    )


MissingLatencies = Callable[[list[str]], dict[str, Any]]
"""Keys -> their latency: milliseconds measured on demand, or a `LutEntry` (e.g. interpolated for a
remote device). Asked for all the keys a network lacks at once, so a profiler can time them together."""


def _latency_function(
    predictor: LatencyPredictor, latency_for_missing: MissingLatencies | None
) -> Callable[[ArchSpec], float]:
    """Predicted latency of any spec; keys outside the table are filled by `latency_for_missing`."""

    def latency_of(spec: ArchSpec) -> float:
        missing = predictor.table.missing_keys(spec.block_keys())
        if missing:
            if latency_for_missing is None:
                raise MissingKeysError(predictor.table.device.name, missing)
            found = latency_for_missing(list(missing))
            for key in missing:
                value = found[key]
                entry = value if isinstance(value, LutEntry) else LutEntry(value, 0.0, 1, "on-demand", "profiler")
                predictor.table.add(key, entry)
        return predictor.predict_ms(spec)

    return latency_of


def _estimating_latency(
    predictor: LatencyPredictor, latency_for_missing: MissingLatencies | None
) -> Callable[[ArchSpec], float]:
    """Predicted latency for NetAdapt's measured rounds: keys the table lacks are interpolated between
    measured channel counts of the same layer (on a copy of the table, so the search's own predictions
    never use an estimate), and only keys with no measured neighbour go to `latency_for_missing`.

    A round's prices are rescaled by a measurement and its result is measured anyway; profiling each
    pruned width on demand was most of a round's 55-280 s (session 8)."""
    table = LatencyTable(predictor.table.device, predictor.table.entries)
    interpolate = interpolate_from(table)

    def missing(keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        rest = []
        for key in keys:
            try:
                found[key] = interpolate(key)
            except InterpolationError:
                rest.append(key)
        if rest:
            if latency_for_missing is None:
                raise MissingKeysError(table.device.name, rest)
            found.update(latency_for_missing(rest))
        return found

    return _latency_function(LatencyPredictor(table, predictor.calibration), missing)


def _stop_check(recorder: SearchRecorder) -> Callable[[int, float, float], None]:
    """An epoch callback that ends a training (final, baseline, NetAdapt's start) when a stop is asked."""

    def check(epoch: int, accuracy: float, loss: float) -> None:
        if recorder.should_stop():
            raise SearchCancelled(f"stopped after training epoch {epoch}")

    return check


def _run_netadapt(
    request: SearchRequest,
    split: DatasetSplit,
    spec: ArchSpec,
    latency_of: Callable[[ArchSpec], float],
    recorder: SearchRecorder,
    budget_ms: float | None = None,
    fine_tune_epochs: int | None = None,
) -> list[ArchSpec]:
    """NetAdapt from `spec` down to `budget_ms` (default: the request's) as `latency_of` prices it:
    `spec`, then the network each iteration kept (the last is NetAdapt's result). Each proposal is
    fine-tuned `fine_tune_epochs` (default: the preset's `netadapt_epochs`) before it is scored."""
    from nas.netadapt import netadapt

    preset = request.preset
    epochs = preset.netadapt_epochs if fine_tune_epochs is None else fine_tune_epochs
    proxy = request.proxy_resolution
    start = train_and_evaluate(
        spec.with_resolution(proxy), split, training_recipe(request, preset.epochs), on_epoch=_stop_check(recorder)
    )
    tune_recipe = training_recipe(request, max(1, epochs))

    def evaluate(model: torch.nn.Module, candidate: ArchSpec) -> float:
        if recorder.should_stop():
            raise SearchCancelled("stopped during NetAdapt")
        # NetAdapt prices deployment-resolution specs; its proposals are tuned at the proxy resolution.
        model.spec = candidate.with_resolution(proxy)
        if epochs == 0:
            return evaluate_accuracy(model, split.x_val, split.y_val, proxy)
        return fine_tune(model, split, tune_recipe).final_accuracy

    def on_step(step: Any) -> None:
        for proposal in step.proposals:
            recorder.record_candidate(
                CandidateRecord(
                    arch_hash=proposal.spec.content_hash(),
                    spec=proposal.spec,
                    genome=None,
                    phase="netadapt",
                    status="completed",
                    predicted_ms=proposal.latency_ms,
                    accuracy=proposal.accuracy,
                    accuracies=[proposal.accuracy],
                    train_seconds=None,
                )
            )
        chosen = step.chosen
        recorder.event(
            "netadapt",
            f"iteration {step.iteration}: {chosen.group} {chosen.width_before}->{chosen.width} channels, "
            f"{chosen.latency_ms:.3f} ms, acc {chosen.accuracy:.3f} ({len(step.proposals)} proposals)",
        )

    result = netadapt(
        spec,
        start.model,
        latency_of,
        request.budget_ms if budget_ms is None else budget_ms,
        evaluate,
        max_iterations=preset.netadapt_iterations,
        on_step=on_step,
    )
    if not result.met_budget:
        recorder.event(
            "netadapt",
            f"NetAdapt could not reach the budget; keeping its smallest network ({latency_of(result.spec):.3f} ms)",
            level="warning",
        )
    return [spec, *(step.chosen.spec for step in result.steps)]


@dataclass
class _DeploymentData:
    """The search's images at the deployment resolution, loaded only when a network is finished there."""

    request: SearchRequest
    dataset: ImageDataset
    proxy_split: DatasetSplit
    _split: DatasetSplit | None = None

    @property
    def resolution(self) -> int:
        return self.request.resolution

    @property
    def split(self) -> DatasetSplit:
        if self.request.resolution == self.proxy_split.resolution:
            return self.proxy_split
        if self._split is None:
            self._split = load_split(self.request, self.request.resolution, self.dataset)
        return self._split


DEPLOY_LR = 2e-3
"""Fine-tuning at the deployment resolution starts from trained weights: half the training rate (on digits,
32 -> 128 px, 5 epochs: 0.983 -> 0.992; 1e-3 for 3 epochs: 0.964; 4e-3 for 3 epochs: 0.975)."""


@dataclass(frozen=True)
class _Finisher:
    """Trains a chosen network with the final recipe, exports and checks it; the same for the winner
    and for the baseline, so the two are comparable."""

    split: DatasetSplit
    recipe: TrainingRecipe
    latency_of: Callable[[ArchSpec], float]
    artifact_root: Path
    measure: Callable[[ArchSpec], float] | None
    recorder: SearchRecorder
    deploy: _DeploymentData
    width_by_measurement: bool = True
    budget_ms: float | None = None
    """A network measuring over it is measured again, as at the budget check (`lowest_of_measurements`):
    session 8's single export measurement put 6 of 18 winners over the budget that their check had
    found them within (one network: 0.1458 ms at the check, 0.2000 ms at export)."""
    initial: Callable[[ArchSpec], torch.nn.Module | None] | None = None
    """The winner's starting weights (a supernet's, for its members); None or no network: random ones.
    The baseline always starts from random weights."""

    def finish(self, role: str, spec: ArchSpec) -> ArchitectureRecord:
        """Train from scratch at the training resolution, fine-tune at the deployment resolution, export
        spec/ONNX/weights, check ONNX = PyTorch, measure where a measurement is available.

        The accuracy reported is the deployment-resolution one: what the downloaded model does at the
        size it ships."""
        recorder = self.recorder
        stop_check = _stop_check(recorder)
        train_spec = spec.with_resolution(self.split.resolution)
        start = self.initial(train_spec) if self.initial is not None and role == "winner" else None
        if start is None:
            result = train_and_evaluate(train_spec, self.split, self.recipe, on_epoch=stop_check)
        else:
            inherited = evaluate_accuracy(start, self.split.x_val, self.split.y_val, train_spec.resolution)
            recorder.event(
                "warm_start",
                f"{role}: final training starts from the supernet's weights (inherited validation accuracy "
                f"{inherited:.3f}), same recipe as from random weights",
                {"inherited_accuracy": inherited},
            )
            start.spec = train_spec
            result = fine_tune(start, self.split, self.recipe, on_epoch=stop_check)
        proxy_accuracy = result.final_accuracy
        accuracies = list(result.epoch_accuracies)
        train_seconds = result.train_seconds
        model = result.model
        model.spec = spec
        if self.deploy.split is not self.split:
            deploy_split = self.deploy.split
            epochs = self.deploy.request.preset.deploy_epochs
            if epochs > 0:
                recipe = training_recipe(self.deploy.request, epochs, lr=DEPLOY_LR)
                tuned = fine_tune(model, deploy_split, recipe, on_epoch=stop_check)
                accuracy = tuned.final_accuracy
                accuracies += list(tuned.epoch_accuracies)
                train_seconds += tuned.train_seconds
            else:
                accuracy = evaluate_accuracy(model, deploy_split.x_val, deploy_split.y_val, spec.resolution)
        else:
            accuracy = proxy_accuracy
        test_split = self.deploy.split
        test_accuracy = (
            evaluate_accuracy(model, test_split.x_test, test_split.y_test, spec.resolution)
            if len(test_split.y_test)
            else None
        )
        model = model.eval()
        directory = self.artifact_root / f"{role}-{spec.content_hash()}"
        directory.mkdir(parents=True, exist_ok=True)
        # spec.json and both ONNX files say how to feed the network (model_uint8.onnx does it in its graph)
        exported = write_download(directory, spec, model, self.deploy.dataset, self.deploy.split)
        onnx_bytes = exported.onnx_bytes
        torch.save({"spec": json.loads(spec.to_json()), "state_dict": model.state_dict()}, directory / "weights.pt")
        parity = check_parity(model, onnx_bytes, (1, spec.in_channels, spec.resolution, spec.resolution))
        if not parity.ok:
            raise RuntimeError(f"ONNX export of the {role} differs from PyTorch by {parity.max_abs_diff:.2e}")
        predicted = self.latency_of(spec)
        measured = None
        if self.measure is not None:
            measure = self.measure if self.budget_ms is None else lowest_of_measurements(self.measure, self.budget_ms)
            measured = measure(spec)
        record = ArchitectureRecord(
            role=role,
            spec=spec,
            predicted_ms=predicted,
            measured_ms=measured,
            accuracy=accuracy,
            accuracies=accuracies,
            artifact_dir=directory,
            files={**exported.files, "weights": "weights.pt"},
            parity_max_abs_diff=parity.max_abs_diff,
            test_accuracy=test_accuracy,
            test_indices=tuple(int(i) for i in test_split.test_index),
            initial_weights="random" if start is None else "supernet",
        )
        measured_text = "" if measured is None else f", measured {measured:.3f} ms"
        test_text = "" if test_accuracy is None else f", test {test_accuracy:.3f}"
        recorder.event(
            role,
            f"{role}: validation acc {record.accuracy:.3f}{test_text} at {spec.resolution} px (trained at "
            f"{self.split.resolution} px: {proxy_accuracy:.3f}), predicted {predicted:.3f} ms{measured_text}, "
            f"{count_spec(spec).params:,} params",
            {
                "accuracy": record.accuracy,
                "test_accuracy": test_accuracy,
                "train_resolution_accuracy": proxy_accuracy,
                "predicted_ms": predicted,
                "measured_ms": measured,
            },
        )
        recorder.record_candidate(
            CandidateRecord(
                arch_hash=spec.content_hash(),
                spec=spec,
                genome=None,
                phase="final" if role == "winner" else "baseline",
                status="completed",
                predicted_ms=predicted,
                accuracy=record.accuracy,
                accuracies=record.accuracies,
                train_seconds=train_seconds,
            )
        )
        return record

    def baseline(self, request: SearchRequest) -> ArchitectureRecord | None:
        """MobileNetV3-Small at the widest multiplier that fits the budget, trained the same way."""
        try:
            # On this machine the width is chosen by measurement too, so the baseline holds the same budget;
            # on a remote device by prediction, and the chosen width is then measured there.
            latency = self.measure if self.measure is not None and self.width_by_measurement else self.latency_of
            spec = baseline_spec(request, self.split.num_classes, latency, BASELINE_WIDTHS)
        except (LookupError, ValueError) as error:
            self.recorder.event("baseline", f"no baseline: {error}", level="warning")
            return None
        if spec is None:
            self.recorder.event("baseline", "no MobileNetV3-Small width (0.35-1.4) fits the budget", level="warning")
            return None
        return self.finish("baseline", spec)


def baseline_spec(
    request: SearchRequest, num_classes: int, latency_of: Callable[[ArchSpec], float], widths: Sequence[float]
) -> ArchSpec | None:
    """MobileNetV3-Small at the widest multiplier (of `widths`) whose latency fits the budget.

    Latency grows with width, so a bisection prices only a handful of widths (each new width's keys
    may need profiling).
    """
    ordered = sorted(widths)

    def spec_at(width: float) -> ArchSpec:
        return reference_spec("mobilenet_v3_small", width=width, resolution=request.resolution, num_classes=num_classes)

    low, high, best = 0, len(ordered) - 1, None
    while low <= high:
        middle = (low + high) // 2
        spec = spec_at(ordered[middle])
        if latency_of(spec) <= request.budget_ms:
            best, low = spec, middle + 1
        else:
            high = middle - 1
    return best


BASELINE_WIDTHS = tuple(round(w, 2) for w in np.arange(WIDTH_RANGE[0], WIDTH_RANGE[1] + 1e-9, 0.05))


def summarize(outcome: SearchOutcome, request: SearchRequest, seconds: float) -> dict[str, Any]:
    def describe(record: ArchitectureRecord | None) -> dict[str, Any] | None:
        if record is None:
            return None
        return {
            "name": record.spec.name,
            "arch_hash": record.spec.content_hash(),
            "accuracy": record.accuracy,
            "test_accuracy": record.test_accuracy,
            "predicted_ms": record.predicted_ms,
            "measured_ms": record.measured_ms,
            "initial_weights": record.initial_weights,
            "params": count_spec(record.spec).params,
            "madds": count_spec(record.spec).madds,
            "artifact_dir": str(record.artifact_dir),
        }

    return {
        "budget_ms": request.budget_ms,
        "resolution": request.resolution,
        "train_resolution": request.proxy_resolution,
        "fastest_ms": outcome.fastest_ms,
        "test_split": {
            "test_fraction": request.test_fraction,
            "images": len(outcome.winner.test_indices),
            "indices": list(outcome.winner.test_indices),
        },
        "trials": outcome.trials,
        "over_budget_skipped": outcome.over_budget_skipped,
        "seconds": round(seconds, 1),
        "winner": describe(outcome.winner),
        "baseline": describe(outcome.baseline),
    }


def _summary_line(summary: dict[str, Any]) -> str:
    winner, baseline = summary["winner"], summary["baseline"]
    line = f"winner acc {_accuracy_text(winner)} at {winner['predicted_ms']:.3f} ms predicted"
    if winner["measured_ms"] is not None:
        line += f" / {winner['measured_ms']:.3f} ms measured"
    if baseline:
        line += f"; baseline {baseline['name']} acc {_accuracy_text(baseline)} at {baseline['predicted_ms']:.3f} ms"
    return line + f" (budget {summary['budget_ms']:g} ms)"


def _accuracy_text(described: dict[str, Any]) -> str:
    text = f"{described['accuracy']:.3f}"
    if described.get("test_accuracy") is not None:
        text += f" (test {described['test_accuracy']:.3f})"
    return text
