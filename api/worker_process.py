"""The embedded search worker as a child process of the API (`hwnas serve`, `hwnas demo`).

A search trains networks, exports ONNX and measures latency: seconds of Python work at a time. In a
thread of the API process it held the GIL against every request (p99 of 250-570 ms under 50 polling
clients); in its own process the API only reads the database. The child is started with `spawn` (a
fresh interpreter: no inherited locks, threads or Ray state), gets the API's `Settings` and the search
spaces registered in the parent (so a space added at run time is searchable), and runs
`nas.worker.run_worker` until told to stop:

- the API shutting down sets a shared event that stops it between searches (Ray's own SIGTERM handler
  in the child would end it at once); after `stop_timeout_s` it is terminated, then killed, and a
  search it was running is re-claimed from its stored candidates when a worker next starts;
- it runs at a low CPU priority (nice +15, inherited by its Ray processes and Tune trials), so on a
  small machine the API answers first: under 50 polling clients with a search training throughout,
  p99 is ~10 ms against ~0.5 s with the worker as a thread (docs/benchmarks.md);
- if the API process dies, the child notices (its parent changes) and stops the same way;
- if the child dies, the API starts a new one (at most `max_restarts` times, then logs and gives up).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.process import BaseProcess
from typing import Any

from nas.settings import Settings

log = logging.getLogger("hwnas.api")

PARENT_CHECK_S = 1.0


WORKER_NICE = 15


def _child_main(
    settings: Settings, spaces: dict[str, Any], parent_pid: int, stop_requested: Any, log_level: int
) -> None:
    from api.logs import configure_logging
    from nas.store import db as store_db
    from nas.worker import run_worker
    from search_spaces import space as space_module

    configure_logging(settings.log_format, level=log_level)  # as loud as the API process (quiet in the demo)
    space_module.SPACES.update(spaces)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the API stops us
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass

    def watch_parent() -> None:
        while not stop.wait(PARENT_CHECK_S):
            if stop_requested.is_set():
                stop.set()
            elif os.getppid() != parent_pid:
                log.warning("the API process is gone; the embedded worker stops after its current search")
                stop.set()

    threading.Thread(target=watch_parent, name="hwnas-parent-watch", daemon=True).start()
    engine = store_db.make_engine(settings.database_url)
    try:
        run_worker(store_db.session_factory(engine), stop=stop, heartbeat_s=settings.heartbeat_s)
    finally:
        engine.dispose()


class WorkerProcess:
    """Starts, watches and stops the embedded worker's process."""

    def __init__(self, settings: Settings, stop_timeout_s: float = 30.0, max_restarts: int = 5) -> None:
        self.settings = settings
        self.stop_timeout_s = stop_timeout_s
        self.max_restarts = max_restarts
        self.restarts = 0
        self.process: BaseProcess | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop_requested: Any = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def _spawn(self) -> None:
        from search_spaces.space import SPACES

        context = multiprocessing.get_context("spawn")
        if self._stop_requested is None:
            self._stop_requested = context.Event()
        process = context.Process(
            target=_child_main,
            args=(
                self.settings,
                dict(SPACES),
                os.getpid(),
                self._stop_requested,
                logging.getLogger().getEffectiveLevel(),
            ),
            name="hwnas-embedded-worker",
            daemon=False,
        )
        process.start()
        self.process = process
        log.info("embedded worker started as process %s", process.pid)

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="hwnas-worker-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            with self._lock:
                if self._stopping.is_set() or self.process is None or self.process.is_alive():
                    continue
                code = self.process.exitcode
                if self.restarts >= self.max_restarts:
                    log.error("embedded worker exited (code %s); %d restarts used, not restarting", code, self.restarts)
                    return
                self.restarts += 1
                log.warning("embedded worker exited (code %s); restarting it (%d)", code, self.restarts)
                self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is None or not process.is_alive():
            return
        self._stop_requested.set()  # stop between searches
        process.join(self.stop_timeout_s)
        if process.is_alive():
            log.warning("embedded worker still busy after %.0f s; stopping it (its search resumes later)",
                        self.stop_timeout_s)  # fmt: skip
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(10)
