"""Devices: where a model runs and how (runtime, execution provider, threads)."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_device_name(value: str) -> str:
    """`value` if it is a valid device name, else ValueError saying what a name may hold."""
    if not DEVICE_NAME_RE.fullmatch(value):
        raise ValueError(
            f"device name {value!r} must start with a letter or digit and use only letters, digits, "
            "'.', '_' or '-' (at most 100 characters)"
        )
    return value


class Device(BaseModel):
    """A target device. Two devices differ whenever anything that changes latency differs.

    This machine at 1 thread and at 2 threads are two devices with two lookup tables.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="unique name, letters, digits, '.', '_' or '-'")
    runtime: str = "onnxruntime"
    runtime_version: str = Field(default_factory=lambda: ort.__version__)
    execution_provider: str = "CPUExecutionProvider"
    threads: int = Field(default=1, ge=1, le=256)
    facts: dict[str, str] = Field(default_factory=dict, description="free-form: phone model, SoC, OS")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_device_name(value)


def this_machine_facts() -> dict[str, str]:
    """What can be read about the machine this process runs on."""
    facts = {
        "host": platform.node(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    return facts


def this_machine(name: str, threads: int = 1) -> Device:
    """A device describing this machine running ONNX Runtime's CPU provider with `threads` threads."""
    return Device(name=name, threads=threads, facts=this_machine_facts())
