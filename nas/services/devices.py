"""Devices: who may see and change them, and the one record the API, the CLI and the worker speak in.

Tenancy: a device registered over HTTP belongs to the key that registered it (its `owner`); one
registered from the CLI on the server belongs to the operator (`owner` None). Anyone may read a
shared device and search on it; only the owner (or an admin) writes its lookup table, end-to-end
measurements, calibration and measurement-job answers. A private device (`shared=False`) is invisible
to other keys: it reads as 404, so its existence is not leaked. `viewer=None` is the operator (the CLI
and the worker on the server), who sees and changes everything.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session, sessionmaker

from latency_lut.device import check_device_name
from nas import latency
from nas.services.fields import printable
from nas.store import Device as DeviceRow
from nas.store import (
    DeviceAccessError,
    DeviceNotFoundError,
    DeviceRepository,
    KeyIdentity,
    LutRepository,
    MeasurementRepository,
    session_scope,
)
from search_spaces.space import SearchSpace

Viewer = KeyIdentity | None


class DeviceRecord(BaseModel):
    """A device as every caller sees it (also the API's response model)."""

    name: str
    runtime: str
    runtime_version: str
    execution_provider: str
    threads: int
    facts: dict[str, str] = Field(description="what the device is (soc, os, model, ...); set by whoever registered it")
    local: bool = Field(description="measured by a machine that runs hwnas (its worker profiles it on demand)")
    owner: str | None = Field(description="the API key id that registered it; null: the operator (CLI)")
    shared: bool = Field(description="other keys may read it and search on it")
    lut_entries: int
    e2e_measurements: int


def visible(row: DeviceRow, viewer: Viewer) -> bool:
    return viewer is None or viewer.admin or row.shared or (row.owner is not None and row.owner == viewer.key_id)


def writable(row: DeviceRow, viewer: Viewer) -> bool:
    return viewer is None or viewer.admin or (row.owner is not None and row.owner == viewer.key_id)


def require_row(session: Session, name: str, viewer: Viewer, *, write: bool = False) -> DeviceRow:
    """The device `name` as `viewer` may use it: 404 (`DeviceNotFoundError`) when it may not see it,
    `DeviceAccessError` (403) when `write` and it may not change it."""
    row = DeviceRepository(session).get_by_name(name)
    if row is None or not visible(row, viewer):
        raise DeviceNotFoundError(name)
    if write and not writable(row, viewer):
        raise DeviceAccessError(name)
    return row


def check_access(sessions: sessionmaker[Session], name: str, viewer: Viewer, *, write: bool = False) -> None:
    with session_scope(sessions) as session:
        require_row(session, name, viewer, write=write)


def _record(session: Session, row: DeviceRow) -> DeviceRecord:
    device = latency.device_from_row(row)
    return DeviceRecord(
        **device.model_dump(),
        local=latency.machine_of(device) is not None,
        owner=row.owner,
        shared=row.shared,
        lut_entries=LutRepository(session).count(row.id),
        e2e_measurements=MeasurementRepository(session).count(row.id),
    )


def get(sessions: sessionmaker[Session], name: str, viewer: Viewer) -> DeviceRecord:
    with session_scope(sessions) as session:
        return _record(session, require_row(session, name, viewer))


def list_visible(sessions: sessionmaker[Session], viewer: Viewer) -> list[DeviceRecord]:
    visible_to = None if viewer is None or viewer.admin else viewer.key_id
    with session_scope(sessions) as session:
        return [_record(session, row) for row in DeviceRepository(session).list(visible_to=visible_to)]


def register(
    sessions: sessionmaker[Session],
    name: str,
    *,
    viewer: Viewer,
    shared: bool = True,
    **device: Any,
) -> DeviceRecord:
    """Register a device owned by `viewer` (the operator when None); `device` as `latency.add_device`."""
    latency.add_device(sessions, name, owner=None if viewer is None else viewer.key_id, shared=shared, **device)
    return get(sessions, name, viewer)


class DeviceRegistration(BaseModel):
    """What registering a device takes (the body of POST /v1/devices); strict, so a client's mistake is
    refused rather than guessed at."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="unique; letters, digits, '.', '_' or '-', at most 100 characters")
    threads: int = Field(default=1, ge=1, le=256, description="ONNX Runtime intra-op threads")
    local: bool = Field(default=False, description="this server's machine (the server can profile it)")
    facts: dict[str, str] = Field(default_factory=dict, max_length=64, description="e.g. soc, os, phone model")
    runtime_version: str | None = Field(
        default=None, min_length=1, max_length=50, description="a remote device's onnxruntime version"
    )
    execution_provider: str = Field(default="CPUExecutionProvider", min_length=1, max_length=100)
    shared: bool = Field(default=True, description="other keys may read it and search on it (never write it)")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("facts")
    @classmethod
    def _valid_facts(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not key.strip() or len(key) > 64:
                raise ValueError(f"fact names must be 1-64 characters, got {key!r}")
            printable(key, "fact names")
            if len(text) > 500:
                raise ValueError(f"fact {key!r} is longer than 500 characters")
            printable(text, f"fact {key!r}")
            if key == latency.THIS_MACHINE_FACT:
                raise ValueError(f"fact {key!r} is set by the server for local devices; send local=true instead")
        return value

    @field_validator("runtime_version", "execution_provider")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else printable(value, "the value")


def register_device(sessions: sessionmaker[Session], registration: DeviceRegistration, viewer: Viewer) -> DeviceRecord:
    """`register` from a checked registration."""
    return register(sessions, registration.name, viewer=viewer, **registration.model_dump(exclude={"name"}))


# --- one device in detail ------------------------------------------------------------------------------


class EnvironmentUse(BaseModel):
    """One environment the device's measurements ran on, and how many of them it holds."""

    environment: dict[str, Any] | None = Field(description="null: measured before environments were recorded")
    lut_entries: int
    e2e_measurements: int


class SpaceCoverage(BaseModel):
    """How much of a (narrowed) space's block keys the device's lookup table holds."""

    space: str
    resolutions: list[int]
    widths: list[float]
    num_classes: int
    keys: int
    missing: int
    coverage: float = Field(description="share of the space's keys measured (1.0: all)")


class DeviceDetail(DeviceRecord):
    """A device with what its measurements ran on and, when a space was named, its coverage of it."""

    environments: list[EnvironmentUse] = Field(description="most used first")
    coverage: SpaceCoverage | None = Field(description="null unless a space was named")


def _environments(session: Session, row: DeviceRow) -> list[EnvironmentUse]:
    seen: dict[str, dict[str, Any]] = {}
    for what, found in (
        ("lut_entries", LutRepository(session).environments(row.id)),
        ("e2e_measurements", MeasurementRepository(session).environments(row.id)),
    ):
        for environment, count in found:
            token = json.dumps(environment, sort_keys=True)
            item = seen.setdefault(token, {"environment": environment, "lut_entries": 0, "e2e_measurements": 0})
            item[what] += count
    ordered = sorted(seen.values(), key=lambda item: -(item["lut_entries"] + item["e2e_measurements"]))
    return [EnvironmentUse(**item) for item in ordered]


def _coverage(session: Session, row: DeviceRow, space: SearchSpace) -> SpaceCoverage:
    keys = space.block_keys()
    missing = set(keys) - LutRepository(session).measured_keys(row.id)
    return SpaceCoverage(
        space=space.name,
        resolutions=list(space.resolutions),
        widths=list(space.widths),
        num_classes=space.num_classes,
        keys=len(keys),
        missing=len(missing),
        coverage=(len(keys) - len(missing)) / len(keys) if keys else 1.0,
    )


def coverage(sessions: sessionmaker[Session], name: str, space: SearchSpace) -> SpaceCoverage:
    with session_scope(sessions) as session:
        return _coverage(session, DeviceRepository(session).require(name), space)


def detail(
    sessions: sessionmaker[Session], name: str, viewer: Viewer, space: SearchSpace | None = None
) -> DeviceDetail:
    """The device as `viewer` may see it, with its environments and (given `space`) its coverage."""
    with session_scope(sessions) as session:
        row = require_row(session, name, viewer)
        return DeviceDetail(
            **_record(session, row).model_dump(),
            environments=_environments(session, row),
            coverage=_coverage(session, row, space) if space is not None else None,
        )
