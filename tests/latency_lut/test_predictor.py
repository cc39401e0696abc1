"""LatencyTable, LatencyPredictor, the vectorised pricer and the accuracy report."""

import hashlib
import json
import math

import numpy as np
import pytest

from latency_lut.device import Device
from latency_lut.kit_runner import TimingPolicy
from latency_lut.predictor import Calibration, LatencyPredictor, MissingKeysError, fit_calibration
from latency_lut.profiler import measure_network, profile_keys
from latency_lut.report import accuracy_report, score_predictions
from latency_lut.table import LatencyTable, LutEntry, LutFormatError
from search_spaces.space import SearchSpace, StageChoices, tiny_space

FAST = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=8, batch_runs=3, max_seconds=0.1)

# Two resolutions and two widths, so the pricer's indexing over both is exercised.
PRICING_SPACE = SearchSpace(
    name="pricing",
    description="small space with several resolutions and widths",
    stem_channels=8,
    stages=(StageChoices(16, 2, (1, 2, 3)), StageChoices(24, 2, (2, 3)), StageChoices(48, 1, (1, 2))),
    head_hidden_channels=32,
    kernels=(3, 5, 7),
    expansions=(3, 6),
    widths=(0.75, 1.0),
    resolutions=(32, 48),
    num_classes=10,
)

MEASURED_SPACE = tiny_space("measured", resolution=32, num_classes=10)


def _arithmetic_table(space: SearchSpace) -> LatencyTable:
    """A table with distinct, deterministic values per key: checks arithmetic, claims no latency."""
    entries = {}
    for key in space.block_keys():
        digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        entries[key] = LutEntry(0.01 + (digest % 10_000) / 1e4, 0.001, 10, "test")
    return LatencyTable(Device(name="arith"), entries)


@pytest.fixture(scope="module")
def measured_table() -> LatencyTable:
    results = profile_keys(MEASURED_SPACE.block_keys(), threads=1, policy=FAST)
    entries = {k: LutEntry(m.median_ms, m.iqr_ms, m.runs, m.runtime_version) for k, m in results.items()}
    return LatencyTable(Device(name="local-test"), entries)


def test_table_json_round_trip(measured_table: LatencyTable) -> None:
    again = LatencyTable.from_json(measured_table.to_json())
    assert again.device == measured_table.device
    assert again.entries == measured_table.entries
    payload = json.loads(measured_table.to_json())
    assert payload["format"] == "hwnas-lut" and payload["version"] == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(version=99), "unsupported lookup-table version"),
        (lambda p: p.update(format="other"), "not a lookup table"),
        (lambda p: p["entries"].__setitem__("k@1x1x1", {"median_ms": -1, "iqr_ms": 0, "runs": 1,
                                                        "runtime_version": "x"}), "finite positive"),
        (lambda p: p.update(entries=[]), "'entries' must be an object"),
    ],
)  # fmt: skip
def test_table_json_refuses_bad_files(measured_table: LatencyTable, mutate, message: str) -> None:
    payload = json.loads(measured_table.to_json())
    mutate(payload)
    with pytest.raises(LutFormatError, match=message):
        LatencyTable.from_json(json.dumps(payload))
    with pytest.raises(LutFormatError, match="not JSON"):
        LatencyTable.from_json("{")


def test_measured_table_is_complete_and_positive(measured_table: LatencyTable) -> None:
    assert measured_table.missing_keys(MEASURED_SPACE.block_keys()) == []
    assert measured_table.coverage(MEASURED_SPACE.block_keys()) == 1.0
    for entry in measured_table.entries.values():
        assert math.isfinite(entry.median_ms) and entry.median_ms > 0 and entry.runs >= 3


def test_raw_sum_is_the_sum_of_the_spec_keys(measured_table: LatencyTable) -> None:
    predictor = LatencyPredictor(measured_table)
    spec = MEASURED_SPACE.decode(MEASURED_SPACE.sample(np.random.default_rng(3)))
    expected = sum(measured_table.latency_ms(key) for key in spec.block_keys())
    assert predictor.raw_sum_ms(spec) == pytest.approx(expected)
    assert predictor.predict_ms(spec) == pytest.approx(expected)  # identity calibration


def test_missing_keys_are_named() -> None:
    table = _arithmetic_table(PRICING_SPACE)
    spec = PRICING_SPACE.decode(PRICING_SPACE.sample(np.random.default_rng(0)))
    dropped = spec.block_keys()[2]
    del table.entries[dropped]
    with pytest.raises(MissingKeysError, match="lacks 1 key") as error:
        LatencyPredictor(table).predict_ms(spec)
    assert error.value.missing == [dropped]
    with pytest.raises(MissingKeysError):
        LatencyPredictor(table).pricer(PRICING_SPACE)


@pytest.mark.parametrize("calibration", [Calibration(), Calibration(1.3, 0.02, 0.5, 10, "linear-sum-layers")])
def test_vectorised_pricer_equals_per_spec_prediction(calibration: Calibration) -> None:
    table = _arithmetic_table(PRICING_SPACE)
    predictor = LatencyPredictor(table, calibration)
    pricer = predictor.pricer(PRICING_SPACE)
    genomes = PRICING_SPACE.sample_population(300, np.random.default_rng(11))
    assert len({tuple(g[:2]) for g in genomes}) == 4  # every resolution x width appears
    vectorised = pricer.predict_ms(genomes)
    one_by_one = [predictor.predict_ms(PRICING_SPACE.decode(g)) for g in genomes]
    np.testing.assert_allclose(vectorised, one_by_one, rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        pricer.predict_ms(genomes[:, :-1])


def test_fit_calibration_recovers_a_known_linear_relation() -> None:
    rng = np.random.default_rng(0)
    sums = rng.uniform(2, 20, 30)
    layers = rng.integers(10, 25, 30)
    measured = 1.15 * sums + 0.03 * layers + 0.4
    fitted = fit_calibration(sums, layers, measured)
    assert fitted.scale == pytest.approx(1.15) and fitted.per_layer_ms == pytest.approx(0.03)
    assert fitted.offset_ms == pytest.approx(0.4)
    assert fit_calibration([2.0, 4.0], [10, 10], [3.0, 6.0]).scale == pytest.approx(1.5)
    assert fit_calibration([], [], []) == Calibration()
    with pytest.raises(ValueError, match="finite and positive"):
        fit_calibration([1, 2, 3, 4], [1, 1, 1, 1], [1, 2, float("nan"), 4])
    assert Calibration.from_dict(fitted.to_dict()) == fitted


def test_score_predictions() -> None:
    score = score_predictions("x", [1.0, 2.08, 3.5, 4.0], [1.0, 2.0, 3.0, 4.4])
    assert score.within_5pct == 0.5 and score.within_10pct == 0.75
    assert score.spearman == pytest.approx(1.0)
    assert score.rmse_ms == pytest.approx(math.sqrt((0 + 0.0064 + 0.25 + 0.16) / 4))
    with pytest.raises(ValueError):
        score_predictions("x", [], [])


def test_accuracy_report_on_real_measurements(measured_table: LatencyTable) -> None:
    rng = np.random.default_rng(5)
    specs = [MEASURED_SPACE.decode(g) for g in MEASURED_SPACE.sample_population(9, rng)]
    measured = [measure_network(spec, threads=1, policy=FAST).median_ms for spec in specs]
    pairs = list(zip(specs, measured, strict=True))
    report = accuracy_report(LatencyPredictor(measured_table), pairs[:4], pairs[4:])
    assert [s.name for s in report.scores] == ["calibrated", "lut_sum", "madds_linear"]
    assert report.n_calibration == 4 and report.n_evaluation == 5
    assert report.calibration.n_measurements == 4
    for score in report.scores:
        assert score.n == 5 and 0 <= score.within_5pct <= score.within_10pct <= 1
        assert math.isfinite(score.rmse_ms)
    assert set(report.to_dict()["scores"]) == {"calibrated", "lut_sum", "madds_linear"}


def test_fastest_network_is_exact_and_no_sample_beats_it() -> None:
    table = _arithmetic_table(PRICING_SPACE)
    predictor = LatencyPredictor(table, Calibration(1.1, 0.01, 0.2, 5, "linear-sum-layers"))
    pricer = predictor.pricer(PRICING_SPACE)
    fastest_ms, genome = pricer.fastest()
    assert predictor.predict_ms(PRICING_SPACE.decode(genome)) == pytest.approx(fastest_ms)
    population = PRICING_SPACE.sample_population(20_000, np.random.default_rng(2))
    assert pricer.predict_ms(population).min() >= fastest_ms - 1e-9
