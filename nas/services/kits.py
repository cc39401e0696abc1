"""What the server builds for a device to time: one block key's ONNX model, and profiling kits (a zip
of ONNX models, their manifest and the stand-alone runner) for a device off the network.

torch's ONNX exporter (and `warnings.catch_warnings` inside it) is not thread-safe; exports take
turns through `exporting`, which also keeps a small server responsive.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from latency_lut.kit import KitImportError
from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
from nas import latency, remote_measurements
from nas.services.errors import InvalidInput, WrongState
from search_spaces.arch_spec import LayerKey
from search_spaces.counting import layer_counts
from search_spaces.space import SearchSpace

T = TypeVar("T")

_EXPORT_LOCK = threading.Lock()

# A key the server is asked to build must be a plausible layer of a mobile network: bounds on its input
# tensor and its size keep one request from costing minutes of CPU or gigabytes of memory.
MAX_KEY_SIDE = 1024
MAX_KEY_INPUT_ELEMENTS = 1 << 24
MAX_KEY_PARAMS = 10_000_000  # a 40 MB model; V3-Large's head at width 1.25 has about 3 million
MAX_KEY_MADDS = 5_000_000_000


def exporting(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` while no other thread exports a model."""
    with _EXPORT_LOCK:
        return function(*args)


@dataclass(frozen=True)
class OnnxModel:
    """One model to time on a device, with the input shape to feed it."""

    content: bytes
    input_shape: tuple[int, ...]
    filename: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class KitFile:
    """A kit written to `path` (the caller hands it out, then removes it)."""

    path: Path
    filename: str
    kit_id: str
    models: int


def buildable_key(key: str) -> LayerKey:
    """A key the server will build; `InvalidInput` naming `key` when malformed or larger than any mobile layer."""
    try:
        parsed = LayerKey.parse(key)
    except ValueError as error:
        raise InvalidInput(str(error), field="key") from None
    batch, channels, height, width = parsed.input_shape
    if min(channels, height, width) < 1:
        raise InvalidInput(f"key {key!r} has an empty input ({height}x{width}x{channels})", field="key")
    counts = layer_counts(parsed)
    if (
        max(height, width) > MAX_KEY_SIDE
        or batch * channels * height * width > MAX_KEY_INPUT_ELEMENTS
        or counts.params > MAX_KEY_PARAMS
        or counts.madds > MAX_KEY_MADDS
    ):
        raise InvalidInput(
            f"key {key!r} is no layer of a mobile network (input {height}x{width}x{channels}, "
            f"{counts.params:,} parameters, {counts.madds:,} multiply-adds); the server does not build it",
            field="key",
        )
    return parsed


def key_model(sessions: sessionmaker[Session], name: str, key: str, space: SearchSpace | None = None) -> OnnxModel:
    """The ONNX model of one block key (latency-neutral weights), as a kit holds it; with `space`, only
    a key of that space."""
    from latency_lut.profiler import layer_onnx

    latency.get_device(sessions, name)  # an unknown device first
    parsed = buildable_key(key)
    if space is not None and key not in set(space.block_keys()):
        raise InvalidInput(f"key {key!r} is not a block key of space {space.name!r} as narrowed", field="key")
    content, shape = exporting(layer_onnx, parsed)
    return OnnxModel(content, tuple(shape), f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.onnx")


def kit_path(artifact_dir: Path, stem: str) -> Path:
    """A fresh file for a kit under the artifact directory."""
    kits = Path(artifact_dir) / "kits"
    kits.mkdir(parents=True, exist_ok=True)
    return kits / f"{stem}-{uuid.uuid4().hex}.zip"


def profiling_kit(
    sessions: sessionmaker[Session],
    name: str,
    space: SearchSpace,
    artifact_dir: Path,
    *,
    quick: bool = False,
    networks: bool = True,
) -> KitFile:
    """A kit of the space's keys the device lacks and (`networks`) the calibration networks it has not
    measured end to end; `WrongState` naming `space` when there is nothing to put in it."""
    latency.get_device(sessions, name)
    keys = space.block_keys()
    missing_networks = remote_measurements.missing_networks(sessions, name, space) if networks else []
    if not latency.missing_keys(sessions, name, keys) and not missing_networks:
        raise WrongState(
            f"device {name!r} already has all {len(keys)} keys of space {space.name!r} "
            f"(resolutions {list(space.resolutions)}, widths {list(space.widths)})"
            + (" and all its calibration networks" if networks else "")
            + "; nothing to put in a kit",
            field="space",
        )
    path = kit_path(artifact_dir, name)
    policy = QUICK_POLICY if quick else TimingPolicy()
    try:
        manifest = exporting(
            remote_measurements.create_kit, sessions, name, keys, path, True, None, policy, space if networks else None
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return KitFile(path, f"{name}-kit-{manifest.kit_id[:8]}.zip", manifest.kit_id, len(manifest.models))


# --- refused results files -----------------------------------------------------------------------------

# `latency_lut.kit` reports a results file's problems as sentences, each naming its place first:
# "results[i] KEY: 'field' ..." (keys hold no spaces but may hold colons), "results[i]: ...", or a
# header field "'field' ..."/"missing 'field' ...". This is the one place that reads the place back.
_RESULT_PROBLEM = re.compile(r"results\[(?P<index>\d+)\](?: \S+)?: (?:missing )?'(?P<field>\w+)'")
_RESULT_ENTRY = re.compile(r"results\[(?P<index>\d+)\]")
_HEADER_PROBLEM = re.compile(r"(?:missing )?'(?P<field>\w+)'")


def _problem_field(problem: str, default: str) -> str:
    """The results-file field a problem names, as a dotted path (`results.0.sha256`)."""
    if match := _RESULT_PROBLEM.match(problem):
        return f"results.{match['index']}.{match['field']}"
    if match := _RESULT_ENTRY.match(problem):
        return f"results.{match['index']}"
    if match := _HEADER_PROBLEM.match(problem):
        return match["field"]
    return default


def refusal(error: KitImportError, part: str) -> InvalidInput:
    """A refused results file as `InvalidInput`: its field is the first problem's, else the upload (`part`)."""
    field = _problem_field(error.problems[0], part) if error.problems else part
    return InvalidInput(str(error), field=field, problems=error.problems)
