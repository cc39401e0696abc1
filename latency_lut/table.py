"""The latency lookup table: one device, one measured latency per layer key."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from latency_lut.device import Device

LUT_FORMAT = "hwnas-lut"
LUT_FORMAT_VERSION = 1


class LutFormatError(ValueError):
    """A lookup-table file that cannot be read; the message names every problem."""


@dataclass(frozen=True)
class LutEntry:
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str
    source: str = "profiler"

    def problems(self) -> list[str]:
        found = []
        if not (isinstance(self.median_ms, int | float) and math.isfinite(self.median_ms) and self.median_ms > 0):
            found.append(f"median_ms must be a finite positive number, got {self.median_ms!r}")
        if not (isinstance(self.iqr_ms, int | float) and math.isfinite(self.iqr_ms) and self.iqr_ms >= 0):
            found.append(f"iqr_ms must be a finite number >= 0, got {self.iqr_ms!r}")
        if not (isinstance(self.runs, int) and self.runs >= 1):
            found.append(f"runs must be an integer >= 1, got {self.runs!r}")
        return found


class LatencyTable:
    """device + key -> measured latency, with a versioned JSON form."""

    def __init__(self, device: Device, entries: Mapping[str, LutEntry] | None = None) -> None:
        self.device = device
        self.entries: dict[str, LutEntry] = dict(entries or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def latency_ms(self, key: str) -> float:
        return self.entries[key].median_ms

    def add(self, key: str, entry: LutEntry) -> None:
        self.entries[key] = entry

    def missing_keys(self, keys: Iterable[str]) -> list[str]:
        return sorted(key for key in set(keys) if key not in self.entries)

    def coverage(self, keys: Iterable[str]) -> float:
        wanted = set(keys)
        if not wanted:
            return 1.0
        return sum(1 for key in wanted if key in self.entries) / len(wanted)

    def to_json(self) -> str:
        payload = {
            "format": LUT_FORMAT,
            "version": LUT_FORMAT_VERSION,
            "device": self.device.model_dump(mode="json"),
            "entries": {key: asdict(entry) for key, entry in sorted(self.entries.items())},
        }
        return json.dumps(payload, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> LatencyTable:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise LutFormatError(f"not JSON: {error}") from None
        if not isinstance(payload, dict) or payload.get("format") != LUT_FORMAT:
            raise LutFormatError(f"not a lookup table: 'format' must be {LUT_FORMAT!r}")
        if payload.get("version") != LUT_FORMAT_VERSION:
            raise LutFormatError(
                f"unsupported lookup-table version {payload.get('version')!r}; this hwnas reads {LUT_FORMAT_VERSION}"
            )
        try:
            device = Device.model_validate(payload.get("device"))
        except ValueError as error:
            raise LutFormatError(f"device: {error}") from None
        raw_entries = payload.get("entries")
        if not isinstance(raw_entries, dict):
            raise LutFormatError("'entries' must be an object of key -> measurement")
        entries, problems = {}, []
        for key, raw in raw_entries.items():
            try:
                entry = LutEntry(**raw)
            except TypeError as error:
                problems.append(f"{key}: {error}")
                continue
            entry_problems = entry.problems()
            if entry_problems:
                problems.extend(f"{key}: {p}" for p in entry_problems)
            entries[key] = entry
        if problems:
            raise LutFormatError("; ".join(problems))
        return cls(device, entries)
