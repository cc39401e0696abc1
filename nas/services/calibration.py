"""Calibrating a device's predictor: the scope's calibration networks a remote device measures end to
end, and the accuracy report those measurements make possible.

Only networks of the scope's calibration set are served or accepted: the server picks them, so it
knows which ones fit the calibration and which ones score it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session, sessionmaker

from nas import latency, remote_measurements
from nas.calibration_set import calibration_set
from nas.services.errors import InvalidInput, NotFound, WrongState
from nas.services.fields import FiniteFloat, TimedMeasurement, checked_environment
from nas.services.kits import OnnxModel, exporting
from search_spaces.arch_spec import ArchSpec
from search_spaces.space import SearchSpace

MAX_NETWORKS_PER_UPLOAD = 1000
ArchHash = Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}$", description="the network's content hash")]


def _input_shape(spec: ArchSpec) -> list[int]:
    return [1, spec.in_channels, spec.resolution, spec.resolution]


# --- the calibration networks --------------------------------------------------------------------------


class MissingNetwork(BaseModel):
    arch_hash: str
    input_shape: list[int]
    held_out: bool = Field(description="scores the calibration instead of fitting it")


class MissingNetworks(BaseModel):
    device: str
    space: str
    total: int = Field(description="networks in the scope's calibration set")
    missing: list[MissingNetwork]


def missing_networks(sessions: sessionmaker[Session], name: str, space: SearchSpace) -> MissingNetworks:
    networks = calibration_set(space)
    missing = remote_measurements.missing_networks(sessions, name, space)
    return MissingNetworks(
        device=name,
        space=space.name,
        total=len(networks.all),
        missing=[
            MissingNetwork(
                arch_hash=spec.content_hash(),
                input_shape=_input_shape(spec),
                held_out=networks.is_held_out(spec.content_hash()),
            )
            for spec in missing
        ],
    )


def network_model(sessions: sessionmaker[Session], name: str, arch_hash: str, space: SearchSpace) -> OnnxModel:
    """One calibration network of the scope as ONNX (latency-neutral weights), as a kit holds it."""
    from latency_lut.profiler import network_onnx

    latency.get_device(sessions, name)  # an unknown device first
    spec = calibration_set(space).hashes.get(arch_hash)
    if spec is None:
        raise NotFound(
            f"{arch_hash!r} is no calibration network of space {space.name!r} as narrowed", field="arch_hash"
        )
    return OnnxModel(exporting(network_onnx, spec), tuple(_input_shape(spec)), f"{arch_hash[:16]}.onnx")


class NetworkMeasurementIn(TimedMeasurement):
    """One calibration network timed end to end."""

    arch_hash: ArchHash


class NetworkUpload(BaseModel):
    """End-to-end measurements of calibration networks, and what they were measured on."""

    model_config = ConfigDict(extra="forbid", strict=True)

    measurements: list[NetworkMeasurementIn] = Field(min_length=1, max_length=MAX_NETWORKS_PER_UPLOAD)
    environment: dict[str, str] | None = Field(default=None, description="what the networks were measured on")

    @field_validator("environment")
    @classmethod
    def _small_environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else checked_environment(value)

    @field_validator("measurements")
    @classmethod
    def _distinct(cls, value: list[NetworkMeasurementIn]) -> list[NetworkMeasurementIn]:
        hashes = [measurement.arch_hash for measurement in value]
        for index, arch_hash in enumerate(hashes):
            if arch_hash in hashes[:index]:
                raise ValueError(f"measurements[{index}]: network {arch_hash!r} is duplicated (one per network)")
        return value


class NetworkUploadAnswer(BaseModel):
    device: str
    space: str
    stored: int
    missing: int = Field(description="calibration networks still unmeasured")
    calibrated: bool = Field(description="the calibration was refitted on the complete set")
    within_10pct: FiniteFloat = Field(description="held-out share within ±10% after the refit")


def store_networks(
    sessions: sessionmaker[Session], name: str, space: SearchSpace, upload: NetworkUpload
) -> NetworkUploadAnswer:
    """All or nothing: a hash outside the scope's calibration set refuses the whole upload
    (`InvalidInput` naming `measurements.<i>.arch_hash`); a complete set refits the calibration."""
    latency.get_device(sessions, name)
    measurements = [
        remote_measurements.NetworkMeasurement(m.arch_hash, m.median_ms, m.iqr_ms, m.runs, m.runtime_version)
        for m in upload.measurements
    ]
    try:
        stored, report = remote_measurements.store_network_measurements(
            sessions, name, space, measurements, upload.environment
        )
    except remote_measurements.UnknownNetworkError as error:
        raise InvalidInput(str(error), field=f"measurements.{error.index}.arch_hash") from None
    return NetworkUploadAnswer(
        device=name,
        space=space.name,
        stored=stored,
        missing=len(remote_measurements.missing_networks(sessions, name, space)),
        calibrated=report is not None,
        within_10pct=report.score("calibrated").within_10pct if report is not None else None,
    )


# --- the accuracy report -------------------------------------------------------------------------------


class CalibrationRecord(BaseModel):
    """The calibration fitted on the calibration networks (latency_lut.predictor.Calibration)."""

    scale: FiniteFloat
    per_layer_ms: FiniteFloat
    offset_ms: FiniteFloat
    n_measurements: int
    method: str


class ScoreRecord(BaseModel):
    """One predictor scored on the held-out networks; null where a score is undefined."""

    name: str
    n: int
    within_5pct: FiniteFloat
    within_10pct: FiniteFloat
    rmse_ms: FiniteFloat
    mean_abs_pct_error: FiniteFloat
    spearman: FiniteFloat


class AccuracyRecord(BaseModel):
    """How well the device's lookup table predicts its stored end-to-end measurements of a space."""

    device: str
    n_calibration: int
    n_evaluation: int
    calibration: CalibrationRecord
    scores: dict[str, ScoreRecord] = Field(description="calibrated, lut_sum and madds_linear")
    space: str
    resolutions: list[int]
    widths: list[float]
    n_measurements: int = Field(description="end-to-end measurements the report used")


def accuracy(
    sessions: sessionmaker[Session], name: str, space: SearchSpace, n_calibration: int | None = None
) -> AccuracyRecord:
    """The report from the stored measurements (measures nothing); `WrongState` naming `device` when
    no network of the space was measured on it."""
    latency.get_device(sessions, name)
    stored = remote_measurements.stored_accuracy_report(sessions, name, space, n_calibration)
    if stored is None:
        flags = " ".join(f"-r {r}" for r in space.resolutions) + " " + " ".join(f"-w {w:g}" for w in space.widths)
        raise WrongState(
            f"no end-to-end measurements of {space.name!r} networks are stored for device {name!r}; measure "
            f"some on the device itself: `hwnas lut check {name} --space {space.name} {flags}` "
            "(a local device: run it on the machine it describes)",
            field="device",
        )
    report, n_measurements = stored
    return AccuracyRecord.model_validate(
        {
            **report.to_dict(),
            "space": space.name,
            "resolutions": list(space.resolutions),
            "widths": list(space.widths),
            "n_measurements": n_measurements,
        }
    )


# `hwnas lut check`: measure random networks of a space on this machine, fit and score the device's
# calibration and store it. The service is the latency floor's own function.
check_this_machine = latency.check_device
