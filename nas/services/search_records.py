"""The records a search is shown in: `SearchProgress` (what changes while it runs), `SearchSummary` /
`SearchRecord` (a search in a list / on its own), `CandidateRecord` (one evaluated architecture,
wherever candidates are listed: the API, the CLI, the dashboard), `EventRecord` (one line of its log);
and how they are built from the store's rows without server paths.

What the worker stored is shown without places on the server's disk: a result's `artifact_dir`
entries are dropped (architectures are named by id), and any text that mentions the artifact
directory, the temporary directory or the search's uploaded dataset file shows `<artifacts>`,
`<tmp>` or the dataset's id instead.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from sqlalchemy.orm import Session

from nas.search.request import DEFAULT_TRAIN_RESOLUTION
from nas.services import architectures
from nas.services.architectures import SearchArchitecture, spec_string
from nas.services.datasets import looks_like_path
from nas.services.records import Timestamp, json_safe
from nas.settings import default_artifact_dir
from nas.store import CandidateRecord as StoredCandidate
from nas.store import EventRecord as StoredEvent
from nas.store import Search
from nas.store.models import (
    CandidateEvaluation,
    CandidatePhase,
    CandidateStatus,
    EventLevel,
    SearchPhase,
    SearchStatus,
)

# Keys of a stored result or event whose values are server paths: never shown.
PRIVATE_KEYS = frozenset({"artifact_dir"})


# --- records -------------------------------------------------------------------------------------------


class SearchProgress(BaseModel):
    """What changes while a search runs: polled, and the data of every SSE `progress` event."""

    id: str
    status: SearchStatus
    phase: SearchPhase
    progress: float = Field(description="0 to 1")
    trials_done: int
    trials_total: int
    over_budget_skipped: int = Field(description="proposals predicted over budget, never trained")
    cancel_requested: bool
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str | None


class _AsStored(BaseModel):
    """Part of a result the worker stored as JSON: typed where known, shown with exactly the keys it
    has (older searches lack newer keys; a key the worker adds later passes through)."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _stored_keys_only(self, handler: SerializerFunctionWrapHandler):  # no return type: keeps the schema
        data = handler(self)
        present = self.model_fields_set  # extra keys included
        return {key: value for key, value in data.items() if key in present}


class ResultArchitecture(_AsStored):
    """The winner or the baseline as the search's result describes it."""

    name: str | None = None
    arch_hash: str | None = None
    accuracy: float | None = Field(default=None, description="validation accuracy at the deployment resolution")
    test_accuracy: float | None = Field(default=None, description="on the held-out test images")
    predicted_ms: float | None = None
    measured_ms: float | None = None
    params: int | None = None
    madds: int | None = None
    architecture_id: str | None = Field(default=None, description="GET /v1/architectures/{id}: its files")


class HeldOutSplit(_AsStored):
    test_fraction: float | None = None
    images: int | None = None
    indices: list[int] | None = Field(default=None, description="positions of the test images in the dataset")


class SearchResult(_AsStored):
    """What a finished search found: its winner beside the baseline, under the budget."""

    budget_ms: float | None = None
    resolution: int | None = None
    train_resolution: int | None = None
    fastest_ms: float | None = None
    test_split: HeldOutSplit | None = None
    trials: int | None = None
    over_budget_skipped: int | None = None
    seconds: float | None = None
    winner: ResultArchitecture | None = None
    baseline: ResultArchitecture | None = None


class SearchSummary(SearchProgress):
    """A search as lists show it."""

    budget_ms: float
    device: str
    space: str
    dataset: str = Field(description="a built-in dataset spec, or the id of an uploaded dataset")
    strategy: str
    effort: str | None
    resolution: int | None = Field(description="deployment resolution")
    train_resolution: int = Field(description="resolution the search's trials train at")
    owner: str | None
    attempts: int
    created_at: Timestamp
    request: dict[str, Any] = Field(description="the request as submitted (the dataset as shown above)")
    result: SearchResult | None
    winner_id: str | None
    baseline_id: str | None
    links: dict[str, str] = Field(description="self, candidates, pareto, events, cancel; winner, baseline once found")


class SearchRecord(SearchSummary):
    """One search: the summary and the architectures it exported."""

    architectures: list[SearchArchitecture]


class CandidateRecord(BaseModel):
    """One architecture a search evaluated (or skipped): the one candidate shape the API, the CLI and the
    dashboard show, whatever phase produced it."""

    id: int
    arch_hash: str
    phase: CandidatePhase
    status: CandidateStatus
    predicted_ms: float | None
    accuracy: float | None
    evaluation: CandidateEvaluation = Field(description="trained (own weights) or inherited (a supernet's)")
    accuracies: list[float | None] = Field(description="per epoch")
    params: int
    madds: int
    train_seconds: float | None
    spec: str = Field(description="the blocks in their short form ('' if the spec no longer parses)")
    trial_id: str | None
    error: str | None
    created_at: Timestamp


class ParetoCandidate(CandidateRecord):
    within_budget: bool


class ParetoFront(BaseModel):
    """The non-dominated completed candidates (accuracy up, latency down), fastest first."""

    search_id: str
    status: SearchStatus
    budget_ms: float
    items: list[ParetoCandidate]
    total: int


class EventRecord(BaseModel):
    """One line of a search's log; `id` is the SSE event id a client resumes after."""

    id: int
    kind: str
    level: EventLevel
    message: str
    data: dict[str, Any]
    created_at: Timestamp


# --- no server paths ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redactor:
    """Replaces server paths in what the worker wrote (messages, errors, event data, results)."""

    patterns: tuple[tuple[str, re.Pattern[str], str], ...]  # (root, where it starts a path, shown instead)

    def text(self, value: str) -> str:
        if "/" not in value:  # every root is an absolute path: most messages need no regex at all
            return value
        for root, pattern, shown in self.patterns:
            if root in value:
                value = pattern.sub(shown, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items() if key not in PRIVATE_KEYS}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


def _spellings(path: Path) -> set[str]:
    """The absolute ways a directory may be written (as configured, resolved); never "/" itself."""
    spellings = {str(path)}
    try:
        spellings.add(str(path.resolve()))
    except OSError:
        pass
    return {text.rstrip("/") for text in spellings if Path(text).is_absolute() and len(text.rstrip("/")) > 1}


def redactor(row: Search, artifact_dir: Path | None) -> Redactor:
    replacements: dict[str, str] = {}
    for root in (Path(tempfile.gettempdir()),):
        replacements.update(dict.fromkeys(_spellings(root), "<tmp>"))
    for root in {default_artifact_dir(), *([artifact_dir] if artifact_dir is not None else [])}:
        replacements.update(dict.fromkeys(_spellings(root), "<artifacts>"))
    loaded = str((row.request or {}).get("dataset") or "")
    if looks_like_path(loaded):
        replacements.update(dict.fromkeys(_spellings(Path(loaded)), dataset_label(row)))
    ordered = sorted(replacements.items(), key=lambda item: -len(item[0]))  # the longest (innermost) first
    # A root only where a path starts with it: not inside a longer name ("/var/tmp" is no "/tmp").
    patterns = [(root, re.compile(rf"(?<![\w.-]){re.escape(root)}(?![\w.-])"), shown) for root, shown in ordered]
    return Redactor(tuple(patterns))


def dataset_label(row: Search) -> str:
    """What a search shows as its dataset: its spec or upload id; a local file (the CLI's) by its name only."""
    return Path(row.dataset).name if looks_like_path(row.dataset) else row.dataset


# --- building records -------------------------------------------------------------------------------------


def search_links(public_id: str, result: SearchResult | None = None) -> dict[str, str]:
    base = f"/v1/searches/{public_id}"
    links = {
        "self": base,
        "candidates": f"{base}/candidates",
        "pareto": f"{base}/pareto",
        "events": f"{base}/events",
        "cancel": f"{base}/cancel",
    }
    for role in ("winner", "baseline"):
        entry = getattr(result, role, None) if result is not None else None
        if entry is not None and entry.architecture_id:
            links[role] = f"/v1/architectures/{entry.architecture_id}"
    return links


def progress_fields(row: Search, redact: Redactor) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "status": row.status,
        "phase": row.phase,
        "progress": row.progress,
        "trials_done": row.trials_done,
        "trials_total": row.trials_total,
        "over_budget_skipped": row.over_budget_skipped,
        "cancel_requested": row.cancel_requested,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "error": None if row.error is None else redact.text(row.error),
    }


def _result(stored: dict[str, Any] | None, redact: Redactor) -> SearchResult | None:
    """The worker's result summary with architecture ids in place of server paths."""
    if not stored:
        return None
    ids = dict(stored.get("architectures") or {})
    public = {key: value for key, value in stored.items() if key not in ("architectures", "winner", "baseline")}
    for role in ("winner", "baseline"):
        entry = stored.get(role)
        if isinstance(entry, dict):
            entry = {**entry, "architecture_id": ids.get(role)}
        public[role] = entry
    return SearchResult.model_validate(redact.value(public))


def summary_fields(row: Search, redact: Redactor) -> dict[str, Any]:
    request = dict(row.request or {})
    result = _result(row.result, redact)
    resolution = request.get("resolution")
    label = dataset_label(row)
    return {
        **progress_fields(row, redact),
        "budget_ms": row.budget_ms,
        "device": row.device.name,
        "space": row.space,
        "dataset": label,
        "strategy": row.strategy,
        "effort": request.get("effort"),
        "resolution": resolution,
        "train_resolution": request.get("train_resolution")
        or min(int(resolution or DEFAULT_TRAIN_RESOLUTION), DEFAULT_TRAIN_RESOLUTION),
        "owner": row.owner,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "request": json_safe({**request, "dataset": label}),
        "result": result,
        "winner_id": result.winner.architecture_id if result is not None and result.winner is not None else None,
        "baseline_id": result.baseline.architecture_id if result is not None and result.baseline is not None else None,
        "links": search_links(row.public_id, result),
    }


def search_record(session: Session, row: Search, artifact_dir: Path | None) -> SearchRecord:
    fields = summary_fields(row, redactor(row, artifact_dir))
    return SearchRecord(**fields, architectures=architectures.for_search(session, row.id))


def candidate_record(candidate: StoredCandidate, redact: Redactor | None = None) -> CandidateRecord:
    error = candidate.error if candidate.error is None or redact is None else redact.text(candidate.error)
    return CandidateRecord(
        **json_safe(
            {
                "id": candidate.id,
                "arch_hash": candidate.arch_hash,
                "phase": candidate.phase,
                "status": candidate.status,
                "predicted_ms": candidate.predicted_ms,
                "accuracy": candidate.accuracy,
                "evaluation": candidate.evaluation,
                "accuracies": list(candidate.accuracies),
                "params": candidate.params,
                "madds": candidate.madds,
                "train_seconds": candidate.train_seconds,
                "spec": spec_string(candidate.spec),
                "trial_id": candidate.trial_id,
                "error": error,
            }
        ),
        created_at=candidate.created_at,
    )


def event_record(event: StoredEvent, redact: Redactor) -> EventRecord:
    return EventRecord(
        id=event.id,
        kind=event.kind,
        level=event.level,
        message=redact.text(event.message),
        data=redact.value(event.data),
        created_at=event.created_at,
    )
