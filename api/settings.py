"""Service settings, read from the environment (12-factor): the same code runs embedded and in compose.

| variable | default | meaning |
|---|---|---|
| HWNAS_DATABASE_URL | sqlite:///./.hwnas/hwnas.db | SQLAlchemy URL (PostgreSQL in deployment) |
| HWNAS_ARTIFACT_DIR | ./.hwnas/artifacts | exported networks and uploaded datasets |
| HWNAS_RAY_ADDRESS | (local Ray) | join a Ray cluster instead of starting one |
| HWNAS_MAX_UPLOAD_MB | 200 | largest dataset or results upload accepted (413 above) |
| HWNAS_EMBEDDED_WORKER | 1 for `hwnas serve`, 0 in compose | run one search worker inside the API process |
| HWNAS_LOG_FORMAT | json | `json` (one object per line) or `text` |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nas.store.db import database_url
from nas.worker import ARTIFACT_DIR_ENV, artifact_root


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=database_url)
    artifact_dir: Path = field(default_factory=artifact_root)
    max_upload_bytes: int = field(
        default_factory=lambda: int(float(os.environ.get("HWNAS_MAX_UPLOAD_MB", "200")) * 2**20)
    )
    embedded_worker: bool = field(default_factory=lambda: _flag("HWNAS_EMBEDDED_WORKER", False))
    log_format: str = field(default_factory=lambda: os.environ.get("HWNAS_LOG_FORMAT", "json"))
    heartbeat_s: float = 5.0
    sse_poll_s: float = 0.5

    @property
    def dataset_dir(self) -> Path:
        return self.artifact_dir / "datasets"


__all__ = ["ARTIFACT_DIR_ENV", "Settings"]
