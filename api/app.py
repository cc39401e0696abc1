"""The FastAPI application: `create_app(settings)` wires the store, auth, problem+json errors, the
routers and (for `hwnas serve`) one embedded search worker.

    uvicorn --factory api.app:create_app      # or: hwnas serve
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.settings import Settings
from nas.store import db as store_db

log = logging.getLogger("hwnas.api")

API_VERSION = "1"


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or Settings()
    engine = store_db.make_engine(settings.database_url)
    if migrate:
        store_db.upgrade_database(engine)
    sessions = store_db.session_factory(engine)
    if migrate:
        from nas.latency import adopt_legacy_devices

        adopt_legacy_devices(sessions)  # devices this host registered by hostname before machine ids
    settings.artifact_dir.mkdir(parents=True, exist_ok=True)
    settings.dataset_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_thread = None
        if settings.embedded_worker and settings.worker_mode == "process":
            from api.worker_process import WorkerProcess

            app.state.worker_process = WorkerProcess(settings)
            app.state.worker_process.start()
        elif settings.embedded_worker:
            from nas.worker import run_worker

            worker_thread = threading.Thread(
                target=run_worker,
                args=(sessions,),
                kwargs={"stop": app.state.stop, "heartbeat_s": settings.heartbeat_s},
                name="hwnas-embedded-worker",
                daemon=True,
            )
            worker_thread.start()
            log.info("embedded worker started as a thread")
        # Everything imported and built so far (torch, onnx, the app) lives as long as the process: keep
        # it out of the garbage collector's full passes, which otherwise walk it all and stop every
        # request for ~230 ms a few times a minute under load (bench/api_load.py prints the pauses).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # back to the collector (an app started and stopped in a longer-lived process)
            app.state.stop.set()
            if app.state.worker_process is not None:
                app.state.worker_process.stop()
            if worker_thread is not None:
                worker_thread.join(timeout=30)
            engine.dispose()

    app = FastAPI(
        title="hwnas",
        version=API_VERSION,
        summary="Hardware-aware neural architecture search with per-device latency lookup tables.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.engine = engine
    app.state.stop = threading.Event()
    app.state.worker_process = None
    problems.install(app)
    from api.routes.metrics import install as install_metrics

    install_metrics(app)  # per-app Prometheus registry + HTTP request metrics (pure ASGI)

    from api.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app
