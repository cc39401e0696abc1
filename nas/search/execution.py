"""Running candidate evaluations as Ray Tune trials.

The ask/tell strategy is wrapped once as a Tune `Searcher`, so any Tune scheduler (ASHA by default)
and any Ray cluster come for free. Trials report validation accuracy every epoch; the searcher tells
the strategy each finished trial, and `on_finished` (in the driver process) receives a record of it
as soon as it finishes, which the search runner stores as a candidate.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# Tune's console reporter (a configuration box and tables) would write through the CLI's progress bar;
# hwnas reports trials itself, as events.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from ray import tune  # noqa: E402
from ray.tune import Callback, Stopper
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from nas.settings import Settings
from search_spaces.arch_spec import ArchSpec
from search_spaces.space import SearchSpace

# Tune pickles its searcher and stopper into the experiment directory. They run in this (the driver)
# process, so they hold only a token and find the live strategy, database recorder and callbacks here.
_LIVE: dict[str, dict[str, Any]] = {}
TrialStatus = Literal["completed", "pruned", "failed"]


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial, as the driver saw it."""

    trial_id: str
    genome: list[int]
    spec: ArchSpec
    predicted_ms: float
    status: TrialStatus
    accuracy: float | None
    accuracies: list[float]
    epochs_run: int
    train_seconds: float
    error: str | None = None


@dataclass
class TuneSettings:
    epochs: int
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    grace_period: int = 1
    reduction_factor: int = 3
    use_asha: bool = True


_RAY_START = threading.Lock()


def ensure_ray(num_cpus: int | None = None) -> None:
    """Start (or join) Ray once per process: a cluster when HWNAS_RAY_ADDRESS is set, else local.

    Ray's local processes (GCS, raylet) are started with PR_SET_PDEATHSIG, which kills them when the
    *thread* that started them ends. Called from a worker thread (the API's embedded worker), Ray is
    therefore started from a thread that lives as long as the process; otherwise stopping that
    worker would kill Ray under every later search (and abort the process at exit).
    """
    import ray

    with _RAY_START:
        if ray.is_initialized():
            return
        if threading.current_thread() is threading.main_thread():
            _init_ray(num_cpus)
            return
        started = threading.Event()
        failure: list[BaseException] = []

        def keeper() -> None:
            try:
                _init_ray(num_cpus)
            except BaseException as error:  # noqa: BLE001 - handed to the caller below
                failure.append(error)
            finally:
                started.set()
            threading.Event().wait()  # park for the life of the process

        threading.Thread(target=keeper, name="hwnas-ray-keeper", daemon=True).start()
        started.wait()
        if failure:
            raise failure[0]


def _init_ray(num_cpus: int | None) -> None:
    import ray

    address = Settings().ray_address
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )


TRIAL_RETRIES = 1
"""How many times Tune re-runs a trial that raised or lost its process/node before it counts as failed."""


class StrategySearcher(Searcher):
    """Tune's view of an ask/tell strategy (lives in the driver; finds its strategy by token)."""

    def __init__(self, token: str, epochs: int) -> None:
        super().__init__(metric="accuracy", mode="max")
        self.token = token
        self.epochs = epochs
        self.asked: dict[str, tuple[list[int], float, float]] = {}

    def suggest(self, trial_id: str) -> dict | None:
        from nas.strategies import SearchSpaceExhausted

        live = _LIVE[self.token]
        strategy, space, price, adapt_spec = live["strategy"], live["space"], live["price"], live["adapt_spec"]
        try:
            genome = strategy.ask()
        except SearchSpaceExhausted:
            return Searcher.FINISHED
        predicted = float(price(genome[None, :])[0])
        self.asked[trial_id] = ([int(g) for g in genome], predicted, time.time())
        spec = adapt_spec(space.decode(genome))
        return {"genome": [int(g) for g in genome], "spec_json": spec.to_json()}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to write: a search resumes by rebuilding the strategy from its stored candidates."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to read (see `save`)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from nas.strategies import Observation

        live = _LIVE[self.token]
        strategy, space, adapt_spec = live["strategy"], live["space"], live["adapt_spec"]
        genes, predicted, started = self.asked.pop(trial_id)
        genome = np.asarray(genes, dtype=np.int64)
        accuracies = list((result or {}).get("accuracies", []))
        accuracy = accuracies[-1] if accuracies else None
        if error or accuracy is None:
            status: TrialStatus = "failed"
        elif len(accuracies) < self.epochs:
            status = "pruned"
        else:
            status = "completed"
        strategy.tell(Observation.create(space, genome, accuracy=accuracy, latency_ms=predicted, status=status))
        live["on_finished"](
            TrialRecord(
                trial_id=trial_id,
                genome=genes,
                spec=adapt_spec(space.decode(genome)),
                predicted_ms=predicted,
                status=status,
                accuracy=accuracy,
                accuracies=accuracies,
                epochs_run=len(accuracies),
                train_seconds=float((result or {}).get("train_seconds", time.time() - started)),
                error="trial raised an error" if error else None,
            )
        )


class StopOnRequest(Stopper):
    """Stops the whole run when the driver's `should_stop` says so (checked at most twice a second)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._last_check = 0.0
        self._stop = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        if not self._stop and time.monotonic() - self._last_check > 0.5:
            self._last_check = time.monotonic()
            self._stop = bool(_LIVE[self.token]["should_stop"]())
        return self._stop


TRIAL_NICENESS = 10
"""Trial processes run at a lower CPU priority, so the API (and heartbeats) on the same cores stay
responsive while they train; on an otherwise idle machine this costs them nothing."""


def _lower_priority() -> None:
    target = TRIAL_NICENESS
    try:
        current = os.nice(0)
        if current < target:
            os.nice(target - current)
    except OSError:  # not permitted here: training at normal priority is still correct
        pass


def _trainable(config: dict, evaluate: Callable, threads: int) -> None:
    """One trial, in a Ray worker: train the proposed network, report accuracy every epoch."""
    import torch

    _lower_priority()
    torch.set_num_threads(threads)
    spec = ArchSpec.from_json(config["spec_json"])
    accuracies: list[float] = []
    started = time.perf_counter()

    def on_epoch(epoch: int, accuracy: float, loss: float) -> bool:
        accuracies.append(float(accuracy))
        tune.report(
            {
                "accuracy": float(accuracy),
                "loss": float(loss),
                "epoch": epoch,  # the evaluator counts completed epochs from 1
                "accuracies": list(accuracies),
                "train_seconds": time.perf_counter() - started,
            }
        )
        return False

    evaluate(spec, on_epoch)


def run_trials(
    strategy: Any,
    space: SearchSpace,
    price: Callable[[np.ndarray], np.ndarray],
    evaluate: Callable[[ArchSpec, Callable[[int, float, float], bool | None]], Any],
    n_trials: int,
    settings: TuneSettings,
    on_finished: Callable[[TrialRecord], None],
    should_stop: Callable[[], bool] = lambda: False,
    adapt_spec: Callable[[ArchSpec], ArchSpec] = lambda spec: spec,
) -> None:
    """Evaluate `n_trials` candidates proposed by `strategy` through Ray Tune.

    `evaluate(spec, on_epoch)` runs inside a Tune trial (a Ray worker process): it must call
    `on_epoch(epochs_completed, val_accuracy, train_loss)` (1 after the first epoch) after every epoch
    and stop when it returns True.
    `should_stop` is polled in the driver (cancel, lost worker lease) and ends the run between trials.
    """
    if n_trials <= 0:
        return
    ensure_ray()

    token = uuid.uuid4().hex
    _LIVE[token] = {
        "strategy": strategy,
        "space": space,
        "price": price,
        "adapt_spec": adapt_spec,
        "on_finished": on_finished,
        "should_stop": should_stop,
    }

    searcher = ConcurrencyLimiter(
        StrategySearcher(token, settings.epochs),
        max_concurrent=settings.max_concurrent,
    )
    scheduler = (
        ASHAScheduler(
            time_attr="epoch",
            max_t=settings.epochs,
            grace_period=min(settings.grace_period, settings.epochs),
            reduction_factor=settings.reduction_factor,
        )
        if settings.use_asha and settings.epochs > 1
        else FIFOScheduler()
    )
    with tempfile.TemporaryDirectory(prefix="hwnas-tune-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(_trainable, evaluate=evaluate, threads=max(1, int(settings.cpus_per_trial))),
                {"cpu": settings.cpus_per_trial},
            ),
            tune_config=tune.TuneConfig(
                metric="accuracy",
                mode="max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=n_trials,
                reuse_actors=True,  # a fresh worker process per trial costs ~1.5 s
            ),
            run_config=tune.RunConfig(
                storage_path=storage,
                stop=StopOnRequest(token),
                verbose=0,
                log_to_file=False,
                # A trial whose process or Ray node dies (a node stopped mid-search) is run once more
                # rather than stored as a failed candidate; a network that fails twice is recorded failed.
                failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            ),
        )
        try:
            tuner.fit()
        finally:
            _LIVE.pop(token, None)


class _ReportToDriver(Callback):
    """Hands each result of the long trial to the driver's `on_report` (Tune calls it in the driver)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        live = _LIVE.get(self.token)
        if live is not None:
            live["on_report"](result)


def _long_trainable(config: dict, work: Callable[[Callable[[dict], None]], None], threads: int) -> None:
    """One long trial, in a Ray worker: `work(report)` reports a dict of metrics whenever it likes."""
    import torch

    _lower_priority()
    torch.set_num_threads(threads)
    work(lambda metrics: tune.report(dict(metrics)))


def run_long_trial(
    work: Callable[[Callable[[dict], None]], None],
    *,
    cpus: int,
    on_report: Callable[[dict], None] = lambda metrics: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run `work` as one Ray Tune trial with `cpus` CPUs (e.g. training a supernet): results reach
    `on_report` in this process, `should_stop` ends it early; an error in the trial is raised here.

    `work` must be picklable (it travels to a Ray worker) and leave its product where the driver can
    read it (a path on a filesystem both see)."""
    ensure_ray()
    token = uuid.uuid4().hex
    _LIVE[token] = {"should_stop": should_stop, "on_report": on_report}
    with tempfile.TemporaryDirectory(prefix="hwnas-tune-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(_long_trainable, work=work, threads=max(1, int(cpus))), {"cpu": cpus}
            ),
            tune_config=tune.TuneConfig(num_samples=1),
            run_config=tune.RunConfig(
                storage_path=storage,
                stop=StopOnRequest(token),
                callbacks=[_ReportToDriver(token)],
                verbose=0,
                log_to_file=False,
            ),
        )
        try:
            results = tuner.fit()
        finally:
            _LIVE.pop(token, None)
    errors = list(results.errors)
    if errors:
        raise RuntimeError(f"the trial failed: {errors[0]}")
