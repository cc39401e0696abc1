"""A whole search through the worker, for real: Ray Tune trials, NetAdapt, final training, export,
baseline, on SQLite and PostgreSQL. A tiny registered space keeps it to seconds of training."""

import json
import time
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from latency_lut.interpolation import channel_point
from latency_lut.kit_runner import TimingPolicy
from latency_lut.predictor import MissingKeysError
from latency_lut.profiler import measure_key
from latency_lut.table import LutEntry
from nas.latency import add_device, store_lut_entries
from nas.search.request import SearchRequest
from nas.search.runner import BudgetUnreachableError
from nas.store import (
    ArchitectureRepository,
    CandidateRepository,
    EventRepository,
    SearchRepository,
    session_scope,
)
from nas.store.errors import DeviceNotFoundError
from nas.submission import submit_search
from nas.worker import DatabaseRecorder, run_worker
from search_spaces import space as space_module
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import build_model
from search_spaces.space import SearchSpace, tiny_space
from tests.markers import SQLITE_ONLY

DATASET = "synthetic:classes=3,per_class=24,resolution=16"
TEST_SPACE = tiny_space("test_tiny", resolution=16, num_classes=3)


@pytest.fixture(autouse=True)
def registered_space(monkeypatch: pytest.MonkeyPatch, tmp_path) -> SearchSpace:
    monkeypatch.setitem(space_module.SPACES, TEST_SPACE.name, TEST_SPACE)
    monkeypatch.setenv("HWNAS_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    torch.set_num_threads(1)
    return TEST_SPACE


@pytest.fixture(scope="module")
def tiny16_lut() -> dict[str, LutEntry]:
    """Real measurements of the test space's keys at 16 px (once per module)."""
    from latency_lut.kit_runner import TimingPolicy
    from latency_lut.profiler import profile_keys

    fast = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)
    measured = profile_keys(TEST_SPACE.block_keys(), threads=1, policy=fast)
    return {k: LutEntry(m.median_ms, m.iqr_ms, m.runs, m.runtime_version) for k, m in measured.items()}


@pytest.fixture
def local_device(session_factory, tiny16_lut) -> str:
    add_device(session_factory, "local", threads=1)
    store_lut_entries(session_factory, "local", tiny16_lut)
    return "local"


def _request(**changes) -> SearchRequest:
    fields = {
        "device": "local",
        "space": TEST_SPACE.name,
        "dataset": DATASET,
        "budget_ms": 50.0,
        "effort": "smoke",
        "resolution": 16,
        "seed": 3,
    }
    return SearchRequest(**{**fields, **changes})


def test_bad_requests_are_refused_and_store_nothing(session_factory, local_device, tiny16_lut) -> None:
    with pytest.raises(DeviceNotFoundError):
        submit_search(session_factory, _request(device="nope"))
    with pytest.raises(BudgetUnreachableError, match="smallest latency") as error:
        submit_search(session_factory, _request(budget_ms=1e-6))
    assert error.value.fastest_ms > 0
    add_device(session_factory, "phone", threads=1, local=False)
    store_lut_entries(session_factory, "phone", dict(list(tiny16_lut.items())[:5]))
    with pytest.raises(MissingKeysError, match="lacks"):
        submit_search(session_factory, _request(device="phone"))
    with pytest.raises(ValueError, match="budget_ms"):
        _request(budget_ms=float("inf"))
    # A device this machine measures may lack keys (its worker profiles them), but a budget below the
    # fastest network priced without them cannot be met either: refused at once, with that lower bound.
    add_device(session_factory, "half-profiled", threads=1)
    store_lut_entries(session_factory, "half-profiled", dict(list(tiny16_lut.items())[:-3]))
    with pytest.raises(BudgetUnreachableError, match="smallest latency") as error:
        submit_search(session_factory, _request(device="half-profiled", budget_ms=1e-6))
    assert 0 < error.value.fastest_ms < _budget(session_factory, 1.0)
    with session_scope(session_factory) as session:
        assert SearchRepository(session).count() == 0
    submit_search(session_factory, _request(device="half-profiled", budget_ms=_budget(session_factory, 2.0)))


def _budget(session_factory, factor: float) -> float:
    """A budget `factor` times the fastest network the test space reaches on the local LUT."""
    from nas.latency import load_predictor

    return factor * load_predictor(session_factory, "local", TEST_SPACE).pricer(TEST_SPACE).fastest()[0]


# On PostgreSQL: the same runner through the API (test_search_journey.py) and resume (below).
@SQLITE_ONLY
def test_search_runs_end_to_end(session_factory, local_device) -> None:
    budget = _budget(session_factory, 1.3)
    public_id = submit_search(session_factory, _request(budget_ms=budget))
    assert run_worker(session_factory, "worker-a", once=True) == 1
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
        assert search.status == "succeeded", search.error
        assert search.progress == 1.0 and search.phase == "done"
        search_candidates = CandidateRepository(session).list(search.id, phase="search")
        all_hashes = [c.arch_hash for c in CandidateRepository(session).list(search.id)]
        architectures = {a.role: a for a in ArchitectureRepository(session).for_search(search.id)}
        events = [e.kind for e in EventRepository(session).after(search.id, 0, 500)]
        result = dict(search.result)
    assert len(search_candidates) == _request().preset.trials
    assert len(all_hashes) == len(set(all_hashes))
    assert all(c.predicted_ms <= budget * 1.25 * 1.5 for c in search_candidates)  # calibration may move prices
    assert {"start", "trial", "search_done", "winner", "done"} <= set(events)

    winner = architectures["winner"]
    assert winner.measured_ms is not None and winner.measured_ms > 0
    assert result["winner"]["arch_hash"] == winner.arch_hash
    directory = winner.artifact_dir
    spec = ArchSpec.from_json(open(f"{directory}/spec.json").read())
    checkpoint = torch.load(f"{directory}/weights.pt", weights_only=False)
    assert ArchSpec.model_validate(checkpoint["spec"]) == spec
    model = build_model(spec)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(f"{directory}/model.onnx", providers=["CPUExecutionProvider"])
    onnx_out = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(2)])
    with torch.no_grad():
        torch_out = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)


def test_resume_never_retrains_a_finished_candidate(session_factory, local_device) -> None:
    request = _request(netadapt=False, baseline=False, strategy="random")
    public_id = submit_search(session_factory, request)
    # A first worker claims the search, finishes two trials, and dies (its heartbeat goes stale).
    with session_scope(session_factory) as session:
        assert SearchRepository(session).claim_next("dead-worker", stale_after_s=60) is not None
        search_id = SearchRepository(session).require(public_id).id
    from nas.search.runner import CandidateRecord, search_space_for
    from nas.strategies import make_strategy

    space = search_space_for(request, 3)
    strategy = make_strategy("random", space=space, budget_ms=request.budget_ms,
                             price=lambda g: np.zeros(len(g)), seed=request.seed,
                             max_over_budget_ratio=request.max_over_budget_ratio)  # fmt: skip
    import threading

    recorder = DatabaseRecorder(session_factory, public_id, search_id, "dead-worker", threading.Event())
    finished = []
    for _ in range(2):
        genome = strategy.ask()
        spec = space.decode(genome)
        finished.append(spec.content_hash())
        recorder.record_candidate(
            CandidateRecord(
                spec.content_hash(),
                spec,
                [int(g) for g in genome],
                "search",
                "completed",
                0.01,
                0.999,
                [0.999],
                1.0,
                trial_id="before-crash",
            )  # fmt: skip
        )
    # A second worker re-claims the stale search and completes it.
    time.sleep(0.05)
    run_worker(session_factory, "worker-b", once=True, stale_after_s=0.01)
    with session_scope(session_factory) as session:
        search = SearchRepository(session).require(public_id)
        assert search.status == "succeeded", search.error
        assert search.attempts == 2
        candidates = CandidateRepository(session).list(search.id, phase="search")
        kinds = [e.kind for e in EventRepository(session).after(search.id, 0, 500)]
    assert "resume" in kinds
    assert len(candidates) == request.preset.trials
    hashes = [c.arch_hash for c in candidates]
    assert len(hashes) == len(set(hashes))
    survivors = [c for c in candidates if c.arch_hash in finished]
    assert [c.trial_id for c in survivors] == ["before-crash", "before-crash"]
    assert all(c.accuracy == 0.999 for c in survivors)


def test_cancel_of_a_queued_search(session_factory, local_device) -> None:
    public_id = submit_search(session_factory, _request())
    with session_scope(session_factory) as session:
        assert SearchRepository(session).request_cancel(public_id) == "cancelled"
    assert run_worker(session_factory, "worker-c", once=True) == 0
    with session_scope(session_factory) as session:
        assert SearchRepository(session).require(public_id).status == "cancelled"
    assert json.dumps(_request().model_dump(mode="json"))


def _run_with_measurement(tmp_path, tiny16_lut, request: SearchRequest, measure):
    """`run_search` on the local LUT with `measure` standing in for the end-to-end timer."""
    from latency_lut.device import Device
    from latency_lut.kit_runner import TimingPolicy
    from latency_lut.predictor import LatencyPredictor
    from latency_lut.profiler import measure_key
    from latency_lut.table import LatencyTable
    from nas.search.runner import MemoryRecorder, run_search

    fast = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)
    predictor = LatencyPredictor(LatencyTable(Device(name="local"), tiny16_lut))
    recorder = MemoryRecorder()
    outcome = run_search(
        request,
        predictor,
        recorder,
        tmp_path / "artifacts",
        measure_locally=True,
        latency_for_missing=lambda keys: {key: measure_key(key, 1, fast).median_ms for key in keys},
        measure=measure,
    )
    return outcome, predictor, recorder


def test_a_measurement_over_budget_is_taken_again_before_anything_is_pruned() -> None:
    """Interference only adds time: one unlucky median over budget is measured again (lowest kept),
    and only a network that stays over budget on every try goes on to NetAdapt."""
    from nas.search.runner import REMEASURES, MemoryRecorder, _meet_measured_budget, lowest_of_measurements

    spec = TEST_SPACE.decode(TEST_SPACE.sample_population(1, np.random.default_rng(0), np.int64)[0])
    request = _request(budget_ms=1.0, baseline=False)
    noisy = iter([1.3, 0.97])  # one slow moment, then the network's real latency
    recorder = MemoryRecorder()
    kept = _meet_measured_budget(request, None, TEST_SPACE, None, spec, lambda s: 0.9, lambda s: next(noisy), recorder)
    assert kept is spec
    assert [m for k, m, _ in recorder.events if k == "measure"] == [
        "winner measures 0.9700 ms (predicted 0.9000): within budget"
    ]
    calls: list[float] = []
    measure = lambda s: calls.append(1.0) or 1.1 + 0.01 * len(calls)  # noqa: E731  always over
    assert lowest_of_measurements(measure, 1.0)(spec) == pytest.approx(1.11) and len(calls) == 1 + REMEASURES


def test_a_winner_measuring_over_budget_is_pruned_against_the_measurement(tmp_path, monkeypatch) -> None:
    """The widest network of the space is predicted exactly at the budget but measures 20% over:
    NetAdapt goes on against the measurement until the *measured* latency fits, aiming ROUND_MARGIN
    under the budget, and scores its proposals without fine-tuning them (at `quick`, whose first
    NetAdapt fine-tunes each proposal for an epoch).

    Latency here is a MAdds model (deterministic, and shrinking with every pruned channel): this
    tests the check's logic; real timings at 16 px are almost all per-layer overhead, which channel
    pruning barely moves.
    """
    from nas.search import runner as runner_module
    from nas.search.runner import ROUND_MARGIN, MemoryRecorder, _meet_measured_budget, load_split
    from nas.strategies import make_strategy
    from search_spaces.counting import count_spec

    latency_of = lambda spec: 1e-6 * count_spec(spec).madds  # noqa: E731
    population = TEST_SPACE.sample_population(64, np.random.default_rng(0), np.int64)
    widest = max((TEST_SPACE.decode(genome) for genome in population), key=latency_of)
    request = _request(budget_ms=latency_of(widest), baseline=False, effort="quick")
    assert request.preset.netadapt_epochs >= 1
    measure = lambda spec: 1.2 * latency_of(spec)  # noqa: E731
    strategy = make_strategy("random", space=TEST_SPACE, budget_ms=request.budget_ms, price=lambda g: g, seed=0)
    recorder = MemoryRecorder()

    def no_fine_tuning(*args, **kwargs):
        raise AssertionError("a measured round fine-tuned a proposal")

    monkeypatch.setattr(runner_module, "fine_tune", no_fine_tuning)
    spec = _meet_measured_budget(
        request, load_split(request), TEST_SPACE, strategy, widest, latency_of, measure, recorder
    )
    assert measure(widest) > request.budget_ms * (1 - ROUND_MARGIN) >= measure(spec)
    messages = [message for kind, message, _ in recorder.events if kind == "measure"]
    assert "over the" in messages[0] and messages[-1].startswith("round 1: pruned to")
    assert all(block.out_channels % 8 == 0 for block in spec.blocks)


def test_before_pruning_the_next_candidates_the_measurement_puts_within_budget_are_measured() -> None:
    """The pick measures 20% over its prediction. Before any NetAdapt round (here none could run: no
    data), the search's other candidates are tried most accurate first: trained ones, then a supernet's
    inherited members; one whose prediction x1.2 is over budget is never measured; the first that
    measures within budget wins."""
    from types import SimpleNamespace

    from nas.search.runner import REMEASURES, MemoryRecorder, _meet_measured_budget
    from nas.strategies import Observation

    genomes = TEST_SPACE.sample_population(64, np.random.default_rng(2), np.int64)
    distinct = list({TEST_SPACE.decode(g).content_hash(): g for g in genomes}.values())[:5]
    pick, a, b, c, d = (TEST_SPACE.decode(g) for g in distinct)
    predicted = {pick.content_hash(): 0.95, a.content_hash(): 0.9, b.content_hash(): 0.8, c.content_hash(): 0.5,
                 d.content_hash(): 0.7}  # fmt: skip
    measured_as = {pick.content_hash(): 1.14, b.content_hash(): 1.05, d.content_hash(): 0.85, c.content_hash(): 0.6}

    def observation(genome: np.ndarray, accuracy: float) -> Observation:
        latency = predicted[TEST_SPACE.decode(genome).content_hash()]
        return Observation.create(TEST_SPACE, genome, accuracy=accuracy, latency_ms=latency, status="completed")

    strategy = SimpleNamespace(
        history=[observation(distinct[1], 0.9), observation(distinct[2], 0.8), observation(distinct[0], 0.95)],
        members=[observation(distinct[3], 0.5), observation(distinct[4], 0.95)],  # inherited fitness
    )
    asked: list[str] = []
    measure = lambda spec: asked.append(spec.content_hash()) or measured_as[spec.content_hash()]  # noqa: E731
    request = _request(budget_ms=1.0, baseline=False)
    recorder = MemoryRecorder()
    latency_of = lambda spec: predicted[spec.content_hash()]  # noqa: E731
    kept = _meet_measured_budget(request, None, TEST_SPACE, strategy, pick, latency_of, measure, recorder)
    assert kept.content_hash() == d.content_hash()
    # a (0.9 x 1.2 = 1.08 predicted) is skipped; b measures over on every try; d is the next by fitness
    assert asked == [pick.content_hash()] * (1 + REMEASURES) + [b.content_hash()] * (1 + REMEASURES) + [
        d.content_hash()
    ]
    assert "replaces the pick" in recorder.events[-1][1] and recorder.events[-1][2]["alternatives_measured"] == 2


def test_the_exported_network_measuring_over_budget_is_measured_again_like_at_the_check(tmp_path, tiny16_lut) -> None:
    """One slow moment at export does not make a network that measured within budget at the check
    'over budget': the export's measurement follows the same rule (lowest of up to 1 + REMEASURES)."""
    readings: dict[str, list[float]] = {}
    script = [40.0, 60.0, 45.0]  # the check; export: a slow moment, then the network's own latency

    def measure(spec: ArchSpec) -> float:
        taken = readings.setdefault(spec.content_hash(), [])
        taken.append(script[len(taken)] if len(readings) == 1 else 1e-3)
        return taken[-1]

    request = _request(budget_ms=50.0, netadapt=False, baseline=False, strategy="random")
    outcome, _, _ = _run_with_measurement(tmp_path, tiny16_lut, request, measure)
    assert readings[outcome.winner.spec.content_hash()] == script
    assert outcome.winner.measured_ms == 45.0


def test_measured_rounds_interpolate_the_keys_of_pruned_widths_instead_of_profiling_them(tiny16_lut) -> None:
    """NetAdapt's narrower widths are missing from the table: a measured round estimates them between
    measured channel counts, on a copy (the search's own table is left as it was); only a key with no
    measured neighbour is asked of `latency_for_missing` (profiled here on demand)."""
    from latency_lut.device import Device
    from latency_lut.predictor import LatencyPredictor
    from latency_lut.table import LatencyTable
    from nas.netadapt.groups import apply_widths, candidate_widths, prunable_groups
    from nas.search.runner import _estimating_latency

    member = TEST_SPACE.decode(TEST_SPACE.sample_population(1, np.random.default_rng(5), np.int64)[0])
    group = prunable_groups(member)[0]
    narrowed = apply_widths(member, group, candidate_widths(member, group)[0])

    # The measured table's values are timings of ~0.01 ms, where noise can make a narrower key slower;
    # the same keys with latencies that grow with channel counts make the check deterministic.
    def grows_with_channels(key: str, entry):
        try:
            coordinates = channel_point(key).coordinates
        except ValueError:
            return replace(entry, median_ms=0.01)
        return replace(entry, median_ms=1e-4 * float(np.prod(coordinates)))

    lut = {key: grows_with_channels(key, entry) for key, entry in tiny16_lut.items()}
    predictor = LatencyPredictor(LatencyTable(Device(name="local"), lut))
    assert predictor.table.missing_keys(narrowed.block_keys())
    asked: list[str] = []
    profile = lambda keys: asked.extend(keys) or {key: 1.0 for key in keys}  # noqa: E731
    estimate = _estimating_latency(predictor, profile)(narrowed)
    assert asked == [] and 0 < estimate < predictor.predict_ms(member)
    assert predictor.table.missing_keys(narrowed.block_keys())  # the search's table is untouched
    empty = LatencyPredictor(LatencyTable(Device(name="local"), {}))
    assert _estimating_latency(empty, profile)(member) == pytest.approx(len(set(member.block_keys())) * 1.0)
    assert sorted(asked) == sorted(set(member.block_keys()))


def test_a_network_pruned_far_under_budget_is_walked_back_to_the_least_pruned_one_within_it() -> None:
    """NetAdapt's chain (least to most pruned) where the last network measures far under budget: a
    bisection keeps the least-pruned network that measures within it, in log2(len) measurements."""
    from nas.search.runner import MemoryRecorder, _walk_back

    genomes = TEST_SPACE.sample_population(64, np.random.default_rng(1), np.int64)
    specs = list({spec.content_hash(): spec for spec in map(TEST_SPACE.decode, genomes)}.values())[:8]
    times = dict(zip((spec.content_hash() for spec in specs), [1.5, 1.3, 1.1, 0.95, 0.8, 0.6, 0.5, 0.4], strict=True))
    asked: list[float] = []
    measure = lambda spec: asked.append(times[spec.content_hash()]) or asked[-1]  # noqa: E731
    recorder = MemoryRecorder()
    assert _walk_back(specs, -1, 0.4, measure, 1.0, recorder) is specs[3]
    assert asked == [0.95, 1.3, 1.1]
    [(_, message, data)] = [event for event in recorder.events if event[0] == "measure"]
    assert data == {"measured_ms": 0.95, "walked_back": 4, "measurements": 3}, message
    asked.clear()  # known: specs[4] measured over; specs[5:] cannot be wider than it
    assert _walk_back(specs[:6], 4, 0.6, measure, 0.7, MemoryRecorder()) is specs[5] and asked == []
    assert _walk_back(specs, -1, 0.95, measure, 1.0, MemoryRecorder()) is specs[-1] and asked == []  # close enough


def test_a_pruned_winner_measuring_far_under_budget_gets_back_the_channels_it_did_not_need(tmp_path) -> None:
    """Measured latency falls faster than predicted (here: with its 4th power, as on-demand keys of
    pruned widths priced ~2x their measurement in session 7), so the widest network measures 20% over
    and NetAdapt, rescaled by that one ratio, prunes to a network measuring far under. The chain is
    walked back: the winner is a wider network that still measures within budget."""
    from nas.search.runner import MemoryRecorder, _meet_measured_budget, load_split
    from nas.strategies import make_strategy
    from search_spaces.counting import count_spec

    latency_of = lambda spec: 1e-6 * count_spec(spec).madds  # noqa: E731
    population = TEST_SPACE.sample_population(64, np.random.default_rng(0), np.int64)
    widest = max((TEST_SPACE.decode(genome) for genome in population), key=latency_of)
    request = _request(budget_ms=latency_of(widest), baseline=False)
    measure = lambda spec: 1.2 * request.budget_ms * (latency_of(spec) / request.budget_ms) ** 4  # noqa: E731
    strategy = make_strategy("random", space=TEST_SPACE, budget_ms=request.budget_ms, price=lambda g: g, seed=0)
    recorder = MemoryRecorder()
    spec = _meet_measured_budget(
        request, load_split(request), TEST_SPACE, strategy, widest, latency_of, measure, recorder
    )
    walked = [data for kind, message, data in recorder.events if kind == "measure" and "walked back" in message]
    assert len(walked) == 1 and walked[0]["walked_back"] >= 1, "\n".join(m for _, m, _ in recorder.events)
    assert measure(spec) == pytest.approx(walked[0]["measured_ms"]) and measure(spec) <= request.budget_ms
    pruned = [data["measured_ms"] for kind, message, data in recorder.events if message.startswith("round 1")]
    assert pruned[0] < 0.9 * request.budget_ms and pruned[0] < measure(spec) <= request.budget_ms


def test_without_netadapt_the_most_accurate_candidate_measuring_within_budget_wins(tmp_path, tiny16_lut) -> None:
    """The first pick measures over budget every time it is measured (here: on purpose); the next
    candidates are measured in order of accuracy and the first that fits becomes the winner."""
    measured: list[str] = []

    def measure(spec: ArchSpec) -> float:
        if spec.content_hash() not in measured:
            measured.append(spec.content_hash())
        return 1e6 if spec.content_hash() == measured[0] else 1e-3

    request = _request(budget_ms=50.0, netadapt=False, baseline=False, strategy="random")
    outcome, _, recorder = _run_with_measurement(tmp_path, tiny16_lut, request, measure)
    assert outcome.winner.spec.content_hash() == measured[1] != measured[0]
    assert outcome.winner.measured_ms == 1e-3
    completed = [c for c in recorder.candidates if c.phase == "search" and c.accuracy is not None]
    first = next(c for c in completed if c.arch_hash == measured[0])
    assert first.accuracy == max(c.accuracy for c in completed)


def test_trials_train_at_the_proxy_resolution_and_the_winner_ships_at_the_deployment_one(tmp_path, tiny16_lut) -> None:
    """Latency, budget, export and the reported accuracy are at the deployment resolution (32 px);
    the search's trials train at the proxy (16 px). The reported accuracy is what the downloaded
    weights score on the validation images at 32 px."""
    from latency_lut.kit_runner import TimingPolicy
    from latency_lut.profiler import profile_keys
    from nas.evaluation.training import evaluate_accuracy
    from nas.search.runner import load_split

    fast = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)
    space32 = TEST_SPACE.with_options(resolutions=[32])
    measured = profile_keys(space32.block_keys(), threads=1, policy=fast)
    lut = {**tiny16_lut, **{k: LutEntry(m.median_ms, m.iqr_ms, m.runs, m.runtime_version) for k, m in measured.items()}}
    # Asked for explicitly (smoke's `auto` never augments): every training of the search shifts its batches.
    request = _request(resolution=32, train_resolution=16, budget_ms=50.0, netadapt=False, augment="shift")
    assert request.proxy_resolution == 16
    outcome, predictor, recorder = _run_with_measurement(tmp_path, lut, request, lambda spec: 1e-3)

    searched = [c for c in recorder.candidates if c.phase == "search"]
    assert searched and all(c.spec.resolution == 32 for c in searched)
    assert all(c.predicted_ms == pytest.approx(predictor.predict_ms(c.spec)) for c in searched)
    assert outcome.summary["resolution"] == 32 and outcome.summary["train_resolution"] == 16
    start = next(data for kind, _, data in recorder.events if kind == "start")
    assert start["train_resolution"] == 16 and start["augment"] == "shift"
    for record in (outcome.winner, outcome.baseline):
        assert record is not None and record.spec.resolution == 32
        onnx_input = ort.InferenceSession(str(record.artifact_dir / "model.onnx")).get_inputs()[0].shape
        assert onnx_input[-2:] == [32, 32]
        checkpoint = torch.load(record.artifact_dir / "weights.pt", weights_only=False)
        model = build_model(ArchSpec.model_validate(checkpoint["spec"]))
        model.load_state_dict(checkpoint["state_dict"])
        split32 = load_split(request)  # the deployment resolution by default
        assert split32.resolution == 32
        assert evaluate_accuracy(model, split32.x_val, split32.y_val, 32) == pytest.approx(record.accuracy, abs=1e-6)
    # One fine-tuning epoch at 32 px follows the smoke preset's final training at 16 px.
    assert len(outcome.winner.accuracies) == request.preset.final_epochs + request.preset.deploy_epochs


def test_train_resolution_above_the_deployment_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="train_resolution 64 is above the deployment resolution 32"):
        _request(resolution=32, train_resolution=64)


def test_on_a_remote_device_the_baseline_width_is_chosen_by_prediction_then_measured_once(tmp_path, tiny16_lut) -> None:
    """A remote measurement is a job a device runs: the baseline's width is bisected on the predictor
    (keys it lacks come from `latency_for_missing`, e.g. interpolation), and only the chosen width is
    sent to the device, like the winner."""
    from latency_lut.device import Device
    from latency_lut.predictor import LatencyPredictor
    from latency_lut.table import LatencyTable
    from nas.search.runner import MemoryRecorder, run_search

    asked: list[ArchSpec] = []

    def remote(spec: ArchSpec) -> float:
        asked.append(spec)
        return 1e-3

    fast = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)
    predictor = LatencyPredictor(LatencyTable(Device(name="phone"), dict(tiny16_lut)))
    request = _request(budget_ms=50.0, netadapt=False, strategy="random")
    outcome = run_search(
        request,
        predictor,
        MemoryRecorder(),
        tmp_path / "artifacts",
        measure_locally=False,
        latency_for_missing=lambda keys: {key: measure_key(key, 1, fast).median_ms for key in keys},
        measure=remote,
    )
    assert outcome.baseline is not None and outcome.baseline.measured_ms == 1e-3
    baseline_hash = outcome.baseline.spec.content_hash()
    assert [spec.content_hash() for spec in asked].count(baseline_hash) == 1
    assert outcome.winner.measured_ms == 1e-3 and asked[0].content_hash() == outcome.winner.spec.content_hash()


def test_a_cancel_during_final_training_ends_the_search_there(tmp_path, tiny16_lut) -> None:
    """Cancel is honoured in every phase: here between two epochs of the winner's final training."""
    import inspect

    from latency_lut.device import Device
    from latency_lut.predictor import LatencyPredictor
    from latency_lut.table import LatencyTable
    from nas.search.runner import MemoryRecorder, SearchCancelled, run_search

    class CancelInFinalTraining(MemoryRecorder):
        def should_stop(self) -> bool:  # asked to stop once the search phase is over and a training runs
            searched = any(kind == "search_done" for kind, _, _ in self.events)
            return searched and any(frame.function == "_run_epochs" for frame in inspect.stack())

    recorder = CancelInFinalTraining()
    predictor = LatencyPredictor(LatencyTable(Device(name="local"), tiny16_lut))
    request = _request(netadapt=False, baseline=False, budget_ms=50.0)
    with pytest.raises(SearchCancelled, match="training epoch 1"):
        run_search(request, predictor, recorder, tmp_path / "artifacts", measure_locally=False)
    kinds = [kind for kind, _, _ in recorder.events]
    assert "search_done" in kinds and "winner" not in kinds and "done" not in kinds
    assert not (tmp_path / "artifacts" / "winner").exists()
