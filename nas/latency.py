"""Devices and their lookup tables, backed by the store.

The glue between `latency_lut` (which measures and predicts) and `nas.store` (which remembers):
profiling writes every key as soon as it is measured, so an interrupted run resumes where it
stopped; a check measures whole networks once and keeps them for later reports and calibrations.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from latency_lut.device import Device, this_machine
from latency_lut.kit_runner import Measurement, TimingPolicy, machine_environment
from latency_lut.predictor import Calibration, LatencyPredictor, MissingKeysError
from latency_lut.profiler import ReferenceClock, profile_keys, reference_network
from latency_lut.profiler import measure_networks as measure_networks_in_rounds
from latency_lut.report import AccuracyReport, accuracy_report
from latency_lut.table import LatencyTable, LutEntry
from nas.calibration_set import sample_specs
from nas.settings import machine_id
from nas.store import (
    CalibrationRepository,
    DeviceRepository,
    E2EMeasurementData,
    LutEntryData,
    LutRepository,
    MeasurementRepository,
    database_url,
    make_engine,
    session_factory,
    session_scope,
    upgrade_database,
)
from nas.store import Device as DeviceRow
from search_spaces.arch_spec import ArchSpec, LayerKey
from search_spaces.counting import count_spec
from search_spaces.space import SearchSpace

log = logging.getLogger("hwnas.latency")

THIS_MACHINE_FACT = "this_machine"
_SESSIONS: dict[str, sessionmaker[Session]] = {}

Progress = Callable[[int, int, str], None]


class NotThisMachineError(ValueError):
    def __init__(self, device: str) -> None:
        super().__init__(
            f"device {device!r} is not this machine (machine id {machine_id()}), so it cannot be profiled here; "
            f"build a profiling kit with `hwnas lut kit {device} -o kit.zip` and import its results"
        )


def open_sessions(url: str | None = None) -> sessionmaker[Session]:
    """Sessions on the configured database (HWNAS_DATABASE_URL or SQLite under ./.hwnas/), migrated."""
    resolved = url or database_url()
    if resolved not in _SESSIONS:
        engine = make_engine(resolved)
        upgrade_database(engine)
        _SESSIONS[resolved] = session_factory(engine)
        adopt_legacy_devices(_SESSIONS[resolved])
    return _SESSIONS[resolved]


def device_from_row(row: DeviceRow) -> Device:
    return Device(
        name=row.name,
        runtime=row.runtime,
        runtime_version=row.runtime_version,
        execution_provider=row.execution_provider,
        threads=row.threads,
        facts={str(k): str(v) for k, v in (row.facts or {}).items()},
    )


def adopt_legacy_devices(sessions: sessionmaker[Session]) -> list[str]:
    """Devices registered as this machine before machine ids (migration 0007) carry this machine's
    hostname as their machine id: bind them to this machine's id, so they stay local after an upgrade.
    Returns their names. A hostname that is not this one (another machine, a recreated container) is
    left alone."""
    host, mine = platform.node(), machine_id()
    if not host or host == mine:
        return []
    with session_scope(sessions) as session:
        rows = session.scalars(select(DeviceRow).where(DeviceRow.machine_id == host)).all()
        for row in rows:
            row.machine_id = mine
            row.facts = {**(row.facts or {}), THIS_MACHINE_FACT: mine}
        names = [row.name for row in rows]
    if names:
        log.info("devices %s (registered by hostname %s) are now bound to machine id %s", names, host, mine)
    return names


def machine_of(device: Device) -> str | None:
    """The machine id of the machine that measures `device` locally; None for a phone or board."""
    return device.facts.get(THIS_MACHINE_FACT) or None


def is_this_machine(device: Device) -> bool:
    """Whether this process runs on the machine `device` describes (by machine id, not hostname)."""
    return machine_of(device) == machine_id() and device.execution_provider == "CPUExecutionProvider"


def add_device(
    sessions: sessionmaker[Session],
    name: str,
    threads: int = 1,
    local: bool = True,
    facts: dict[str, str] | None = None,
    runtime_version: str | None = None,
    execution_provider: str = "CPUExecutionProvider",
    owner: str | None = None,
    shared: bool = True,
) -> Device:
    """Register a device: this machine (`local`: it carries this machine's id) or a remote one described
    by `facts`. `owner`: the API key that may write its LUT (None: the operator; admins only)."""
    if local:
        device = this_machine(name, threads)
        merged = {**device.facts, **(facts or {}), THIS_MACHINE_FACT: machine_id()}
        device = device.model_copy(update={"facts": merged})
    else:
        device = Device(
            name=name,
            threads=threads,
            facts=dict(facts or {}),
            execution_provider=execution_provider,
            **({"runtime_version": runtime_version} if runtime_version else {}),
        )
    with session_scope(sessions) as session:
        DeviceRepository(session).add(
            name=device.name,
            runtime_version=device.runtime_version,
            threads=device.threads,
            execution_provider=device.execution_provider,
            runtime=device.runtime,
            facts=dict(device.facts),
            owner=owner,
            shared=shared,
            machine_id=machine_of(device),
        )
    return device


def get_device(sessions: sessionmaker[Session], name: str) -> Device:
    with session_scope(sessions) as session:
        return device_from_row(DeviceRepository(session).require(name))


def list_devices(sessions: sessionmaker[Session]) -> list[tuple[Device, int]]:
    """Every device with the number of keys in its lookup table."""
    with session_scope(sessions) as session:
        lut = LutRepository(session)
        return [(device_from_row(row), lut.count(row.id)) for row in DeviceRepository(session).list()]


def load_table(sessions: sessionmaker[Session], name: str) -> LatencyTable:
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        stored = LutRepository(session).entries(row.id)
        device = device_from_row(row)
    entries = {key: LutEntry(e.median_ms, e.iqr_ms, e.runs, e.runtime_version, e.source) for key, e in stored.items()}
    return LatencyTable(device, entries)


def calibration_scope(space: SearchSpace) -> str:
    """Calibrations hold for the networks they were fitted on: one per space and resolution set."""
    return f"{space.name}@{'/'.join(str(r) for r in space.resolutions)}"


def stored_calibration_scopes(session: Session, device_id: int) -> dict[str, dict]:
    stored = CalibrationRepository(session).get(device_id)
    return dict(stored.coefficients.get("scopes", {})) if stored else {}


def load_predictor(sessions: sessionmaker[Session], name: str, space: SearchSpace | None = None) -> LatencyPredictor:
    """The device's table with the calibration stored for `space` (identity if none was fitted)."""
    table = load_table(sessions, name)
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        scopes = stored_calibration_scopes(session, row.id)
    found = scopes.get(calibration_scope(space)) if space is not None else None
    return LatencyPredictor(table, Calibration.from_dict(found) if found else Calibration())


def store_lut_entries(
    sessions: sessionmaker[Session],
    name: str,
    entries: dict[str, LutEntry],
    environment: dict[str, str] | None = None,
) -> int:
    """Store many entries in one transaction: all of them or, on any error, none."""
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        return _upsert_lut(session, row.id, entries, environment)


def _upsert_lut(
    session: Session, device_id: int, entries: dict[str, LutEntry], environment: dict[str, str] | None
) -> int:
    return LutRepository(session).upsert_many(
        device_id,
        [
            LutEntryData(key, e.median_ms, e.iqr_ms, e.runs, e.runtime_version, e.source, environment=environment)
            for key, e in entries.items()
        ],
    )


@dataclass(frozen=True)
class ProfileSummary:
    wanted: int
    already_measured: int
    measured_now: int
    seconds: float
    latencies_ms: dict[str, float] = field(default_factory=dict)  # what this run measured, by key


def missing_keys(sessions: sessionmaker[Session], name: str, keys: Sequence[str]) -> list[str]:
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        measured = LutRepository(session).measured_keys(row.id)
    return sorted(set(keys) - measured)


def profile_device(
    sessions: sessionmaker[Session],
    name: str,
    keys: Sequence[str],
    policy: TimingPolicy = TimingPolicy(),
    progress: Progress | None = None,
    resolution: int | None = None,
) -> ProfileSummary:
    """Measure the keys this device lacks on this machine, storing each one as soon as it is timed.

    Keys are timed beside the drift reference at `resolution`, the input size of the networks they
    belong to (default: the stem keys' input; without a stem key and `resolution`, no reference)."""

    device = get_device(sessions, name)
    if not is_this_machine(device):
        raise NotThisMachineError(name)
    todo = missing_keys(sessions, name, keys)
    started = time.perf_counter()
    wanted = len(set(keys))
    environment = machine_environment(device.threads, device.execution_provider)
    done = 0
    measured: dict[str, float] = {}

    def store(key: str, measurement: Measurement) -> None:
        nonlocal done
        store_lut_entries(sessions, name, {key: _entry(measurement, "profiler")}, environment=environment)
        measured[key] = measurement.median_ms
        done += 1
        if progress is not None:
            progress(done, len(todo), key)

    # Timed in groups of interleaved rounds beside the device's drift reference (at the keys' input
    # resolution); each key is stored as soon as its group is timed.
    network_resolution = resolution or _network_resolution(keys)
    if todo and network_resolution is None:
        profile_keys(todo, device.threads, policy, on_measured=store)  # no reference known: as measured
    elif todo:
        clock = device_clock(sessions, name, network_resolution)
        profile_keys(todo, device.threads, policy, on_measured=store, clock=clock)
        save_clock(sessions, name, clock)
    return ProfileSummary(wanted, wanted - len(todo), len(todo), time.perf_counter() - started, measured)


def _network_resolution(keys: Sequence[str]) -> int | None:
    """The input resolution of the networks `keys` come from: the largest stem input among them (a
    key alone sees its layer's input, only the stem sees the network's); None without a stem key."""
    stems = [LayerKey.parse(key).input_shape[-1] for key in keys if key.startswith("stem")]
    return max(stems) if stems else None


def _entry(measurement: Measurement, source: str) -> LutEntry:
    return LutEntry(measurement.median_ms, measurement.iqr_ms, measurement.runs, measurement.runtime_version, source)


def measure_networks(
    sessions: sessionmaker[Session],
    name: str,
    specs: Sequence[ArchSpec],
    policy: TimingPolicy = TimingPolicy(),
    progress: Progress | None = None,
) -> list[float]:
    """End-to-end latency of each network on this machine; reuses stored measurements."""
    device = get_device(sessions, name)
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        known = {m.arch_hash: m.median_ms for m in MeasurementRepository(session).list(row.id)}
    todo = list({spec.content_hash(): spec for spec in specs if spec.content_hash() not in known}.values())
    if todo and not is_this_machine(device):
        raise NotThisMachineError(name)
    environment = machine_environment(device.threads, device.execution_provider)
    index = 0

    def store(spec: ArchSpec, measurement: Measurement) -> None:
        nonlocal index
        index += 1
        data = e2e_measurement_data(spec, measurement, environment)
        with session_scope(sessions) as session:
            row = DeviceRepository(session).require(name)
            MeasurementRepository(session).upsert(row.id, data)
        known[data.arch_hash] = data.median_ms
        if progress is not None:
            progress(index, len(todo), spec.to_string()[:60])

    # Timed in groups of interleaved rounds (calibration and scored networks share the same minutes),
    # each group beside the device's drift reference at the networks' resolution.
    for resolution in sorted({spec.resolution for spec in todo}):
        clock = device_clock(sessions, name, resolution)
        same_size = [spec for spec in todo if spec.resolution == resolution]
        measure_networks_in_rounds(same_size, device.threads, policy, on_measured=store, clock=clock)
        save_clock(sessions, name, clock)
    return [known[spec.content_hash()] for spec in specs]


def e2e_measurement_data(spec: ArchSpec, measured: Any, environment: dict[str, str] | None) -> E2EMeasurementData:
    """The stored row of one end-to-end measurement (`measured`: anything with median_ms, iqr_ms,
    runs and runtime_version: a local `Measurement`, a kit's or an agent's result)."""
    return E2EMeasurementData(
        arch_hash=spec.content_hash(),
        spec_json=spec.model_dump(mode="json"),
        median_ms=measured.median_ms,
        iqr_ms=measured.iqr_ms,
        runs=measured.runs,
        runtime_version=measured.runtime_version,
        madds=count_spec(spec).madds,
        environment=environment,
    )


def measure_now(
    sessions: sessionmaker[Session], name: str, specs: Sequence[ArchSpec], policy: TimingPolicy = TimingPolicy()
) -> list[float]:
    """End-to-end latency of `specs` on this machine now, on the device's reference scale; stores
    nothing (a search's winner, a baseline, a re-measurement)."""
    device = get_device(sessions, name)
    if not is_this_machine(device):
        raise NotThisMachineError(name)
    found: dict[str, float] = {}
    for resolution in sorted({spec.resolution for spec in specs}):
        clock = device_clock(sessions, name, resolution)
        same_size = [spec for spec in specs if spec.resolution == resolution]
        for spec, measured in zip(
            same_size, measure_networks_in_rounds(same_size, device.threads, policy, clock=clock), strict=True
        ):
            found[spec.content_hash()] = measured.median_ms
        save_clock(sessions, name, clock)
    return [found[spec.content_hash()] for spec in specs]


def local_pricing(
    sessions: sessionmaker[Session], name: str, resolution: int, policy: TimingPolicy = TimingPolicy()
) -> tuple[Callable[[list[str]], dict[str, float]], Callable[[ArchSpec], float]]:
    """What a search on this machine's device `name` prices and measures with, both on the device's
    reference scale: (keys the table lacks -> their latency, profiled beside the drift reference at
    `resolution` and stored; a network -> its end-to-end latency now, stored nowhere). The worker
    and the benchmarks use the same two, so a benchmark's search sees what a user's does."""

    def latency_for_missing(keys: list[str]) -> dict[str, float]:
        measured = profile_device(sessions, name, keys, policy, resolution=resolution).latencies_ms
        if set(keys) <= set(measured):
            return measured
        table = load_table(sessions, name)  # stored meanwhile by another process
        return {key: measured[key] if key in measured else table.latency_ms(key) for key in keys}

    def measure(spec: ArchSpec) -> float:
        return measure_now(sessions, name, [spec], policy)[0]

    return latency_for_missing, measure


REFERENCES = "references"
"""Key of the calibration document holding the drift reference's anchor latency per reference network."""


def _coefficients(session: Session, device_id: int) -> dict:
    stored = CalibrationRepository(session).get(device_id)
    return dict(stored.coefficients) if stored else {}


def device_clock(sessions: sessionmaker[Session], name: str, resolution: int) -> ReferenceClock:
    """The device's drift reference at `resolution`, with the anchor stored when it was first timed."""
    reference = reference_network(resolution)
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        anchors = _coefficients(session, row.id).get(REFERENCES, {})
    return ReferenceClock(reference, anchors.get(reference.content_hash()))


def save_clock(sessions: sessionmaker[Session], name: str, clock: ReferenceClock) -> None:
    """Keep a new anchor (the first time the reference was timed on this device); never move one."""
    if clock.anchor_ms is None:
        return
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        repository = CalibrationRepository(session)
        stored = repository.get(row.id)
        coefficients = dict(stored.coefficients) if stored else {"scopes": {}}
        anchors = dict(coefficients.get(REFERENCES, {}))
        if clock.digest in anchors:
            return
        anchors[clock.digest] = clock.anchor_ms
        coefficients[REFERENCES] = anchors
        repository.save(
            row.id, stored.method if stored else "identity", coefficients, stored.n_measurements if stored else 0
        )


def check_device(
    sessions: sessionmaker[Session],
    name: str,
    space: SearchSpace,
    n: int = 200,
    n_calibration: int = 20,
    seed: int = 0,
    policy: TimingPolicy = TimingPolicy(),
    progress: Progress | None = None,
) -> AccuracyReport:
    """Measure `n_calibration + n` random networks end to end, fit the calibration on the first
    `n_calibration`, score on the other `n`, and store the fitted calibration for the device."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    predictor = load_predictor(sessions, name).with_calibration(Calibration())
    missing = predictor.table.missing_keys(space.block_keys())
    if missing:
        raise MissingKeysError(name, missing)
    specs = sample_specs(space, n_calibration + n, seed)
    measured = measure_networks(sessions, name, specs, policy, progress)
    calibration, evaluation = split_calibration(list(zip(specs, measured, strict=True)), n_calibration)
    report = accuracy_report(predictor, calibration, evaluation)
    save_calibration(sessions, name, space, report.calibration)
    return report


Pair = tuple[ArchSpec, float]


def split_calibration(pairs: Sequence[Pair], n_calibration: int) -> tuple[list[Pair], list[Pair]]:
    """(calibration, evaluation): `n_calibration` pairs spread evenly over the measuring order, the rest.

    Spread rather than the first ones, so a machine whose speed drifts over minutes does not hand the
    calibration a different period than the evaluation.
    """
    chosen = set(np.linspace(0, len(pairs) - 1, n_calibration).round().astype(int).tolist()) if n_calibration else set()
    calibration = [pair for i, pair in enumerate(pairs) if i in chosen]
    evaluation = [pair for i, pair in enumerate(pairs) if i not in chosen]
    return calibration, evaluation


def save_calibration(sessions: sessionmaker[Session], name: str, space: SearchSpace, calibration: Calibration) -> None:
    """Store `calibration` for the space's scope beside the device's other scopes."""
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        coefficients = _coefficients(session, row.id)
        scopes = dict(coefficients.get("scopes", {}))
        scopes[calibration_scope(space)] = calibration.to_dict()
        coefficients["scopes"] = scopes  # drift-reference anchors stay beside the scopes
        CalibrationRepository(session).save(row.id, calibration.method, coefficients, calibration.n_measurements)
