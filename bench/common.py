"""Shared set-up for the benchmarks: a bench database under .hwnas/ and this machine as a device."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import onnxruntime as ort
import torch
from sqlalchemy.orm import Session, sessionmaker

from nas.latency import add_device, list_devices, open_sessions

BENCH_DB = Path(".hwnas") / "bench.db"


def bench_sessions(url: str | None = None) -> sessionmaker[Session]:
    BENCH_DB.parent.mkdir(parents=True, exist_ok=True)
    return open_sessions(url or os.environ.get("HWNAS_BENCH_DATABASE_URL") or f"sqlite:///{BENCH_DB.resolve()}")


def ensure_local_device(sessions: sessionmaker[Session], name: str, threads: int) -> None:
    if name not in {device.name for device, _ in list_devices(sessions)}:
        add_device(sessions, name, threads=threads)


def machine_line() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, onnxruntime {ort.__version__}, torch {torch.__version__}"
