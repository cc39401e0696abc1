"""nas.latency on SQLite and PostgreSQL: devices, resumable profiling, per-device tables, checks, kits.

Every latency here is a real ONNX Runtime measurement of the tiny space's keys at 32x32; nothing is
mocked. Each test gets its own empty database (`session_factory`), so the tests never share rows.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from latency_lut.kit import KitImportError, KitManifest, read_manifest_from_kit
from latency_lut.kit_runner import TimingPolicy
from latency_lut.predictor import MissingKeysError
from latency_lut.profiler import measure_key
from latency_lut.report import AccuracyReport
from latency_lut.table import LutEntry
from nas.latency import (
    THIS_MACHINE_FACT,
    NotThisMachineError,
    add_device,
    calibration_scope,
    check_device,
    get_device,
    is_this_machine,
    list_devices,
    load_predictor,
    load_table,
    profile_device,
    sample_specs,
    store_lut_entries,
)
from nas.remote_measurements import create_kit, import_kit_results
from nas.settings import machine_id
from nas.store import (
    CalibrationRepository,
    DeviceExistsError,
    DeviceNotFoundError,
    DeviceRepository,
    E2EMeasurementData,
    KitRepository,
    LutEntryData,
    LutRepository,
    MeasurementRepository,
    session_scope,
)
from search_spaces.space import SearchSpace
from tests.markers import SQLITE_ONLY

Sessions = sessionmaker[Session]

# A block big enough (56x56, 144 channels inside) that a second thread clearly pays off.
LARGE_KEY = "ir_k5_s1_e144_c24_hs@56x56x24"
PREDICTORS = {"calibrated", "lut_sum", "madds_linear"}


# --- helpers -----------------------------------------------------------------------------------------


def stored_lut(sessions: Sessions, name: str) -> dict[str, LutEntryData]:
    """The device's table as stored, timestamps included, to compare before and after."""
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        return LutRepository(session).entries(row.id)


def stored_measurements(sessions: Sessions, name: str) -> list[E2EMeasurementData]:
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        return MeasurementRepository(session).list(row.id)


def stored_kits(sessions: Sessions, name: str) -> dict[str, Any] | None:
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        return KitRepository(session).latest_for_device(row.id)


def device_names(sessions: Sessions) -> list[str]:
    return [device.name for device, _ in list_devices(sessions)]


def recorder(seen: list[str]) -> Callable[[int, int, str], None]:
    def progress(done: int, total: int, key: str) -> None:
        seen.append(key)

    return progress


def local_device_with_tiny_lut(sessions: Sessions, name: str, tiny_lut: dict[str, LutEntry]) -> None:
    """This machine at 1 thread, its table filled from the session's one real profile of the tiny space."""
    add_device(sessions, name, threads=1)
    store_lut_entries(sessions, name, dict(tiny_lut))


def report_json(report: AccuracyReport) -> str:
    # JSON, not ==: a Spearman of NaN (constant predictions) must compare equal to itself.
    return json.dumps(report.to_dict(), sort_keys=True)


# --- devices -----------------------------------------------------------------------------------------


def test_add_local_device_describes_this_machine(session_factory: Sessions) -> None:
    device = add_device(session_factory, "cpu-2t", threads=2)

    assert device.threads == 2
    assert device.facts[THIS_MACHINE_FACT] == machine_id()
    assert is_this_machine(device)
    stored = get_device(session_factory, "cpu-2t")
    assert stored == device
    assert list_devices(session_factory) == [(device, 0)]


def test_add_remote_device_keeps_its_facts(session_factory: Sessions) -> None:
    device = add_device(
        session_factory, "pixel-7", threads=4, local=False, facts={"soc": "Tensor G2"}, runtime_version="1.17.0"
    )

    assert device.facts == {"soc": "Tensor G2"}
    assert not is_this_machine(device)
    stored = get_device(session_factory, "pixel-7")
    assert (stored.threads, stored.runtime_version, stored.facts) == (4, "1.17.0", {"soc": "Tensor G2"})


@pytest.mark.parametrize("local", [True, False], ids=["local", "remote"])
def test_duplicate_device_name_changes_nothing(session_factory: Sessions, local: bool) -> None:
    first = add_device(session_factory, "twin", threads=1, local=False, facts={"soc": "A"})

    with pytest.raises(DeviceExistsError, match="twin"):
        add_device(session_factory, "twin", threads=3, local=local, facts={"soc": "B"})

    assert list_devices(session_factory) == [(first, 0)]


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "a/b", "x" * 101, "ünï"])
def test_invalid_device_name_is_refused(session_factory: Sessions, name: str) -> None:
    for local in (True, False):
        with pytest.raises(ValueError, match="device name"):
            add_device(session_factory, name, local=local)
    assert device_names(session_factory) == []


# --- profiling ---------------------------------------------------------------------------------------


def test_profile_measures_and_stores_every_key(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    keys = tiny_lut_space.block_keys()
    add_device(session_factory, "cpu-1t", threads=1)

    summary = profile_device(session_factory, "cpu-1t", keys, fast_policy)

    assert (summary.wanted, summary.already_measured, summary.measured_now) == (len(keys), 0, len(keys))
    stored = stored_lut(session_factory, "cpu-1t")
    assert sorted(stored) == sorted(keys)
    assert list_devices(session_factory)[0][1] == len(keys)
    for key, entry in stored.items():
        assert math.isfinite(entry.median_ms) and entry.median_ms > 0, key
        assert math.isfinite(entry.iqr_ms) and entry.iqr_ms >= 0, key
        assert entry.runs >= fast_policy.batch_runs, key
        assert entry.source == "profiler"

    again = profile_device(session_factory, "cpu-1t", keys, fast_policy)

    assert (again.already_measured, again.measured_now) == (len(keys), 0)
    assert stored_lut(session_factory, "cpu-1t") == stored


def test_the_drift_reference_anchor_is_kept_once_and_survives_calibrations(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    """Profiling times the drift reference beside the keys and stores its first latency as the
    device's anchor; later timings and calibration fits never move it."""
    from latency_lut.predictor import Calibration
    from nas.latency import REFERENCES, device_clock, measure_now, save_calibration

    keys = tiny_lut_space.block_keys()
    add_device(session_factory, "cpu-1t", threads=1)
    profile_device(session_factory, "cpu-1t", keys, fast_policy)
    resolution = tiny_lut_space.resolutions[0]
    clock = device_clock(session_factory, "cpu-1t", resolution)
    assert clock.anchor_ms is not None and clock.anchor_ms > 0
    anchor = clock.anchor_ms

    save_calibration(session_factory, "cpu-1t", tiny_lut_space, Calibration(scale=1.1, n_measurements=3))
    spec = sample_specs(tiny_lut_space, 1, seed=0)[0]
    (measured,) = measure_now(session_factory, "cpu-1t", [spec], fast_policy)
    assert math.isfinite(measured) and measured > 0
    with session_scope(session_factory) as session:
        device_id = DeviceRepository(session).require("cpu-1t").id
        coefficients = CalibrationRepository(session).get(device_id).coefficients
    assert coefficients[REFERENCES] == {clock.digest: anchor}
    assert coefficients["scopes"][calibration_scope(tiny_lut_space)]["scale"] == 1.1
    assert device_clock(session_factory, "cpu-1t", resolution).anchor_ms == anchor


def test_a_single_inner_key_is_profiled_beside_the_reference_of_its_network_resolution(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    """What NetAdapt asks on demand: one key deep in the network (input 8x8 or smaller). The reference
    is the network's, at the resolution given; without one (and no stem key), the key is stored as timed."""
    from nas.latency import device_clock

    inner = [key for key in tiny_lut_space.block_keys() if not key.startswith("stem")]
    add_device(session_factory, "cpu-1t", threads=1)
    resolution = tiny_lut_space.resolutions[0]
    first = profile_device(session_factory, "cpu-1t", inner[:1], fast_policy, resolution=resolution)
    assert list(first.latencies_ms) == inner[:1] and first.latencies_ms[inner[0]] > 0
    assert device_clock(session_factory, "cpu-1t", resolution).anchor_ms is not None
    second = profile_device(session_factory, "cpu-1t", inner[1:2], fast_policy)
    assert list(second.latencies_ms) == inner[1:2]
    assert set(stored_lut(session_factory, "cpu-1t")) == set(inner[:2])


def test_interrupted_profile_keeps_its_work_and_resumes_with_the_rest(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    keys = tiny_lut_space.block_keys()
    add_device(session_factory, "cpu-1t", threads=1)
    first_run: list[str] = []

    def stop_after_five(done: int, total: int, key: str) -> None:
        first_run.append(key)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_device(session_factory, "cpu-1t", keys, fast_policy, stop_after_five)

    assert len(first_run) == 5
    assert set(stored_lut(session_factory, "cpu-1t")) == set(first_run)

    second_run: list[str] = []
    summary = profile_device(session_factory, "cpu-1t", keys, fast_policy, recorder(second_run))

    assert (summary.already_measured, summary.measured_now) == (5, len(keys) - 5)
    assert len(second_run) == len(keys) - 5
    assert set(second_run) == set(keys) - set(first_run)
    assert sorted(stored_lut(session_factory, "cpu-1t")) == sorted(keys)


def test_profiling_a_remote_device_is_refused(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    add_device(session_factory, "pixel-7", local=False, facts={"soc": "Tensor G2"})

    with pytest.raises(NotThisMachineError, match="hwnas lut kit pixel-7"):
        profile_device(session_factory, "pixel-7", tiny_lut_space.block_keys(), fast_policy)

    assert stored_lut(session_factory, "pixel-7") == {}


def test_profiling_an_unknown_device_is_refused(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    with pytest.raises(DeviceNotFoundError, match="nowhere"):
        profile_device(session_factory, "nowhere", tiny_lut_space.block_keys(), fast_policy)


# --- one table per device ----------------------------------------------------------------------------


# Two devices' tables on PostgreSQL: test_store.py and the profile/resume tests here.
@SQLITE_ONLY
def test_thread_counts_are_devices_with_their_own_tables(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy
) -> None:
    keys = tiny_lut_space.block_keys()
    add_device(session_factory, "cpu-1t", threads=1)
    add_device(session_factory, "cpu-2t", threads=2)

    profile_device(session_factory, "cpu-1t", keys, fast_policy)
    one_thread_before = stored_lut(session_factory, "cpu-1t")
    summary = profile_device(session_factory, "cpu-2t", keys, fast_policy)

    # The second device measured everything itself and left the first one's table alone.
    assert summary.measured_now == len(keys)
    assert stored_lut(session_factory, "cpu-1t") == one_thread_before
    one, two = load_table(session_factory, "cpu-1t"), load_table(session_factory, "cpu-2t")
    assert (one.device.threads, two.device.threads) == (1, 2)
    assert one.missing_keys(keys) == [] and two.missing_keys(keys) == []
    assert len(one) == len(two) == len(keys)
    assert any(one.latency_ms(key) != two.latency_ms(key) for key in keys)
    assert {device.name: count for device, count in list_devices(session_factory)} == {
        "cpu-1t": len(keys),
        "cpu-2t": len(keys),
    }

    # The same networks priced for each device: every answer is the sum over that device's own table.
    predicted: dict[str, list[float]] = {"cpu-1t": [], "cpu-2t": []}
    for spec in sample_specs(tiny_lut_space, 5, seed=7):
        for name, table in (("cpu-1t", one), ("cpu-2t", two)):
            expected = sum(table.latency_ms(key) for key in spec.block_keys())
            predicted[name].append(load_predictor(session_factory, name).predict_ms(spec))
            assert predicted[name][-1] == pytest.approx(expected, rel=1e-12)
    assert predicted["cpu-1t"] != predicted["cpu-2t"]


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.mark.skipif(_usable_cpus() < 2, reason="a second thread needs a second core")
def test_two_threads_beat_one_on_a_large_key(session_factory: Sessions) -> None:
    # More runs than fast_policy: a run of this key takes about a millisecond, so this still costs < 0.1 s.
    policy = TimingPolicy(warmup_runs=3, min_runs=15, max_runs=60, batch_runs=5, max_seconds=0.3)
    add_device(session_factory, "cpu-1t", threads=1)
    add_device(session_factory, "cpu-2t", threads=2)
    best: dict[str, float] = {}
    for name in ("cpu-1t", "cpu-2t"):
        profile_device(session_factory, name, [LARGE_KEY], policy)
        best[name] = load_table(session_factory, name).latency_ms(LARGE_KEY)

    # Up to two more attempts each, keeping the best, so a busy neighbour cannot hide the speed-up.
    for _ in range(2):
        if best["cpu-2t"] < 0.9 * best["cpu-1t"]:
            break
        time.sleep(0.5)
        for name in best:
            threads = get_device(session_factory, name).threads
            best[name] = min(best[name], measure_key(LARGE_KEY, threads, policy).median_ms)

    faster = best["cpu-2t"] < 0.9 * best["cpu-1t"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if not faster and load > _usable_cpus() - 0.5:
        # This test process keeps one core busy; a load near the core count means others take the second.
        pytest.skip(f"no free core for the second thread (load {load:.1f} on {_usable_cpus()} cores): {best}")
    assert faster, f"best medians {best} with load {load:.1f} on {_usable_cpus()} cores"


# --- checking a table against end-to-end measurements ------------------------------------------------


def test_check_reports_three_predictors_and_stores_what_it_measured(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy, tiny_lut: dict[str, LutEntry]
) -> None:
    local_device_with_tiny_lut(session_factory, "cpu-1t", tiny_lut)
    measured: list[str] = []

    report = check_device(
        session_factory, "cpu-1t", tiny_lut_space, n=6, n_calibration=4, policy=fast_policy, progress=recorder(measured)
    )

    assert isinstance(report, AccuracyReport)
    assert (report.device, report.n_calibration, report.n_evaluation) == ("cpu-1t", 4, 6)
    assert {score.name for score in report.scores} == PREDICTORS
    for score in report.scores:
        assert score.n == 6
        assert 0.0 <= score.within_5pct <= score.within_10pct <= 1.0
        assert math.isfinite(score.rmse_ms) and score.rmse_ms >= 0
    assert report.calibration.n_measurements == 4
    # 4 networks: too few for cross-validation, so the richest sane model they support
    assert report.calibration.method in {"linear-sum", "scale", "identity"}

    assert len(measured) == 10
    rows = stored_measurements(session_factory, "cpu-1t")
    specs = sample_specs(tiny_lut_space, 10, seed=0)
    assert sorted(row.arch_hash for row in rows) == sorted(spec.content_hash() for spec in specs)
    assert all(math.isfinite(row.median_ms) and row.median_ms > 0 and row.madds > 0 for row in rows)

    with session_scope(session_factory) as session:
        saved = CalibrationRepository(session).get(DeviceRepository(session).require("cpu-1t").id)
    assert saved is not None
    assert (saved.method, saved.n_measurements) == (report.calibration.method, 4)
    assert saved.coefficients["scopes"][calibration_scope(tiny_lut_space)] == report.calibration.to_dict()
    assert load_predictor(session_factory, "cpu-1t", tiny_lut_space).calibration == report.calibration
    # a calibration holds for the networks it was fitted on: another space gets none
    assert load_predictor(session_factory, "cpu-1t").calibration.n_measurements == 0


def test_check_again_reuses_the_stored_measurements(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy, tiny_lut: dict[str, LutEntry]
) -> None:
    local_device_with_tiny_lut(session_factory, "cpu-1t", tiny_lut)
    first = check_device(session_factory, "cpu-1t", tiny_lut_space, n=6, n_calibration=4, policy=fast_policy)
    rows_before = stored_measurements(session_factory, "cpu-1t")
    measured_again: list[str] = []

    second = check_device(
        session_factory,
        "cpu-1t",
        tiny_lut_space,
        n=6,
        n_calibration=4,
        policy=fast_policy,
        progress=recorder(measured_again),
    )

    assert measured_again == []
    assert stored_measurements(session_factory, "cpu-1t") == rows_before
    assert report_json(second) == report_json(first)


def test_check_without_a_complete_table_names_the_missing_keys(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy, tiny_lut: dict[str, LutEntry]
) -> None:
    add_device(session_factory, "cpu-1t", threads=1)
    keys = sorted(tiny_lut)
    store_lut_entries(session_factory, "cpu-1t", {key: tiny_lut[key] for key in keys[3:]})

    with pytest.raises(MissingKeysError, match=r"lacks 3 key\(s\)") as raised:
        check_device(session_factory, "cpu-1t", tiny_lut_space, n=6, n_calibration=4, policy=fast_policy)

    assert raised.value.missing == keys[:3]
    assert stored_measurements(session_factory, "cpu-1t") == []


def test_check_needs_at_least_one_network(session_factory: Sessions, tiny_lut_space: SearchSpace) -> None:
    add_device(session_factory, "cpu-1t", threads=1)
    with pytest.raises(ValueError, match="n must be at least 1"):
        check_device(session_factory, "cpu-1t", tiny_lut_space, n=0)


# --- profiling kits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KitRun:
    manifest: KitManifest
    zip_path: Path
    results: dict[str, Any]

    def text(self) -> str:
        return json.dumps(self.results)


def run_kit(zip_path: Path, workdir: Path) -> dict[str, Any]:
    """Unzip a kit and run its runner.py in its own Python process, as a user would on the device."""
    kit_dir = workdir / "unzipped"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(kit_dir)
    completed = subprocess.run(
        [sys.executable, "runner.py"], cwd=kit_dir, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads((kit_dir / "results.json").read_text())


def make_kit(
    sessions: Sessions, name: str, keys: list[str], policy: TimingPolicy, workdir: Path, **facts: str
) -> KitRun:
    add_device(sessions, name, threads=1, local=False, facts=facts or {"soc": "test"})
    zip_path = workdir / f"{name}-kit.zip"
    manifest = create_kit(sessions, name, keys, zip_path, policy=policy)
    return KitRun(manifest, zip_path, run_kit(zip_path, workdir))


def tampered(results: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> str:
    copy = json.loads(json.dumps(results))
    change(copy)
    return json.dumps(copy)


def _wrong_sha256(results: dict[str, Any]) -> None:
    results["results"][3]["sha256"] = "0" * 64


def _negative_median(results: dict[str, Any]) -> None:
    results["results"][1]["median_ms"] = -1


def _unknown_key(results: dict[str, Any]) -> None:
    results["results"][0]["key"] = "ir_k7_s1_e96_c16_re@8x8x16"


def _wrong_kit_version(results: dict[str, Any]) -> None:
    results["kit_version"] = 2


TAMPERS = {
    "wrong sha256": (_wrong_sha256, "'sha256'"),
    "negative median": (_negative_median, "'median_ms' must be a finite number > 0"),
    "unknown key": (_unknown_key, "is not in kit"),
    "wrong kit_version": (_wrong_kit_version, "'kit_version' must be 1"),
}


def test_kit_for_a_remote_device_fills_its_table(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy, tmp_path: Path
) -> None:
    keys = tiny_lut_space.block_keys()
    kit = make_kit(session_factory, "pixel-7", keys, fast_policy, tmp_path)

    assert kit.zip_path.is_file()
    assert read_manifest_from_kit(kit.zip_path) == kit.manifest
    assert sorted(kit.manifest.keys) == sorted(keys)
    assert (kit.manifest.device, kit.manifest.threads) == ("pixel-7", 1)
    assert stored_kits(session_factory, "pixel-7") == json.loads(kit.manifest.to_json())

    outcome = import_kit_results(session_factory, "pixel-7", kit.text())

    assert (outcome.covered, outcome.total, outcome.coverage) == (len(keys), len(keys), 1.0)
    stored = stored_lut(session_factory, "pixel-7")
    assert sorted(stored) == sorted(keys)
    assert {entry.source for entry in stored.values()} == {"kit"}
    assert all(math.isfinite(entry.median_ms) and entry.median_ms > 0 for entry in stored.values())
    measured = {result["key"]: result["median_ms"] for result in kit.results["results"]}
    assert {key: entry.median_ms for key, entry in stored.items()} == measured


def test_kit_results_partial_accepted_and_tampered_refused_leaving_the_table_alone(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy, tmp_path: Path
) -> None:
    keys = tiny_lut_space.block_keys()[::6]  # a few keys are enough to be refused; each costs an ONNX export
    kit = make_kit(session_factory, "pixel-7", keys, fast_policy, tmp_path)

    partial = tampered(kit.results, lambda results: results.update(results=results["results"][:2]))
    outcome = import_kit_results(session_factory, "pixel-7", partial)

    assert (outcome.covered, outcome.total) == (2, len(keys))
    assert outcome.coverage < 1
    before = stored_lut(session_factory, "pixel-7")
    assert len(before) == 2

    for label, (change, problem) in TAMPERS.items():
        with pytest.raises(KitImportError) as raised:
            import_kit_results(session_factory, "pixel-7", tampered(kit.results, change))
        assert any(problem in found for found in raised.value.problems), (label, raised.value.problems)
        assert problem in str(raised.value), label
        assert stored_lut(session_factory, "pixel-7") == before, label

    for label, text in {"not JSON": "{", "no kit_id": "[]", "unknown kit": '{"kit_id": "' + "f" * 32 + '"}'}.items():
        with pytest.raises(KitImportError):
            import_kit_results(session_factory, "pixel-7", text)
        assert stored_lut(session_factory, "pixel-7") == before, label


def test_results_of_another_devices_kit_are_refused(
    session_factory: Sessions, tiny_lut_space: SearchSpace, fast_policy: TimingPolicy, tmp_path: Path
) -> None:
    keys = tiny_lut_space.block_keys()[::6]
    kit = make_kit(session_factory, "pixel-7", keys, fast_policy, tmp_path)
    add_device(session_factory, "galaxy-s23", threads=1, local=False, facts={"soc": "Snapdragon 8 Gen 2"})

    with pytest.raises(KitImportError, match="another device's kit"):
        import_kit_results(session_factory, "galaxy-s23", kit.text())
    # Renaming the device inside the file does not help: the kit id still belongs to pixel-7.
    renamed = tampered(kit.results, lambda results: results.update(device="galaxy-s23"))
    with pytest.raises(KitImportError, match="another device's kit"):
        import_kit_results(session_factory, "galaxy-s23", renamed)

    assert stored_lut(session_factory, "galaxy-s23") == {}
    assert stored_lut(session_factory, "pixel-7") == {}


def test_kit_with_nothing_missing_is_refused(
    session_factory: Sessions, tiny_lut_space: SearchSpace, tiny_lut: dict[str, LutEntry], tmp_path: Path
) -> None:
    add_device(session_factory, "pixel-7", threads=1, local=False, facts={"soc": "test"})
    store_lut_entries(session_factory, "pixel-7", dict(tiny_lut))
    zip_path = tmp_path / "kit.zip"

    with pytest.raises(ValueError, match="nothing to put in a kit"):
        create_kit(session_factory, "pixel-7", tiny_lut_space.block_keys(), zip_path)

    assert not zip_path.exists()
    assert stored_kits(session_factory, "pixel-7") is None


def test_a_device_registered_by_hostname_before_machine_ids_is_adopted(session_factory: Sessions) -> None:
    """Migration 0007 copied the old hostname identity into `machine_id`; this host's devices are re-bound."""
    from nas.latency import adopt_legacy_devices
    from nas.store import DeviceRepository

    add_device(session_factory, "old-1t", threads=1)
    add_device(session_factory, "elsewhere-1t", threads=1)
    with session_scope(session_factory) as session:
        repository = DeviceRepository(session)
        for name, host in (("old-1t", platform.node()), ("elsewhere-1t", "another-host")):
            row = repository.require(name)
            row.machine_id, row.facts = host, {**row.facts, THIS_MACHINE_FACT: host}
    assert not is_this_machine(get_device(session_factory, "old-1t"))

    assert adopt_legacy_devices(session_factory) == ["old-1t"]
    assert is_this_machine(get_device(session_factory, "old-1t"))
    assert not is_this_machine(get_device(session_factory, "elsewhere-1t"))
    assert adopt_legacy_devices(session_factory) == []
