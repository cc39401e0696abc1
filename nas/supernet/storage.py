"""A trained supernet on disk: its weights, the space it was built for, and how it was trained.

Written to a temporary file and renamed into place, so a reader never sees half a file; read with
`torch.load(weights_only=True)` (tensors and plain data only, nothing executable). Anything wrong
with a file (missing, truncated, another format, another space) is a `SupernetArtifactError`,
which a search answers by training the supernet again.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nas.supernet.model import SuperNet
from search_spaces.space import SearchSpace

FORMAT = "hwnas-supernet/1"


class SupernetArtifactError(ValueError):
    """A stored supernet cannot be used (the message says why)."""


def _space_identity(space: SearchSpace) -> str:
    """The layout the weights depend on: everything but the resolutions (members share weights at any size)."""
    return repr(replace(space, resolutions=()))


def save_supernet(path: Path, supernet: SuperNet, metadata: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "space": _space_identity(supernet.space),
        "kernel_transform": bool(supernet.kernel_transform),
        "metadata": metadata,
        "state_dict": supernet.state_dict(),
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(document, partial)
    partial.replace(path)


def load_supernet(path: Path, space: SearchSpace) -> SuperNet:
    """The supernet stored at `path` for `space`; its training metadata as `.training_metadata`."""
    try:
        document = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SupernetArtifactError(f"no supernet file at {Path(path).name}") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file means the same thing: train again
        raise SupernetArtifactError(f"unreadable supernet file ({type(error).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SupernetArtifactError(f"not a {FORMAT} file")
    if document.get("space") != _space_identity(space):
        raise SupernetArtifactError(f"the file holds a supernet of another space than {space.name}")
    supernet = SuperNet(space, kernel_transform=bool(document.get("kernel_transform")))
    try:
        supernet.load_state_dict(document["state_dict"], strict=True)
    except (KeyError, RuntimeError) as error:
        raise SupernetArtifactError(f"the weights do not fit the supernet: {str(error)[:200]}") from None
    supernet.training_metadata = dict(document.get("metadata") or {})
    return supernet
