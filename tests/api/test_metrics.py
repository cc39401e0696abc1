"""`/metrics` on the live server: open, parseable Prometheus text; store figures read from the database
at scrape time (rows written through a separate engine, as a separate worker process would); HTTP
request counts and latencies labelled by route template and status."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.routes.metrics import TRIAL_BUCKETS_S, StoreCollector
from nas.store import (
    CANDIDATE_STATUSES,
    SEARCH_STATUSES,
    CandidateData,
    CandidateRepository,
    DeviceRepository,
    Search,
    SearchRepository,
    make_engine,
    session_factory,
    session_scope,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def idle_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold the live server's embedded worker idle, as compose runs the API with `--no-worker`, so a
    queued search stays queued while the test looks at it. Request it before `live_server`."""
    import nas.worker

    def wait_for_stop(*args, stop, **kwargs) -> int:
        stop.wait()
        return 0

    monkeypatch.setattr(nas.worker, "run_worker", wait_for_stop)


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _candidate(n: int, status: str, train_seconds: float | None) -> CandidateData:
    return CandidateData(
        arch_hash=f"hash-{n}",
        spec={"n": n},
        phase="search",
        status=status,  # type: ignore[arg-type]
        predicted_ms=1.0 + n,
        params=1000,
        madds=10_000,
        accuracy=0.5 if status == "completed" else None,
        train_seconds=train_seconds,
    )


def test_metrics_is_open_and_parses(idle_worker, live_server) -> None:
    samples = scrape(live_server.url)  # no Authorization header
    assert value(samples, "hwnas_store_up") == 1
    for status in SEARCH_STATUSES:
        assert ("hwnas_searches", frozenset({("status", status)})) in samples, status
        assert value(samples, "hwnas_searches", status=status) == 0
    assert value(samples, "hwnas_search_queue_length") == 0
    assert value(samples, "hwnas_search_queue_oldest_age_seconds") == 0
    for status in CANDIDATE_STATUSES:
        assert value(samples, "hwnas_trials", status=status) == 0
        assert ("hwnas_trial_duration_seconds_count", frozenset({("status", status)})) in samples
    assert any(name.startswith("process_") for name, _ in samples)
    # OpenMetrics when asked for it.
    response = httpx.get(f"{live_server.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_store_figures_follow_the_database(idle_worker, live_server, db_url) -> None:
    before = scrape(live_server.url)
    assert value(before, "hwnas_searches", status="queued") == 0
    # Another engine on the same database: what a separate worker process would write.
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        with session_scope(sessions) as session:
            device = DeviceRepository(session).add("metrics-device", runtime_version="1.0", threads=1)
            searches = SearchRepository(session)

            def new_search():
                return searches.create(
                    device_id=device.id, space="tiny", dataset="digits", budget_ms=1.0, strategy="evolution",
                    request={}, owner=None,
                )  # fmt: skip

            done = new_search()
            assert searches.claim_next("test-worker", stale_after_s=3600).id == done.id
            assert searches.finish(done.public_id, "test-worker", "succeeded")
            running = new_search()
            assert searches.claim_next("test-worker", stale_after_s=3600).id == running.id
            new_search()
            oldest_queued_id = new_search().id
            candidates = CandidateRepository(session)
            trained = {"completed": [0.5, 3.0, 45.0, 4000.0], "pruned": [2.0], "failed": [0.1]}
            n = 0
            for status, durations in trained.items():
                for seconds in durations:
                    n += 1
                    assert candidates.add(running.id, _candidate(n, status, seconds))
            for _ in range(2):
                n += 1
                assert candidates.add(running.id, _candidate(n, "over_budget", None))
        # The queued searches were created just now; make the first of them 5 minutes old.
        with session_scope(sessions) as session:
            search = session.get(Search, oldest_queued_id)
            search.created_at = datetime.now(UTC) - timedelta(minutes=5)
    finally:
        engine.dispose()

    after = scrape(live_server.url)
    assert value(after, "hwnas_store_up") == 1
    assert value(after, "hwnas_searches", status="queued") == 2
    assert value(after, "hwnas_searches", status="running") == 1
    assert value(after, "hwnas_searches", status="succeeded") == 1
    assert value(after, "hwnas_searches", status="failed") == 0
    assert value(after, "hwnas_search_queue_length") == 2
    assert 300 <= value(after, "hwnas_search_queue_oldest_age_seconds") < 400
    assert value(after, "hwnas_trials", status="completed") == 4
    assert value(after, "hwnas_trials", status="pruned") == 1
    assert value(after, "hwnas_trials", status="failed") == 1
    assert value(after, "hwnas_trials", status="over_budget") == 2

    # Histogram of train_seconds per status: cumulative buckets, count, sum.
    completed = trained["completed"]
    for bound in TRIAL_BUCKETS_S:
        expected = sum(1 for s in completed if s <= bound)
        le = repr(float(bound))
        assert value(after, "hwnas_trial_duration_seconds_bucket", status="completed", le=le) == expected, bound
    assert value(after, "hwnas_trial_duration_seconds_bucket", status="completed", le="+Inf") == 4
    assert value(after, "hwnas_trial_duration_seconds_count", status="completed") == 4
    assert value(after, "hwnas_trial_duration_seconds_sum", status="completed") == pytest.approx(sum(completed))
    assert value(after, "hwnas_trial_duration_seconds_count", status="pruned") == 1
    assert value(after, "hwnas_trial_duration_seconds_bucket", status="pruned", le="1.0") == 0
    assert value(after, "hwnas_trial_duration_seconds_bucket", status="pruned", le="2.5") == 1
    assert value(after, "hwnas_trial_duration_seconds_count", status="over_budget") == 0  # never trained


def test_http_requests_are_counted_by_route_template_and_status(idle_worker, live_server) -> None:
    route = "/v1/spaces/{name}"
    before = scrape(live_server.url)
    with live_server.client("alice") as client:
        assert client.get("/v1/spaces/mobilenet_v3_small").status_code == 200
        for name in ("nope", "also-nope"):  # two paths, one template
            assert client.get(f"/v1/spaces/{name}").status_code == 404
        assert client.get("/no/such/path").status_code == 404
    assert httpx.get(f"{live_server.url}/v1/spaces").status_code == 401
    after = scrape(live_server.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    counted = "hwnas_http_requests_total"
    assert delta(counted, method="GET", route=route, status="200") == 1
    assert delta(counted, method="GET", route=route, status="404") == 2
    assert delta(counted, method="GET", route="/v1/spaces", status="401") == 1
    assert delta(counted, method="GET", route="<unmatched>", status="404") == 1
    assert delta(counted, method="GET", route="/metrics", status="200") == 1  # the `before` scrape
    assert not any(name == counted and ("route", "/v1/spaces/nope") in labels for name, labels in after)

    timed = "hwnas_http_request_duration_seconds"
    assert delta(f"{timed}_count", method="GET", route=route, status="404") == 2
    assert 0 < delta(f"{timed}_sum", method="GET", route=route, status="404") < 10
    assert delta(f"{timed}_bucket", method="GET", route=route, status="404", le="+Inf") == 2


def test_a_store_that_does_not_answer_reads_as_down_not_as_an_error(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'store.db'}")
    try:
        families = {family.name: family for family in StoreCollector(session_factory(engine)).collect()}
    finally:
        engine.dispose()
    assert list(families) == ["hwnas_store_up"]
    assert families["hwnas_store_up"].samples[0].value == 0
