"""`GET /metrics`: Prometheus text exposition of the service's state and its HTTP traffic.

Open, like `/v1/health`: Prometheus scrapers usually run on the same private network as the service
and carry no bearer token, and nothing here names a user, a key or a search. Deployments that
expose the API publicly should keep `/metrics` off the public path at their proxy.

Two kinds of metrics, from two sources:

- **The store**, read by `StoreCollector` at scrape time (one short read-only transaction), so the
  figures are the same whichever API process is scraped and include what separate worker processes
  (compose's `worker` service) wrote:

  - `hwnas_searches{status}` (gauge): searches per status (queued, running, succeeded, failed,
    cancelled);
  - `hwnas_search_queue_length` (gauge): searches waiting for a worker;
  - `hwnas_search_queue_oldest_age_seconds` (gauge): how long the longest-waiting queued search has
    waited (0 when none);
  - `hwnas_trials{status}` (gauge): candidates recorded (completed, pruned, over_budget, failed);
    it only grows, except when a search is deleted with its candidates;
  - `hwnas_trial_duration_seconds{status}` (histogram): training time of candidates
    (`train_seconds`); over-budget candidates are never trained;
  - `hwnas_store_up` (gauge): 1 when the store answered this scrape, else 0 (and the store metrics
    above are absent: a scrape never fails because of the database).

- **HTTP traffic of this process**, recorded by a small pure-ASGI middleware (`install`, called by
  `create_app`): it only watches `http.response.start` for the status, so it neither buffers nor
  delays streamed bodies (SSE, downloads). Routes are labelled by their template
  (`/v1/searches/{search_id}`), unmatched paths as `<unmatched>`, so label sets stay bounded.

  - `hwnas_http_requests_total{method,route,status}` (counter);
  - `hwnas_http_request_duration_seconds{method,route,status}` (histogram): from the request to the
    last body byte, so an SSE stream counts its whole life (under its own route label).

Plus the client library's `process_*` and `python_*` metrics. Each app has its own registry (tests
start several apps in one process), held in `app.state.metrics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nas.store import CANDIDATE_STATUSES, Candidate, Search, SearchRepository, session_scope

log = logging.getLogger("hwnas.api.metrics")

router = APIRouter(tags=["operations"])

# Trial training time runs from a second (smoke effort, tiny nets) to hours (real datasets).
TRIAL_BUCKETS_S: tuple[float, ...] = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# Reads answer in milliseconds; uploads, kit zips and SSE streams take seconds to minutes.
HTTP_BUCKETS_S: tuple[float, ...] = (
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class StoreCollector(Collector):
    """Search, queue and trial figures read from the database at scrape time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[Metric]:
        try:
            with session_scope(self._sessions) as session:
                metrics = list(self._store_metrics(session))
        except Exception as error:  # noqa: BLE001 - a scrape reports a down store, it does not fail
            log.warning("metrics: the store did not answer: %s: %s", type(error).__name__, error)
            yield GaugeMetricFamily("hwnas_store_up", "1 when the store answered this scrape, else 0", value=0)
            return
        yield GaugeMetricFamily("hwnas_store_up", "1 when the store answered this scrape, else 0", value=1)
        yield from metrics

    def _store_metrics(self, session: Session) -> Iterator[Metric]:
        searches = SearchRepository(session)
        by_status = GaugeMetricFamily("hwnas_searches", "Searches per status", labels=["status"])
        for status, count in searches.counts_by_status().items():
            by_status.add_metric([status], count)
        yield by_status

        yield GaugeMetricFamily(
            "hwnas_search_queue_length", "Searches waiting for a worker", value=searches.queue_length()
        )
        oldest = session.scalar(select(func.min(Search.created_at)).where(Search.status == "queued"))
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - _as_utc(oldest)).total_seconds())
        yield GaugeMetricFamily(
            "hwnas_search_queue_oldest_age_seconds",
            "How long the oldest queued search has waited (0 when the queue is empty)",
            value=age,
        )

        trials = GaugeMetricFamily(
            "hwnas_trials",
            "Candidates recorded, per status (grows as trials finish; deleting a search removes its candidates)",
            labels=["status"],
        )
        counts = dict.fromkeys(CANDIDATE_STATUSES, 0)
        rows = session.execute(select(Candidate.status, func.count()).group_by(Candidate.status))
        counts.update({status: number for status, number in rows.tuples()})  # a Result has keys(): no update(rows)
        for status, count in counts.items():
            trials.add_metric([status], count)
        yield trials

        yield self._trial_durations(session)

    @staticmethod
    def _trial_durations(session: Session) -> HistogramMetricFamily:
        seconds = Candidate.train_seconds
        columns = [func.count(seconds), func.coalesce(func.sum(seconds), 0.0)]
        columns += [func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0) for bound in TRIAL_BUCKETS_S]
        rows = session.execute(
            select(Candidate.status, *columns).where(seconds.is_not(None)).group_by(Candidate.status)
        ).all()
        found = {row[0]: row[1:] for row in rows}
        family = HistogramMetricFamily(
            "hwnas_trial_duration_seconds", "Training time of candidates (train_seconds)", labels=["status"]
        )
        for status in CANDIDATE_STATUSES:
            count, total, *cumulative = found.get(status, (0, 0.0, *([0] * len(TRIAL_BUCKETS_S))))
            buckets = [(_bound(b), float(n)) for b, n in zip(TRIAL_BUCKETS_S, cumulative, strict=True)]
            buckets.append(("+Inf", float(count)))
            family.add_metric([status], buckets, sum_value=float(total))
        return family


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bound(value: float) -> str:
    return repr(float(value))


class ServiceMetrics:
    """One app's registry: the store collector, the HTTP metrics and the process collectors."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StoreCollector(sessions))
        self.http_requests = Counter(
            "hwnas_http_requests",
            "HTTP requests answered by this process, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "hwnas_http_request_duration_seconds",
            "Time from receiving an HTTP request to the end of its response, by route template and status",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS_S,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method if method in _METHODS else "other", route, str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/searches/{search_id}`), or `<unmatched>`."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Pure ASGI: counts and times each HTTP request; passes every message through untouched."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_watching_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_watching_status)
        finally:
            # An exception before the response started becomes a 500 in the outer error middleware.
            self.metrics.observe(
                scope.get("method", ""), route_template(scope), status or 500, time.perf_counter() - started
            )


def service_metrics(app: FastAPI) -> ServiceMetrics:
    """The app's metrics (created on first use if `install` was not called: then without HTTP figures)."""
    metrics = getattr(app.state, "metrics", None)
    if metrics is None:
        metrics = ServiceMetrics(app.state.sessions)
        app.state.metrics = metrics
    return metrics


def install(app: FastAPI) -> ServiceMetrics:
    """Create the app's registry and add the HTTP metrics middleware; call once, before the app serves."""
    metrics = service_metrics(app)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    return metrics


@router.get(
    "/metrics",
    summary="Prometheus metrics (no API key needed)",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text exposition (OpenMetrics when the Accept header asks)",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        }
    },
)
def metrics_endpoint(request: Request) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(service_metrics(request.app).registry), media_type=content_type)
