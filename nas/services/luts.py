"""A device's lookup table: its entries, the keys of a space it lacks, and the uploads that fill it.

An upload is either the agent's JSON (`{"measurements": [...], "threads": T}`) or a kit runner's results
file (`{"kit_id": ..., "results": [...]}`); `read_upload` reads it once into one of two typed records,
and `store_upload` stores it all or nothing. Every refusal is a `ServiceError` naming its field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator
from sqlalchemy.orm import Session, sessionmaker

from latency_lut.kit import KitImportError
from latency_lut.table import LutEntry
from nas import latency, remote_measurements
from nas.services import devices, kits
from nas.services.devices import SpaceCoverage
from nas.services.errors import InvalidInput, UnreadableInput
from nas.services.fields import TimedMeasurement, checked_environment
from nas.store import DeviceRepository, LutRepository, session_scope
from search_spaces.arch_spec import LayerKey
from search_spaces.space import SearchSpace

MAX_MEASUREMENTS_PER_UPLOAD = 10_000


# --- reading the table ---------------------------------------------------------------------------------


class LutEntryRecord(BaseModel):
    key: str
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str
    source: str = Field(description="profiler, kit or agent")
    measured_at: datetime | None

    @field_serializer("measured_at")
    def _iso(self, value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None


class LutPage(BaseModel):
    device: str
    total: int
    limit: int
    offset: int
    entries: list[LutEntryRecord] = Field(description="by key")


def entries_page(sessions: sessionmaker[Session], name: str, limit: int, offset: int) -> LutPage:
    with session_scope(sessions) as session:
        row = DeviceRepository(session).require(name)
        entries = LutRepository(session).entries(row.id)
    page = list(entries.values())[offset : offset + limit]
    return LutPage(
        device=name,
        total=len(entries),
        limit=limit,
        offset=offset,
        entries=[
            LutEntryRecord(
                key=entry.key,
                median_ms=entry.median_ms,
                iqr_ms=entry.iqr_ms,
                runs=entry.runs,
                runtime_version=entry.runtime_version,
                source=entry.source,
                measured_at=entry.measured_at,
            )
            for entry in page
        ],
    )


class MissingKeys(BaseModel):
    """A page of the block keys of a space the device's table lacks (what the agent measures next)."""

    device: str
    space: str
    total_keys: int
    total_missing: int
    limit: int
    offset: int
    keys: list[str]


def missing_page(
    sessions: sessionmaker[Session], name: str, space: SearchSpace, limit: int, offset: int
) -> MissingKeys:
    keys = space.block_keys()
    missing = latency.missing_keys(sessions, name, keys)
    return MissingKeys(
        device=name,
        space=space.name,
        total_keys=len(keys),
        total_missing=len(missing),
        limit=limit,
        offset=offset,
        keys=missing[offset : offset + limit],
    )


# --- uploads -------------------------------------------------------------------------------------------


class AgentMeasurement(TimedMeasurement):
    """One block key timed by the agent with the kit runner's protocol."""

    key: str = Field(min_length=1, max_length=200)

    @field_validator("key")
    @classmethod
    def _well_formed(cls, value: str) -> str:
        LayerKey.parse(value)  # raises ValueError naming the key
        return value


class AgentUpload(BaseModel):
    """The agent's upload: measured block keys, the thread count and environment they were timed with."""

    model_config = ConfigDict(extra="forbid", strict=True)

    measurements: list[AgentMeasurement] = Field(min_length=1, max_length=MAX_MEASUREMENTS_PER_UPLOAD)
    threads: int | None = Field(default=None, ge=1, le=256, description="threads the agent timed with")
    environment: dict[str, str] | None = Field(
        default=None, description="what the batch was measured on (latency_lut.kit_runner.machine_environment)"
    )

    @field_validator("environment")
    @classmethod
    def _small_environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else checked_environment(value)

    @field_validator("measurements")
    @classmethod
    def _distinct(cls, value: list[AgentMeasurement]) -> list[AgentMeasurement]:
        seen: set[str] = set()
        for index, measurement in enumerate(value):
            if measurement.key in seen:
                raise ValueError(f"measurements[{index}]: key {measurement.key!r} is duplicated (one per key)")
            seen.add(measurement.key)
        return value


@dataclass(frozen=True)
class KitResults:
    """A kit runner's results file: what the answer reports, and the file as the runner wrote it (the
    kit's own checks, against the manifest it names, read that)."""

    kit_id: str | None
    keys: tuple[str, ...]
    content: bytes


LutUpload = AgentUpload | KitResults


def read_upload(content: bytes, part: str = "body") -> LutUpload:
    """The upload as one typed record; `part` names the upload in refusals (`body` or a form's `file`).

    Raises `UnreadableInput` (not JSON), `InvalidInput` (empty, not an object, neither form) or
    pydantic's `ValidationError`, whose locations are the fields of the agent's JSON.
    """
    if not content.strip():
        raise InvalidInput("the upload is empty: send a kit's results file or the agent's measurements", field=part)
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError) as error:
        raise UnreadableInput(f"the upload is not valid JSON: {error}", field=part) from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"the upload must be a JSON object, got {type(payload).__name__}", field=part)
    if "measurements" in payload:
        return AgentUpload.model_validate(payload)
    if "kit_id" in payload or "results" in payload:
        results = payload.get("results")
        keys = (
            tuple(r["key"] for r in results if isinstance(r, dict) and isinstance(r.get("key"), str))
            if isinstance(results, list)
            else ()
        )
        kit_id = payload.get("kit_id")
        return KitResults(kit_id if isinstance(kit_id, str) else None, keys, content)
    raise InvalidInput(
        "the upload is neither a kit's results file (with 'kit_id' and 'results') nor the agent's "
        "measurements (with 'measurements')",
        field=part,
    )


class KitCoverage(BaseModel):
    kit_id: str | None
    covered: int = Field(description="the kit's models this file measured")
    total: int = Field(description="models in the kit")
    coverage: float


class AgentUploadAnswer(BaseModel):
    source: Literal["agent"] = "agent"
    imported: int = Field(description="entries written")
    already_present: int = Field(description="of them, entries that replaced one already in the table")
    device: str
    lut_entries: int = Field(description="the table's size now")
    coverage: SpaceCoverage | None = Field(description="the device's coverage of the named space; null without one")


class KitUploadAnswer(BaseModel):
    source: Literal["kit"] = "kit"
    imported: int = Field(description="block-key entries written")
    networks_imported: int = Field(description="calibration networks stored as end-to-end measurements")
    already_present: int = Field(description="of the entries, those that replaced one already in the table")
    kit: KitCoverage
    device: str
    lut_entries: int = Field(description="the table's size now")
    coverage: SpaceCoverage | None = Field(description="the device's coverage of the named space; null without one")


LutUploadAnswer = Annotated[AgentUploadAnswer | KitUploadAnswer, Field(discriminator="source")]


def _already_present(sessions: sessionmaker[Session], name: str, keys: list[str] | tuple[str, ...]) -> set[str]:
    return set(keys) - set(latency.missing_keys(sessions, name, keys))


def _store_agent(sessions: sessionmaker[Session], name: str, upload: AgentUpload) -> tuple[int, int]:
    device = latency.get_device(sessions, name)
    if upload.threads is not None and upload.threads != device.threads:
        raise InvalidInput(
            f"measured with {upload.threads} thread(s), but device {name!r} uses {device.threads}: "
            "another thread count is another device",
            field="threads",
        )
    entries = {m.key: LutEntry(m.median_ms, m.iqr_ms, m.runs, m.runtime_version, "agent") for m in upload.measurements}
    present = _already_present(sessions, name, list(entries))
    return latency.store_lut_entries(sessions, name, entries, upload.environment), len(present)


def _store_kit(sessions: sessionmaker[Session], name: str, results: KitResults, part: str) -> dict:
    latency.get_device(sessions, name)
    present = _already_present(sessions, name, results.keys)
    try:
        outcome = remote_measurements.import_kit_results(sessions, name, results.content)
    except KitImportError as error:
        raise kits.refusal(error, part) from None
    return {
        "imported": len(outcome.entries),
        "networks_imported": len(outcome.networks),
        "already_present": len(present & set(outcome.entries)),
        "kit": KitCoverage(
            kit_id=results.kit_id, covered=outcome.covered, total=outcome.total, coverage=outcome.coverage
        ),
    }


def store_upload(
    sessions: sessionmaker[Session], name: str, upload: LutUpload, part: str = "body", space: SearchSpace | None = None
) -> AgentUploadAnswer | KitUploadAnswer:
    """Store an upload, all or nothing; with `space` the answer holds the device's new coverage of it.

    A kit's results are checked against the kit's manifest (unknown or duplicated keys, non-finite or
    non-positive times, checksums, kit id, thread count) and refused as a whole with every problem.
    """
    if isinstance(upload, AgentUpload):
        imported, present = _store_agent(sessions, name, upload)
        stored: dict = {"imported": imported, "already_present": present}
    else:
        stored = _store_kit(sessions, name, upload, part)
    with session_scope(sessions) as session:
        lut_entries = LutRepository(session).count(DeviceRepository(session).require(name).id)
    now = {
        "device": name,
        "lut_entries": lut_entries,
        "coverage": devices.coverage(sessions, name, space) if space is not None else None,
    }
    return AgentUploadAnswer(**stored, **now) if isinstance(upload, AgentUpload) else KitUploadAnswer(**stored, **now)


def upload(
    sessions: sessionmaker[Session], name: str, content: bytes, part: str = "body", space: SearchSpace | None = None
) -> AgentUploadAnswer | KitUploadAnswer:
    """`read_upload`, then `store_upload`."""
    return store_upload(sessions, name, read_upload(content, part), part, space)
