"""The `supernet` strategy's search phase: train (or reuse) one weight-sharing supernet, run evolution
over thousands of its members scored with inherited weights, then train a short list from scratch.

    supernet    one long Ray Tune trial (or a stored artifact for the same data, space, training
                resolution and recipe: a second search on the same data skips it)
    evolution   regularized evolution over members priced by the LUT, each scored in place with the
                supernet's weights after BatchNorm recalibration (tenths of a second each)
    short list  the best few members within the budget, trained from scratch like any trial (Ray
                Tune); the most accurate of them is the search phase's pick

Every member scored is a candidate row (`evaluation: inherited`), the short list's are `trained`.
What follows (NetAdapt, the measured budget, final training, the baseline) is the same as for the
other strategies.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from nas.datasets import DatasetSplit, ImageDataset
from nas.search.execution import TrialRecord, TuneSettings, run_long_trial, run_trials
from nas.search.request import SearchRequest
from nas.strategies import Observation, SearchSpaceExhausted, Strategy, make_strategy
from nas.strategies.base import arch_hash_of
from nas.supernet.evaluate import InheritedEvaluator, InheritedScore, calibrated_network
from nas.supernet.model import SuperNet, weight_sharing_problem
from nas.supernet.training import SupernetRecipe, train_supernet
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import Network
from search_spaces.space import SearchSpace

SUPERNET_FILE = "supernet.pt"


@dataclass(frozen=True)
class SupernetPlan:
    """How much of each step an effort level buys."""

    epochs: int
    evaluations: int
    shortlist: int
    population_size: int
    sample_size: int


SUPERNET_PLANS: dict[str, SupernetPlan] = {
    "smoke": SupernetPlan(epochs=2, evaluations=24, shortlist=1, population_size=8, sample_size=3),
    # digits at 32 px on 2 cores: ~7 s per supernet epoch, ~0.17 s per member scored (bench.supernet_rank)
    "quick": SupernetPlan(epochs=12, evaluations=160, shortlist=2, population_size=24, sample_size=6),
    "default": SupernetPlan(epochs=25, evaluations=600, shortlist=3, population_size=48, sample_size=12),
    "thorough": SupernetPlan(epochs=60, evaluations=2000, shortlist=6, population_size=100, sample_size=25),
}


class SupernetStore:
    """Trained supernets on disk, one folder per key, recorded in the database when there is one."""

    def __init__(self, directory: Path, sessions: sessionmaker[Session] | None = None) -> None:
        self.directory = Path(directory)
        self.sessions = sessions

    def path(self, key: str) -> Path:
        return self.directory / key / SUPERNET_FILE

    def ready(self, key: str) -> Path | None:
        """The stored file for `key` if it is there (and, with a database, recorded as ready)."""
        path = self.path(key)
        if self.sessions is not None:
            from nas.store import SupernetRepository, session_scope

            with session_scope(self.sessions) as session:
                row = SupernetRepository(session).get(key)
                if row is None or row.status != "ready":
                    return None
        return path if path.is_file() else None

    def begin(self, key: str, describe: dict[str, Any]) -> None:
        self.path(key).parent.mkdir(parents=True, exist_ok=True)
        if self.sessions is not None:
            from nas.store import SupernetRepository, session_scope

            with session_scope(self.sessions) as session:
                SupernetRepository(session).start(
                    key,
                    dataset=str(describe["dataset"]),
                    space=str(describe["space"]),
                    train_resolution=int(describe["train_resolution"]),
                    recipe=describe["recipe"],
                )

    def finish(self, key: str, train_seconds: float, metrics: dict[str, Any]) -> None:
        if self.sessions is not None:
            from nas.store import SupernetRepository, session_scope

            with session_scope(self.sessions) as session:
                SupernetRepository(session).finish(
                    key, path=f"{key}/{SUPERNET_FILE}", train_seconds=train_seconds, metrics=metrics
                )

    def fail(self, key: str, reason: str) -> None:
        self.path(key).unlink(missing_ok=True)
        if self.sessions is not None:
            from nas.store import SupernetRepository, session_scope

            with session_scope(self.sessions) as session:
                SupernetRepository(session).fail(key, reason)


def supernet_recipe(request: SearchRequest) -> SupernetRecipe:
    plan = SUPERNET_PLANS[request.effort]
    return SupernetRecipe(
        epochs=plan.epochs,
        warmup_epochs=1 if plan.epochs > 1 else 0,
        seed=request.seed,
        max_train_images=request.preset.max_train_images,
        min_epoch_images=request.preset.min_epoch_images,
        augment=request.augment,
    )


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """A hash of the images, labels and class names: the same data uploaded twice has the same one."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.images).tobytes())
    digest.update(np.ascontiguousarray(dataset.labels, dtype=np.int64).tobytes())
    digest.update(json.dumps(list(dataset.class_names)).encode())
    return digest.hexdigest()


def supernet_key(
    request: SearchRequest, dataset: ImageDataset, space: SearchSpace, recipe: SupernetRecipe
) -> tuple[str, dict[str, Any]]:
    """(key, description): one supernet per data and split, space (whatever the deployment resolution:
    members train at the proxy size), training resolution and recipe."""
    proxy_space = space.with_options(resolutions=[request.proxy_resolution])
    describe = {
        "dataset": dataset.name,
        "data": dataset_fingerprint(dataset),
        "split": {"seed": request.seed, "test_fraction": request.test_fraction},
        "space": space.name,
        "space_layout": repr(proxy_space),
        "train_resolution": request.proxy_resolution,
        "recipe": recipe.model_dump(mode="json"),
    }
    key = hashlib.sha256(json.dumps(describe, sort_keys=True).encode()).hexdigest()[:32]
    return key, describe


def check_supernet_request(space: SearchSpace) -> None:
    """ValueError (the API's 422 naming `strategy`) when the space's members cannot share weights."""
    problem = weight_sharing_problem(space)
    if problem is not None:
        raise ValueError(f"strategy 'supernet' needs a space whose members can share weights: {problem}")


class _Shortlist(Strategy):
    """Proposes a fixed list of genomes, in order: the members to train from scratch."""

    name = "shortlist"

    def __init__(self, genomes: Sequence[np.ndarray], members: Sequence[Observation] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._queue = [np.asarray(g, dtype=np.int64) for g in genomes]
        self.members = list(members)
        """Every member evolution scored (accuracy = its fitness, exp(-inherited loss)): the candidates
        the runner tries after the trained ones when the pick measures over budget."""

    def _batch_size(self) -> int:
        return max(1, len(self._queue))

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return np.stack(self._queue) if self._queue else np.empty((0, self.space.genome_length), dtype=np.int64)

    def ask(self) -> np.ndarray:
        if not [g for g in self._queue if self.arch_hash(g) not in self._seen_hashes]:
            raise SearchSpaceExhausted("the short list is trained")
        return super().ask()


@dataclass
class SupernetPhase:
    """Everything the phase needs from the runner."""

    request: SearchRequest
    space: SearchSpace
    dataset: ImageDataset
    split: DatasetSplit
    price: Callable[[np.ndarray], np.ndarray]
    recorder: Any
    store: SupernetStore
    evaluate: Callable[..., Any]
    candidate: Callable[..., Any]
    """(genome, spec, predicted, accuracy, evaluation, trial) -> the runner's CandidateRecord."""
    scores: dict[str, InheritedScore] = field(default_factory=dict, init=False)
    """Inherited accuracy and loss of every member scored, by arch hash."""
    supernet: SuperNet | None = field(default=None, init=False)

    def run(self) -> tuple[Strategy, int]:
        """(the short list's strategy, whose history the runner picks from; candidates evaluated)."""
        request, recorder = self.request, self.recorder
        check_supernet_request(self.space)
        plan = SUPERNET_PLANS[request.effort]
        supernet = self.supernet = self._supernet()
        if recorder.should_stop():
            raise _cancelled("after the supernet")
        evolution = self._evolve(supernet, plan)
        return self._train_shortlist(evolution, plan)

    def inherited_network(self, spec: ArchSpec) -> Network | None:
        """`spec` (at the training resolution) as a plain network with the weights it inherits from the
        supernet and BatchNorm statistics of its own, to start the winner's final training from; None
        when `spec` is not one of the space's members (e.g. NetAdapt narrowed it) or there is no supernet.

        bench/supernet_warm_start.py (session 9, `quick`, 2 seeds x 3 members): the same final recipe from
        these weights vs from random ones, test points: photos -0.1 mean (-5.0 to +1.9), digits +0.9
        (-0.3 to +3.1) -- within the noise of one training, no reliable gain yet."""
        if self.supernet is None:
            return None
        try:
            self.supernet.space.encode(spec)
        except ValueError:
            return None
        return calibrated_network(self.supernet, spec, self.split, seed=self.request.seed)

    # --- the supernet ----------------------------------------------------------------------------

    def _supernet(self) -> SuperNet:
        from nas.supernet.artifact import SupernetFileError, load_supernet

        request, recorder, store = self.request, self.recorder, self.store
        recipe = supernet_recipe(request)
        proxy_space = self.space.with_options(resolutions=[request.proxy_resolution])
        key, describe = supernet_key(request, self.dataset, self.space, recipe)
        path = store.ready(key)
        if path is not None:
            try:
                supernet, _ = load_supernet(path, proxy_space)
                recorder.event("supernet", f"reusing the supernet trained on this data ({key})", {"key": key})
                return supernet
            except SupernetFileError as error:
                recorder.event(
                    "supernet", f"stored supernet {key} unusable ({error}); training it again", level="warning"
                )
        store.begin(key, describe)
        recorder.event(
            "supernet",
            f"training a supernet of {self.space.name} at {request.proxy_resolution} px for {recipe.epochs} epochs "
            "(sandwich rule, in-place distillation)",
            {"key": key, "epochs": recipe.epochs},
        )
        started = time.perf_counter()
        target = store.path(key)
        work = _SupernetTraining(proxy_space, self.split, recipe, str(target))
        try:
            run_long_trial(work, cpus=max(1, os.cpu_count() or 1), on_report=self._on_supernet_epoch(recipe.epochs),
                           should_stop=recorder.should_stop)  # fmt: skip
        except Exception as error:
            store.fail(key, str(error))
            raise
        if recorder.should_stop():
            store.fail(key, "cancelled")
            raise _cancelled("while training the supernet")
        try:
            supernet, metadata = load_supernet(target, proxy_space)
        except SupernetFileError as error:
            store.fail(key, str(error))
            raise RuntimeError(f"the supernet trial ended without a usable supernet: {error}") from None
        seconds = time.perf_counter() - started
        store.finish(key, seconds, {k: v for k, v in metadata.items() if k != "recipe"})
        recorder.event("supernet", f"supernet trained in {seconds:.0f} s", {"key": key, "seconds": seconds})
        return supernet

    def _on_supernet_epoch(self, epochs: int) -> Callable[[dict[str, Any]], None]:
        def on_report(metrics: dict[str, Any]) -> None:
            epoch = int(metrics.get("epoch", 0))
            self.recorder.progress("search", 0.3 * epoch / epochs, 0, self.request.trials_total, 0)
            self.recorder.event(
                "supernet_epoch",
                f"supernet epoch {epoch}/{epochs}: largest {metrics.get('largest_accuracy', float('nan')):.3f}, "
                f"smallest {metrics.get('smallest_accuracy', float('nan')):.3f}",
                {k: v for k, v in metrics.items() if isinstance(v, int | float)},
            )

        return on_report

    # --- evolution on inherited weights ----------------------------------------------------------

    def _evolve(self, supernet: SuperNet, plan: SupernetPlan) -> Strategy:
        request, recorder = self.request, self.recorder
        strategy = make_strategy(
            "evolution",
            space=self.space,
            budget_ms=request.budget_ms,
            price=self.price,
            seed=request.seed,
            max_over_budget_ratio=request.max_over_budget_ratio if request.netadapt else 1.0,
            reward_mode=request.reward,
            population_size=plan.population_size,
            sample_size=plan.sample_size,
        )
        evaluator = InheritedEvaluator(supernet, self.split, seed=request.seed)
        scores = self.scores
        started = time.perf_counter()
        for n in range(plan.evaluations):
            try:
                genome = strategy.ask()
            except SearchSpaceExhausted:
                break
            score = evaluator.score(genome)
            predicted = float(self.price(genome[None, :])[0])
            scores[arch_hash_of(self.space, genome)] = score
            # Evolution's fitness is exp(-loss), not accuracy: on a few hundred validation images members'
            # accuracies tie, and the inherited loss ranks them about twice as well against training
            # from scratch (docs/benchmarks.md). The candidate row keeps the real accuracy.
            strategy.tell(
                Observation.create(
                    self.space, genome, accuracy=math.exp(-score.loss), latency_ms=predicted, status="completed"
                )
            )
            if (n + 1) % 25 == 0:
                if recorder.should_stop():
                    raise _cancelled("during evolution")
                recorder.progress("search", 0.3 + 0.3 * (n + 1) / plan.evaluations, n + 1, plan.evaluations,
                                  strategy.rejected_over_budget)  # fmt: skip
        seconds = time.perf_counter() - started
        scored = len(strategy.history)
        best = max((score.accuracy for score in scores.values()), default=float("nan"))
        recorder.event(
            "evolution",
            f"{scored} members scored with inherited weights in {seconds:.0f} s "
            f"({seconds / max(scored, 1) * 1000:.0f} ms each; best accuracy {best:.3f}); "
            f"{strategy.rejected_over_budget} proposals over budget never scored",
            {"members": scored, "seconds": seconds, "over_budget_skipped": strategy.rejected_over_budget},
        )
        return strategy

    # --- the short list, trained -----------------------------------------------------------------

    def _train_shortlist(self, evolution: Strategy, plan: SupernetPlan) -> tuple[Strategy, int]:
        request, recorder = self.request, self.recorder
        limit = request.budget_ms if not request.netadapt else request.budget_ms * request.max_over_budget_ratio
        ranked = sorted(
            (o for o in evolution.history if o.accuracy is not None and o.latency_ms <= limit),
            key=lambda o: (o.latency_ms > request.budget_ms, -o.accuracy, o.latency_ms),
        )
        shortlist = [o.genome for o in ranked[: plan.shortlist]]
        chosen = {o.arch_hash for o in ranked[: plan.shortlist]}
        trained_before = {c.arch_hash: c for c in recorder.stored_candidates("search") if c.evaluation == "trained"}
        # Inherited members are stored first except the short list's, whose rows hold their trained result.
        for o in evolution.history:
            if o.arch_hash in chosen:
                continue
            spec = self.space.decode(o.genome)
            accuracy = self.scores[o.arch_hash].accuracy
            recorder.record_candidate(self.candidate(o.genome, spec, o.latency_ms, accuracy, "inherited", None))
        strategy = _Shortlist(
            shortlist,
            evolution.history,
            space=self.space,
            budget_ms=request.budget_ms,
            price=self.price,
            seed=request.seed,
            max_over_budget_ratio=max(request.max_over_budget_ratio, 1.0),
            reward_mode=request.reward,
        )
        strategy.replay(
            [
                Observation.create(
                    self.space,
                    np.asarray(c.genome),
                    accuracy=c.accuracy,
                    latency_ms=c.predicted_ms,
                    status=c.status if c.status in ("completed", "pruned", "failed") else "failed",
                )  # fmt: skip
                for c in trained_before.values()
                if c.genome is not None and c.arch_hash in chosen
            ]
        )
        remaining = len([h for h in chosen if h not in trained_before])
        recorder.event(
            "shortlist",
            f"training the {len(shortlist)} best members within the budget from scratch "
            f"({len(shortlist) - remaining} already trained)",
            {"shortlist": sorted(chosen)},
        )

        def on_finished(trial: TrialRecord) -> None:
            recorder.record_candidate(
                self.candidate(trial.genome, trial.spec, trial.predicted_ms, trial.accuracy, "trained", trial)
            )
            accuracy = "-" if trial.accuracy is None else f"{trial.accuracy:.3f}"
            recorder.event(
                "trial",
                f"{trial.status} acc {accuracy} at {trial.predicted_ms:.3f} ms (short list): "
                f"{trial.spec.to_string()[:120]}",
                {
                    "arch_hash": trial.spec.content_hash(),
                    "accuracy": trial.accuracy,
                    "predicted_ms": trial.predicted_ms,
                },
            )

        preset = request.preset
        cpus = max(1, os.cpu_count() or 1)
        run_trials(
            strategy,
            self.space,
            self.price,
            self.evaluate,
            remaining,
            # No early stopping: the short list is already the best of thousands.
            TuneSettings(epochs=preset.epochs, max_concurrent=cpus, cpus_per_trial=1.0, use_asha=False),
            on_finished,
            should_stop=recorder.should_stop,
        )
        if recorder.should_stop():
            raise _cancelled("while training the short list")
        return strategy, len(evolution.history)


@dataclass(frozen=True)
class _SupernetTraining:
    """The supernet trial's work (runs in a Ray worker): train, then save to `path`."""

    space: SearchSpace
    split: DatasetSplit
    recipe: SupernetRecipe
    path: str

    def __call__(self, report: Callable[[dict[str, Any]], None]) -> None:
        from nas.supernet.artifact import save_supernet

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            report({"epoch": epoch, **{k: float(v) for k, v in metrics.items()}})
            return False

        result = train_supernet(self.space, self.split, self.recipe, on_epoch=on_epoch)
        if result.diverged:
            raise RuntimeError("supernet training diverged (non-finite loss)")
        save_supernet(Path(self.path), result.supernet, result.metadata())


def _cancelled(where: str) -> Exception:
    from nas.search.runner import SearchCancelled

    return SearchCancelled(f"stopped {where}")
