"""`hwnas worker` stops cleanly on SIGTERM (what `docker compose stop` sends) when it is idle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def test_hwnas_worker_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "HWNAS_DATABASE_URL": f"sqlite:///{tmp_path / 'hwnas.db'}",
           "HWNAS_ARTIFACT_DIR": str(tmp_path / "artifacts"), "HWNAS_LOG_FORMAT": "text",
           "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}  # fmt: skip
    hwnas = Path(sys.executable).with_name("hwnas")
    worker = subprocess.Popen(
        [str(hwnas), "worker", "--poll-s", "0.2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("polling for searches" in line for line in lines):
            assert time.monotonic() < deadline and worker.poll() is None, "".join(lines)
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = "".join(lines)
    assert worker.returncode == 0, output
    assert "ran 0 search(es)" in output
