"""A trained supernet on disk: weights, the space they belong to, and the caller's metadata.

A supernet is reused by later searches on the same data, so a file must prove what it holds: it
carries the fingerprint of the space's structure (everything that shapes the weights; not the
name, description, resolutions or dropout, which do not) and a SHA-256 of its tensors. Any
problem on load (missing, truncated, bit-flipped, written for another space or format) raises
`SupernetFileError`, and the caller retrains.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.supernet.model import SuperNet
from search_spaces.space import SearchSpace

FORMAT = "hwnas-supernet"
VERSION = 1

_UNSHAPED_FIELDS = ("name", "description", "resolutions", "dropout")


class SupernetFileError(ValueError):
    """The supernet file is missing, corrupt, or does not belong to the space asked for: retrain."""


def space_fingerprint(space: SearchSpace) -> dict[str, Any]:
    """The fields of `space` that shape a supernet's weights (JSON-compatible)."""
    fields = asdict(space)
    for name in _UNSHAPED_FIELDS:
        fields.pop(name)
    return json.loads(json.dumps(fields))


def space_key(space: SearchSpace) -> str:
    """A short stable hash of `space_fingerprint`, for keying stored supernets."""
    canonical = json.dumps(space_fingerprint(space), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def save_supernet(path: str | Path, supernet: SuperNet, metadata: dict[str, Any] | None = None) -> None:
    """Write atomically (a temporary file, then a rename): a crash never leaves half a file under `path`.

    `metadata` must be JSON-serialisable (e.g. `SupernetTrainingResult.metadata()`)."""
    path = Path(path)
    state = {name: tensor.detach().cpu().clone() for name, tensor in supernet.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "space": json.dumps(space_fingerprint(supernet.space), sort_keys=True),
        "kernel_transform": bool(supernet.kernel_transform),
        "metadata": json.dumps(metadata or {}),
        "digest": _digest(state),
        "state": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        torch.save(payload, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_supernet(path: str | Path, space: SearchSpace) -> tuple[SuperNet, dict[str, Any]]:
    """The supernet stored at `path` (eval mode) and its metadata; SupernetFileError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise SupernetFileError(f"no supernet file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds on a damaged zip or pickle
        raise SupernetFileError(f"{path} is not a readable supernet file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SupernetFileError(f"{path} is not a supernet file (format {FORMAT!r} expected)")
    if payload.get("version") != VERSION:
        raise SupernetFileError(f"{path} has supernet format version {payload.get('version')}, expected {VERSION}")
    try:
        stored_space = json.loads(payload["space"])
        metadata = json.loads(payload["metadata"])
        state = payload["state"]
        digest = payload["digest"]
        kernel_transform = bool(payload["kernel_transform"])
    except (KeyError, TypeError, ValueError) as error:
        raise SupernetFileError(f"{path} is missing or has a damaged field: {error}") from error
    expected = space_fingerprint(space)
    if stored_space != expected:
        differing = sorted(k for k in set(expected) | set(stored_space) if expected.get(k) != stored_space.get(k))
        raise SupernetFileError(
            f"{path} holds a supernet of another space than {space.name} (differs in: {', '.join(differing)})"
        )
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise SupernetFileError(f"{path} has a damaged weight table")
    if _digest(state) != digest:
        raise SupernetFileError(f"{path} is corrupt: its weights do not match their checksum")
    supernet = SuperNet(space, kernel_transform=kernel_transform)
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SupernetFileError(f"{path} does not fit the supernet of space {space.name}: {error}") from error
    supernet.eval()
    return supernet, metadata


def _digest(state: dict[str, torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        hasher.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        hasher.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return hasher.hexdigest()
