"""What a device that is not this machine measures for the server: kits, calibration networks, and
the predictor report they make possible.

A phone cannot be measured from here, so the server hands it the work: block keys and the scope's
calibration networks (`nas.calibration_set`), in a kit or one by one through the agent. Whatever
comes back is stored in one transaction, and once every calibration network of a scope is measured
the calibration is fitted on the calibration part and scored on the held-out part, as `hwnas lut
check` does for this machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from latency_lut.kit import (
    JOB_KEY_PREFIX,
    NETWORK_KEY_PREFIX,
    KitImport,
    KitImportError,
    KitManifest,
    build_kit,
    network_key,
    validate_results,
)
from latency_lut.kit_runner import TimingPolicy
from latency_lut.predictor import Calibration, MissingKeysError
from latency_lut.report import AccuracyReport, accuracy_report
from latency_lut.table import LutEntry
from nas.calibration_set import CalibrationSet, calibration_set
from nas.latency import (
    Pair,
    Progress,
    calibration_scope,
    e2e_measurement_data,
    get_device,
    load_predictor,
    missing_keys,
    save_calibration,
    split_calibration,
    stored_calibration_scopes,
)
from nas.store import (
    DeviceRepository,
    KitRepository,
    LutEntryData,
    LutRepository,
    MeasurementRepository,
    session_scope,
)
from search_spaces.arch_spec import ArchSpec
from search_spaces.space import SPACES, SearchSpace


class UnknownNetworkError(ValueError):
    """A measurement names a network outside the scope's calibration set; nothing was stored."""

    def __init__(self, index: int, arch_hash: str, scope: str) -> None:
        self.index = index
        self.arch_hash = arch_hash
        super().__init__(
            f"measurements[{index}]: {arch_hash!r} is not one of the calibration networks of {scope} "
            "(GET .../networks/missing lists them)"
        )


@dataclass(frozen=True)
class NetworkMeasurement:
    """One calibration network timed end to end on the device."""

    arch_hash: str
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str


def _measured_hashes(session: Session, device_id: int) -> dict[str, float]:
    return {m.arch_hash: m.median_ms for m in MeasurementRepository(session).list(device_id)}


def missing_networks(sessions: sessionmaker[Session], name: str, space: SearchSpace) -> list[ArchSpec]:
    """The scope's calibration networks the device has no end-to-end measurement of (calibration first)."""
    with session_scope(sessions) as session:
        measured = _measured_hashes(session, DeviceRepository(session).require(name).id)
    return [spec for spec in calibration_set(space).all if spec.content_hash() not in measured]


def _e2e_data(spec: ArchSpec, entry: LutEntry | NetworkMeasurement, environment: dict[str, str] | None) -> Any:
    return e2e_measurement_data(spec, entry, environment)


def store_network_measurements(
    sessions: sessionmaker[Session],
    name: str,
    space: SearchSpace,
    measurements: Sequence[NetworkMeasurement],
    environment: dict[str, str] | None = None,
) -> tuple[int, AccuracyReport | None]:
    """Store measurements of the scope's calibration networks, all or none; refit when the set is complete.

    Returns (stored, the new report or None while networks or keys are still missing). A hash outside
    the set raises `UnknownNetworkError` before anything is written.
    """
    networks = calibration_set(space).hashes
    for index, measurement in enumerate(measurements):
        if measurement.arch_hash not in networks:
            raise UnknownNetworkError(index, measurement.arch_hash, calibration_scope(space))
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(name).id
        repository = MeasurementRepository(session)
        for measurement in measurements:
            repository.upsert(device_id, _e2e_data(networks[measurement.arch_hash], measurement, environment))
    return len(measurements), refit_calibration(sessions, name, space)


def _set_pairs(session: Session, device_id: int, networks: CalibrationSet) -> tuple[list[Pair], list[Pair]] | None:
    """(calibration, held-out) pairs when every network of the set is measured, else None."""
    measured = _measured_hashes(session, device_id)
    if any(spec.content_hash() not in measured for spec in networks.all):
        return None
    return (
        [(spec, measured[spec.content_hash()]) for spec in networks.calibration],
        [(spec, measured[spec.content_hash()]) for spec in networks.held_out],
    )


def refit_calibration(sessions: sessionmaker[Session], name: str, space: SearchSpace) -> AccuracyReport | None:
    """Fit the scope's calibration on the calibration networks and save it; None while anything is missing."""
    predictor = load_predictor(sessions, name).with_calibration(Calibration())
    if predictor.table.missing_keys(space.block_keys()):
        return None
    with session_scope(sessions) as session:
        pairs = _set_pairs(session, DeviceRepository(session).require(name).id, calibration_set(space))
    if pairs is None:
        return None
    report = accuracy_report(predictor, *pairs)
    save_calibration(sessions, name, space, report.calibration)
    return report


def stored_accuracy_report(
    sessions: sessionmaker[Session], name: str, space: SearchSpace, n_calibration: int | None = None
) -> tuple[AccuracyReport, int] | None:
    """The predictor report from the end-to-end measurements already stored for the device; measures nothing.

    When every calibration network of the scope is stored (and `n_calibration` is not given), the
    calibration networks fit and the held-out networks score. Otherwise the stored networks of `space`
    (resolution among the space's and every layer key one of the space's keys), in measuring order,
    are split as `check_device` splits them: after a single check the report is the check's own.
    `n_calibration` then defaults to the number the stored calibration was fitted on (20 when none
    was), always leaving one network to score on. Returns (report, networks used), or None when no
    network of the space has been measured.
    """
    predictor = load_predictor(sessions, name).with_calibration(Calibration())
    keys = set(space.block_keys())
    missing = predictor.table.missing_keys(keys)
    if missing:
        raise MissingKeysError(name, missing)
    networks = calibration_set(space)
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        fixed = _set_pairs(session, row.id, networks) if n_calibration is None else None
        stored = MeasurementRepository(session).list(row.id)
        fitted = stored_calibration_scopes(session, row.id).get(calibration_scope(space))
    if fixed is not None:
        return accuracy_report(predictor, *fixed), len(networks.all)
    pairs: list[Pair] = []
    for measurement in stored:
        spec = ArchSpec.model_validate(measurement.spec_json)
        if spec.resolution in space.resolutions and set(spec.block_keys()) <= keys:
            pairs.append((spec, measurement.median_ms))
    if not pairs:
        return None
    if n_calibration is None:
        n_calibration = int(fitted.get("n_measurements", 20)) if fitted else 20
    calibration, evaluation = split_calibration(pairs, min(n_calibration, len(pairs) - 1))
    return accuracy_report(predictor, calibration, evaluation), len(pairs)


# --- kits ---------------------------------------------------------------------------------------------


def _space_reference(space: SearchSpace) -> dict[str, Any]:
    """What a manifest records to rebuild the space: its name and how it was narrowed."""
    return {
        "name": space.name,
        "resolutions": list(space.resolutions),
        "widths": list(space.widths),
        "num_classes": space.num_classes,
    }


def _space_from_reference(reference: dict[str, Any] | None) -> SearchSpace | None:
    if not reference or reference.get("name") not in SPACES:
        return None
    return SPACES[reference["name"]].with_options(
        resolutions=reference["resolutions"], widths=reference["widths"], num_classes=reference["num_classes"]
    )


def create_kit(
    sessions: sessionmaker[Session],
    name: str,
    keys: Sequence[str],
    out_path: Path,
    missing_only: bool = True,
    progress: Progress | None = None,
    policy: TimingPolicy = TimingPolicy(),
    space: SearchSpace | None = None,
) -> KitManifest:
    """Build a profiling kit for the device and remember its manifest to check the results against.

    With `space`, the kit also holds the scope's calibration networks the device has not measured
    (keyed `net:<arch_hash>`), so the upload can calibrate the predictor and report its accuracy.
    """
    device = get_device(sessions, name)
    wanted = missing_keys(sessions, name, keys) if missing_only else sorted(set(keys))
    networks = (
        [(network_key(spec.content_hash()), spec) for spec in missing_networks(sessions, name, space)]
        if (space is not None)
        else []
    )
    if not wanted and not networks:
        raise ValueError(f"device {name!r} already has all {len(set(keys))} keys; nothing to put in a kit")
    report = None if progress is None else (lambda done, total: progress(done, total, ""))
    manifest = build_kit(
        device,
        wanted,
        Path(out_path),
        policy,
        report,
        networks=networks,
        space=_space_reference(space) if networks and space is not None else None,
    )
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        KitRepository(session).add(row.id, manifest.kit_id, manifest.kit_version, json.loads(manifest.to_json()))
    return manifest


def kit_manifest_for_results(sessions: sessionmaker[Session], name: str, results: bytes | str) -> KitManifest:
    """The manifest of the device's kit that a results file names; `KitImportError` if there is none."""
    try:
        payload = json.loads(results)
    except ValueError as error:
        raise KitImportError([f"not JSON: {error}"]) from None
    kit_id = payload.get("kit_id") if isinstance(payload, dict) else None
    if not isinstance(kit_id, str):
        raise KitImportError(["'kit_id' is missing: this is not a results file written by a kit's runner.py"])
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        found = KitRepository(session).manifest(kit_id)
        device_id = row.id
    if found is None:
        raise KitImportError([f"'kit_id' {kit_id!r} names no kit made by this server"])
    kit_device_id, manifest_data = found
    if kit_device_id != device_id:
        raise KitImportError([f"'kit_id' {kit_id!r} belongs to another device's kit, not {name!r}"])
    return KitManifest.model_validate(manifest_data)


def import_kit_results(sessions: sessionmaker[Session], name: str, results: bytes | str) -> KitImport:
    """Validate a kit's results file against the manifest it names and store it, all or nothing.

    Block keys become LUT entries, `net:` networks end-to-end measurements, in one transaction; then,
    if the kit's space now has all its calibration networks, the calibration is refitted.
    """
    manifest = kit_manifest_for_results(sessions, name, results)
    if any(model.key.startswith(JOB_KEY_PREFIX) for model in manifest.models):
        raise KitImportError(
            [f"'kit_id' {manifest.kit_id!r} is a verification kit: upload its results to .../{name}/jobs/results"]
        )
    outcome = validate_results(manifest, results)
    if not outcome.ok:
        raise KitImportError(outcome.problems)
    specs = {model.key: ArchSpec.model_validate(model.spec) for model in manifest.models if model.spec is not None}
    environment = outcome.environment
    with session_scope(sessions) as session:
        device_id = DeviceRepository(session).require(name).id
        LutRepository(session).upsert_many(
            device_id,
            [
                LutEntryData(key, e.median_ms, e.iqr_ms, e.runs, e.runtime_version, e.source, environment=environment)
                for key, e in outcome.entries.items()
            ],
        )
        measurements = MeasurementRepository(session)
        for key, entry in outcome.networks.items():
            if key.startswith(NETWORK_KEY_PREFIX):
                measurements.upsert(device_id, _e2e_data(specs[key], entry, outcome.environment))
    space = _space_from_reference(manifest.space)
    if space is not None:
        refit_calibration(sessions, name, space)
    return outcome


__all__ = [
    "NetworkMeasurement",
    "UnknownNetworkError",
    "create_kit",
    "import_kit_results",
    "kit_manifest_for_results",
    "missing_networks",
    "refit_calibration",
    "store_network_measurements",
    "stored_accuracy_report",
]
