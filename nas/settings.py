"""The one reader of the environment (12-factor): the same code runs embedded and in compose.

| variable | default | meaning |
|---|---|---|
| HWNAS_DATABASE_URL | sqlite:///./.hwnas/hwnas.db | SQLAlchemy URL (PostgreSQL in deployment) |
| HWNAS_ARTIFACT_DIR | ./.hwnas/artifacts | exported networks, supernets and uploaded datasets |
| HWNAS_RAY_ADDRESS | (local Ray) | join a Ray cluster instead of starting one |
| HWNAS_MAX_UPLOAD_MB | 200 | largest upload, and largest decoded dataset, accepted (413 above) |
| HWNAS_EMBEDDED_WORKER | 1 for `hwnas serve`, 0 in compose | run one search worker with the API |
| HWNAS_LOG_FORMAT | json | `json` (one object per line) or `text` |
| HWNAS_MACHINE_ID | (random, kept in the file below) | who "this machine" is: devices profiled here carry it |
| HWNAS_MACHINE_ID_FILE | ~/.config/hwnas/machine-id | where the generated id is kept (not the shared volume) |
| HWNAS_SERVER, HWNAS_API_KEY | http://127.0.0.1:8000, none | what the CLI's client talks to, and with which key |

Every value is read when a `Settings` is made (not at import time), so tests and the CLI can change the
environment first. Nothing else in `nas`, `api`, `latency_lut` or `search_spaces` reads `os.environ`.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DATABASE_URL_ENV = "HWNAS_DATABASE_URL"
ARTIFACT_DIR_ENV = "HWNAS_ARTIFACT_DIR"
RAY_ADDRESS_ENV = "HWNAS_RAY_ADDRESS"
MAX_UPLOAD_ENV = "HWNAS_MAX_UPLOAD_MB"
EMBEDDED_WORKER_ENV = "HWNAS_EMBEDDED_WORKER"
LOG_FORMAT_ENV = "HWNAS_LOG_FORMAT"
MACHINE_ID_ENV = "HWNAS_MACHINE_ID"
MACHINE_ID_FILE_ENV = "HWNAS_MACHINE_ID_FILE"
SERVER_ENV = "HWNAS_SERVER"
API_KEY_ENV = "HWNAS_API_KEY"

DEFAULT_DATA_DIR = ".hwnas"
DEFAULT_DATABASE_FILE = "hwnas.db"
DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_MAX_UPLOAD_MB = 200.0


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _flag(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")


def _upload_bytes() -> int:
    value = _env(MAX_UPLOAD_ENV)
    try:
        megabytes = float(value) if value is not None else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        raise ValueError(f"{MAX_UPLOAD_ENV} must be a number of megabytes, got {value!r}") from None
    if not megabytes > 0:
        raise ValueError(f"{MAX_UPLOAD_ENV} must be positive, got {value!r}")
    return int(megabytes * 2**20)


def default_database_url() -> str:
    return _env(DATABASE_URL_ENV) or f"sqlite:///{Path.cwd() / DEFAULT_DATA_DIR / DEFAULT_DATABASE_FILE}"


def default_artifact_dir() -> Path:
    return Path(_env(ARTIFACT_DIR_ENV) or Path.cwd() / DEFAULT_DATA_DIR / "artifacts")


def machine_id_file() -> Path:
    configured = _env(MACHINE_ID_FILE_ENV)
    return Path(configured) if configured else Path.home() / ".config" / "hwnas" / "machine-id"


def machine_id() -> str:
    """Who "this machine" is, independent of its hostname (which compose gives every container anew).

    `HWNAS_MACHINE_ID` when set; else a random id made once and kept in `machine_id_file()`. A device
    profiled here stores it, and only a process with the same id measures that device locally; so two
    containers that share the artifact volume are still two machines, and one machine keeps its identity
    across restarts and renames.
    """
    configured = _env(MACHINE_ID_ENV)
    if configured:
        return configured
    path = machine_id_file()
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        return existing
    made = f"m-{uuid.uuid4().hex}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two processes starting together must agree: create the file exclusively, else read the winner's.
    try:
        with path.open("x") as handle:
            handle.write(made + "\n")
        return made
    except FileExistsError:
        return path.read_text().strip() or made


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    artifact_dir: Path = field(default_factory=default_artifact_dir)
    ray_address: str | None = field(default_factory=lambda: _env(RAY_ADDRESS_ENV))
    max_upload_bytes: int = field(default_factory=_upload_bytes)
    embedded_worker: bool = field(default_factory=lambda: _flag(EMBEDDED_WORKER_ENV, False))
    log_format: str = field(default_factory=lambda: _env(LOG_FORMAT_ENV) or "json")
    server: str = field(default_factory=lambda: _env(SERVER_ENV) or DEFAULT_SERVER)
    api_key: str | None = field(default_factory=lambda: _env(API_KEY_ENV))
    heartbeat_s: float = 5.0
    sse_poll_s: float = 0.5
    worker_mode: Literal["process", "thread"] = "process"
    """How the embedded worker runs: a child process (the API keeps its GIL for requests), or a thread of
    the API process (tests that patch the process they run in)."""

    @property
    def dataset_dir(self) -> Path:
        return self.artifact_dir / "datasets"

    @property
    def max_upload_mb(self) -> float:
        return self.max_upload_bytes / 2**20


def set_embedded_worker_default(enabled: bool) -> None:
    """`hwnas serve --no-worker` sets the default a later `Settings()` reads, unless the operator set it."""
    os.environ.setdefault(EMBEDDED_WORKER_ENV, "1" if enabled else "0")
