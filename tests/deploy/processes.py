"""Running docker-compose.yml's services as plain processes on this host (no container engine needed).

Every process starts in its own session (so it and its children form one process group) with a marker
variable in its environment that its children inherit (Ray's raylets, GCS and workers included).
`Processes.close()` ends each group, then every process of this user that still carries the marker, so
a failed test never leaves a raylet behind, and nothing that belongs to anyone else is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

BIN = Path(sys.executable).parent  # the venv's bin: hwnas, ray
MARKER_ENV = "HWNAS_DEPLOY_CHECK_RUN"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports (held open together, so none is handed out twice)."""
    probes = []
    try:
        for _ in range(n):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # its own session: the group id is its pid


@dataclass
class Processes:
    """Starts services and one-shot commands with a common environment; `close()` ends them all."""

    logs: Path
    env: dict[str, str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    services: dict[str, Service] = field(default_factory=dict)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(extra or {}), MARKER_ENV: self.run_id}

    def start(self, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None) -> Service:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.environment(extra_env),
                start_new_session=True,
            )
        service = Service(name, process, log)
        self.services[name] = service
        return service

    def run(
        self, argv: Sequence[str], extra_env: Mapping[str, str] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """A one-shot command (a migration, `hwnas key create`); its output, or AssertionError on failure."""
        completed = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.environment(extra_env),
            timeout=timeout,
            start_new_session=True,
        )
        assert completed.returncode == 0, f"{' '.join(argv)} exited {completed.returncode}:\n{completed.stderr}"
        return completed

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Signal a service's process group; SIGKILL it if it has not exited after `timeout` s."""
        service = self.services[name]
        service.signal_group(sig)
        try:
            service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            service.signal_group(signal.SIGKILL)
            service.process.wait(10)

    def marked_pids(self) -> list[int]:
        """This user's processes whose environment carries this run's marker (children included)."""
        wanted = f"{MARKER_ENV}={self.run_id}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # gone, or another user's
                continue
        return found

    def close(self, grace_s: float = 10.0) -> None:
        """End every service (SIGTERM, then SIGKILL after `grace_s`), then any marked straggler."""
        for service in self.services.values():
            if service.alive():
                service.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for service in self.services.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(max(0.1, deadline - time.monotonic()))
        for service in self.services.values():
            service.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(5)
        for _ in range(3):
            stragglers = self.marked_pids()
            if not stragglers:
                return
            for pid in stragglers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        assert not self.marked_pids(), "processes of the deployment check survived SIGKILL"
