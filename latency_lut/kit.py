"""Profiling kits: lookup-table measurements for a device that cannot reach the server.

The server builds a zip holding one ONNX file per key, a manifest, and `kit_runner.py` as a stand-alone
`runner.py`; the device runs it and the user uploads the results file. Nothing in an uploaded file is
trusted: every field of every entry is checked against the manifest the kit was built from, and a file
with any problem stores nothing, so a table never mixes good and bad measurements.

Besides block keys a kit may hold whole networks (their model carries the spec): `net:<arch_hash>`
for the networks that calibrate the predictor, `job:<job id>` for measurement jobs (a verification
kit). The runner times them like any other model; the results come back in `KitImport.networks`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import string
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latency_lut import kit_runner
from latency_lut.device import Device
from latency_lut.kit_runner import KIT_FORMAT, KIT_VERSION, MANIFEST_NAME, RESULTS_FORMAT, TimingPolicy
from latency_lut.profiler import layer_onnx, network_onnx
from latency_lut.table import LutEntry
from search_spaces.arch_spec import ArchSpec, LayerKey

__all__ = [
    "KIT_FORMAT",
    "KIT_VERSION",
    "RESULTS_FORMAT",
    "KitImport",
    "KitImportError",
    "KitManifest",
    "KitModel",
    "NETWORK_KEY_PREFIX",
    "JOB_KEY_PREFIX",
    "build_kit",
    "network_key",
    "parse_results_or_raise",
    "read_manifest_from_kit",
    "validate_results",
]

# What the store can hold: a timing never needs a million runs, and versions are short.
MAX_RUNS = 1_000_000
MAX_RUNTIME_VERSION_CHARS = 50
RUNNER_NAME = "runner.py"
README_NAME = "README.txt"
MODELS_DIR = "models"
KIT_SOURCE = "kit"
# Beside this module, like runner.py's source: a file path stays right however hwnas is installed.
README_TEMPLATE = Path(__file__).parent / "kit_files" / README_NAME
_RESULT_FIELDS = ("median_ms", "iqr_ms", "runs", "sha256")
NETWORK_KEY_PREFIX = "net:"
JOB_KEY_PREFIX = "job:"
# An environment (kit_runner.machine_environment) is a small flat map of short strings.
MAX_ENVIRONMENT_FIELDS = 32
MAX_ENVIRONMENT_CHARS = 200


def network_key(arch_hash: str) -> str:
    """The kit key of a calibration network."""
    return f"{NETWORK_KEY_PREFIX}{arch_hash}"


def environment_problems(environment: Any, where: str = "'environment'") -> list[str]:
    """Why `environment` is not a flat object of at most 32 short printable strings (empty if it is)."""
    if not isinstance(environment, dict):
        return [f"{where} must be an object of strings, got {type(environment).__name__}"]
    if len(environment) > MAX_ENVIRONMENT_FIELDS:
        return [f"{where} has {len(environment)} fields; at most {MAX_ENVIRONMENT_FIELDS}"]
    for name, value in environment.items():
        for text in (name, value):
            if not (isinstance(text, str) and text.isprintable() and len(text) <= MAX_ENVIRONMENT_CHARS):
                return [
                    f"{where}: {name!r}: {value!r} is not a printable string of at most "
                    f"{MAX_ENVIRONMENT_CHARS} characters"
                ]
    return []


class KitModel(BaseModel):
    """One key of a kit: the ONNX file inside the zip that measures it, and its input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_shape: list[int]
    spec: dict[str, Any] | None = Field(default=None, description="the network's ArchSpec, for whole networks")


class KitManifest(BaseModel):
    """What a kit holds and how it must be timed; the server keeps it to check the uploaded results."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["hwnas-kit"] = KIT_FORMAT
    kit_version: Literal[1] = KIT_VERSION
    kit_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="uuid4 hex; ties a results file to its kit")
    device: str = Field(description="the device name the results belong to")
    threads: int = Field(ge=1, le=256)
    execution_provider: str
    created_at: str = Field(description="ISO 8601, UTC")
    policy: dict[str, float | int] = Field(description="TimingPolicy fields, as the runner constructs it")
    models: list[KitModel]
    space: dict[str, Any] | None = Field(
        default=None, description="the space whose calibration networks the kit holds (name and narrowing)"
    )

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> KitManifest:
        return cls.model_validate_json(text)

    @property
    def keys(self) -> list[str]:
        return [model.key for model in self.models]


def _validated_keys(keys: Iterable[str], allow_none: bool = False) -> list[str]:
    """Sorted distinct keys; every malformed key is named at once, before any slow export starts."""
    unique = sorted(set(keys))
    if not unique and not allow_none:
        raise ValueError("a profiling kit needs at least one layer key")
    bad = []
    for key in unique:
        try:
            LayerKey.parse(key)
        except ValueError as error:
            bad.append(f"{key!r} ({error})")
    if bad:
        raise ValueError(f"{len(bad)} invalid layer key(s): " + "; ".join(bad))
    return unique


def _readme_text(manifest: KitManifest) -> str:
    template = README_TEMPLATE.read_text(encoding="utf-8")
    return string.Template(template).substitute(
        device=manifest.device,
        kit_id=manifest.kit_id,
        count=len(manifest.models),
        threads=manifest.threads,
        provider=manifest.execution_provider,
        created_at=manifest.created_at,
    )


def build_kit(
    device: Device,
    keys: Iterable[str],
    out_path: Path,
    policy: TimingPolicy = TimingPolicy(),
    progress: Callable[[int, int], None] | None = None,
    networks: Sequence[tuple[str, ArchSpec]] = (),
    space: dict[str, Any] | None = None,
) -> KitManifest:
    """Write a profiling kit for `device` measuring `keys` and whole `networks` ((kit key, spec) pairs,
    timed after the keys); `progress(done, total)` follows the exports.

    The zip is written beside `out_path` and renamed into place, so a failed build never leaves a
    truncated kit where a user would pick it up.
    """
    unique = _validated_keys(keys, allow_none=bool(networks))
    network_keys = [key for key, _ in networks]
    if len(set(network_keys)) != len(network_keys) or set(network_keys) & set(unique):
        raise ValueError("every model of a kit needs its own key; networks repeat a key")
    total = len(unique) + len(networks)
    out_path = Path(out_path)
    runner_source = Path(kit_runner.__file__).read_text(encoding="utf-8")
    temporary = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        models: list[KitModel] = []
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            exports = [(key, None) for key in unique] + [(key, spec) for key, spec in networks]
            for index, (key, spec) in enumerate(exports):
                if spec is None:
                    onnx_bytes, input_shape = layer_onnx(key)
                else:
                    onnx_bytes = network_onnx(spec)
                    input_shape = (1, spec.in_channels, spec.resolution, spec.resolution)
                file = f"{MODELS_DIR}/{index:05d}.onnx"
                archive.writestr(file, onnx_bytes)
                models.append(
                    KitModel(
                        key=key,
                        file=file,
                        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                        input_shape=list(input_shape),
                        spec=None if spec is None else spec.model_dump(mode="json"),
                    )
                )
                if progress is not None:
                    progress(index + 1, total)
            manifest = KitManifest(
                kit_id=uuid.uuid4().hex,
                device=device.name,
                threads=device.threads,
                execution_provider=device.execution_provider,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                policy=dataclasses.asdict(policy),
                models=models,
                space=space,
            )
            archive.writestr(MANIFEST_NAME, manifest.to_json())
            archive.writestr(RUNNER_NAME, runner_source)
            archive.writestr(README_NAME, _readme_text(manifest))
        os.chmod(temporary, 0o644)
        os.replace(temporary, out_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return manifest


def read_manifest_from_kit(zip_path: str | os.PathLike[str]) -> KitManifest:
    """The manifest of a built kit, e.g. to check results uploaded for it."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            text = archive.read(MANIFEST_NAME)
    except zipfile.BadZipFile:
        raise ValueError(f"{zip_path} is not a zip file") from None
    except KeyError:
        raise ValueError(f"{zip_path} holds no {MANIFEST_NAME}: not a profiling kit") from None
    return KitManifest.from_json(text)


@dataclasses.dataclass
class KitImport:
    """What an uploaded results file would add to the table.

    `covered` counts keys of the kit with a valid measurement in the file, even when problems
    elsewhere in it mean `entries` stays empty: the user sees how much work the file holds.
    `entries` holds block keys, `networks` whole networks (by kit key; the manifest has their specs),
    `environment` what the runner says it ran on.
    """

    entries: dict[str, LutEntry]
    problems: list[str]
    covered: int
    total: int
    networks: dict[str, LutEntry] = dataclasses.field(default_factory=dict)
    environment: dict[str, str] | None = None

    @property
    def coverage(self) -> float:
        return self.covered / self.total if self.total else 1.0

    @property
    def ok(self) -> bool:
        return not self.problems


class KitImportError(ValueError):
    """A results file that stores nothing; `problems` names every field at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the kit results: " + "; ".join(self.problems))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _entry_problems(where: str, raw: dict[str, Any], expected_sha256: str | None) -> list[str]:
    """Every problem of one result entry, each naming the entry and the field."""
    found = [f"{where}: missing {field!r}" for field in _RESULT_FIELDS if field not in raw]
    if "median_ms" in raw:
        median = raw["median_ms"]
        if not (_is_number(median) and math.isfinite(median) and median > 0):
            found.append(f"{where}: 'median_ms' must be a finite number > 0, got {median!r}")
    if "iqr_ms" in raw:
        iqr = raw["iqr_ms"]
        if not (_is_number(iqr) and math.isfinite(iqr) and iqr >= 0):
            found.append(f"{where}: 'iqr_ms' must be a finite number >= 0, got {iqr!r}")
    if "runs" in raw:
        runs = raw["runs"]
        if not (isinstance(runs, int) and not isinstance(runs, bool) and 1 <= runs <= MAX_RUNS):
            found.append(f"{where}: 'runs' must be an integer from 1 to {MAX_RUNS:,}, got {runs!r}")
    if "sha256" in raw and expected_sha256 is not None and raw["sha256"] != expected_sha256:
        found.append(
            f"{where}: 'sha256' {raw['sha256']!r} is not the kit's model checksum {expected_sha256!r} "
            "(altered model or results)"
        )
    return found


def _header_problems(manifest: KitManifest, payload: dict[str, Any]) -> list[str]:
    checks: list[tuple[str, Any]] = [
        ("format", RESULTS_FORMAT),
        ("kit_version", KIT_VERSION),
        ("kit_id", manifest.kit_id),
        ("device", manifest.device),
        ("threads", manifest.threads),
    ]
    found = []
    for field, expected in checks:
        if field not in payload:
            found.append(f"missing {field!r} (expected {expected!r})")
        elif payload[field] != expected or type(payload[field]) is not type(expected):
            found.append(f"{field!r} must be {expected!r}, got {payload[field]!r}")
    runtime_version = payload.get("runtime_version")
    if "runtime_version" not in payload:
        found.append("missing 'runtime_version'")
    elif (
        not isinstance(runtime_version, str)
        or not runtime_version
        or len(runtime_version) > MAX_RUNTIME_VERSION_CHARS
        or not runtime_version.isprintable()
    ):
        found.append(
            f"'runtime_version' must be a non-empty printable string of at most {MAX_RUNTIME_VERSION_CHARS} "
            f"characters, got {runtime_version!r}"
        )
    return found


def validate_results(manifest: KitManifest, results_text: str | bytes) -> KitImport:
    """Check an uploaded results file against the kit it claims to come from.

    Every problem is collected, not just the first, so a user fixes a file in one round trip. The
    results must have been measured with the device's thread count: other counts are other devices.
    """
    total = len(manifest.models)
    try:
        payload = json.loads(results_text)
    except (ValueError, RecursionError) as error:
        return KitImport({}, [f"not JSON: {error}"], 0, total)
    if not isinstance(payload, dict):
        return KitImport({}, [f"must be a JSON object, got {type(payload).__name__}"], 0, total)
    problems = _header_problems(manifest, payload)
    environment = payload.get("environment")
    if environment is not None:
        problems.extend(environment_problems(environment))
    runtime_version = payload.get("runtime_version")
    results = payload.get("results")
    if not isinstance(results, list):
        problems.append(f"'results' must be a list of measurements, got {type(results).__name__}")
        results = []
    expected = {model.key: model.sha256 for model in manifest.models}
    valid: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(results):
        if not isinstance(raw, dict):
            problems.append(f"results[{index}]: must be an object, got {type(raw).__name__}")
            continue
        key = raw.get("key")
        if not isinstance(key, str):
            problems.append(f"results[{index}]: 'key' must be a string, got {key!r}")
            continue
        where = f"results[{index}] {key}"
        entry_problems = _entry_problems(where, raw, expected.get(key))
        if key not in expected:
            entry_problems.insert(0, f"{where}: 'key' is not in kit {manifest.kit_id}")
        elif key in seen:
            entry_problems.insert(0, f"{where}: 'key' is duplicated (each key is measured once)")
        seen.add(key)
        problems.extend(entry_problems)
        if not entry_problems:
            valid[key] = raw
    covered = len(valid)
    if problems:
        return KitImport({}, problems, covered, total)
    networks = {model.key for model in manifest.models if model.spec is not None}
    timed = {
        key: LutEntry(
            median_ms=float(raw["median_ms"]),
            iqr_ms=float(raw["iqr_ms"]),
            runs=raw["runs"],
            runtime_version=runtime_version,
            source=KIT_SOURCE,
        )
        for key, raw in valid.items()
    }
    return KitImport(
        {key: entry for key, entry in timed.items() if key not in networks},
        [],
        covered,
        total,
        networks={key: entry for key, entry in timed.items() if key in networks},
        environment=environment,
    )


def parse_results_or_raise(manifest: KitManifest, text: str | bytes) -> KitImport:
    """`validate_results`, raising `KitImportError` when anything is wrong (for callers that only store)."""
    imported = validate_results(manifest, text)
    if not imported.ok:
        raise KitImportError(imported.problems)
    return imported
