"""The dashboard at `/`: its shells and static files (fast, no browser), and a real search followed to
its end in headless Chromium (Playwright, the system's /usr/bin/chromium; no browser is downloaded).

Both run on SQLite only: this module's `db_url` replaces the parametrised one of `tests/conftest.py`,
so `live_server` here is a real uvicorn server on a SQLite file with one embedded worker.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from nas.latency import add_device, load_predictor, store_lut_entries

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "api" / "static"
SCREENSHOT = REPO / "docs" / "dashboard.png"
CHROMIUM = os.environ.get("HWNAS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SEARCH_TIMEOUT_S = 180

DATASET = "synthetic:classes=3,per_class=24,resolution=16"

# The only absolute URL the page's files may hold: SVG's XML namespace, an identifier never fetched.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only for this module (overrides the parametrised fixture of tests/conftest.py)."""
    return f"sqlite:///{tmp_path / 'store.db'}"


# --- fast: shells, static files, traversal, no external URLs ----------------------------------------------


def _raw_get(base_url: str, raw_path: str) -> tuple[int, str]:
    """GET a path exactly as written (http.client does not normalise `..` or percent-escapes)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_pages_and_static_files_are_served_without_a_key(live_server) -> None:
    with httpx.Client(base_url=live_server.url, timeout=10) as client:  # no Authorization header
        for path, page in (("/", "searches"), ("/searches/abc123", "search"), ("/devices/pixel-8", "device")):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("text/html"), path
            assert f'data-page="{page}"' in response.text
            assert '<script type="module" src="/static/app.js">' in response.text
            assert '<link rel="stylesheet" href="/static/style.css">' in response.text
            csp = response.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        # Whatever the path holds is escaped into the shell, never interpreted.
        hostile = client.get('/devices/x"><img src=x onerror=alert(1)>')
        assert hostile.status_code == 200 and "<img" not in hostile.text and "&lt;img" in hostile.text

        expected = {
            "/static/app.js": "text/javascript",
            "/static/style.css": "text/css",
            "/static/favicon.svg": "image/svg+xml",
        }
        for path, media_type in expected.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].split(";")[0] == media_type, path
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.content == (STATIC / path.rsplit("/", 1)[1]).read_bytes()
        assert "charset=utf-8" in client.get("/static/app.js").headers["content-type"]

        schema_paths = set(client.get("/openapi.json").json()["paths"])
    assert not {"/", "/searches/{search_id}", "/devices/{name}", "/static/{path}"} & schema_paths
    assert "/v1/health" in schema_paths


TRAVERSALS = [
    "/static/../app.py",
    "/static/../routes/dashboard.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2E%2E%2Fapp.py",
    "/static/..%2F..%2Fapi%2Fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static/..%5capp.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/.gitignore",
    "/static/app.js/",
    "/static/nothing.js",
    "/static/app.js%00.css",
]


def test_static_refuses_anything_outside_its_folder(live_server) -> None:
    for raw_path in TRAVERSALS:
        status, body = _raw_get(live_server.url, raw_path)
        assert status == 404, (raw_path, status)
        assert "create_app" not in body and "root:" not in body and "[project]" not in body, raw_path


def test_page_files_reference_no_other_origin(live_server) -> None:
    url_pattern = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>)]*|https?://[^\s\"'<>)]+")
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        served = {path: client.get(path).text for path in ("/", "/searches/x", "/devices/y")}
    for name in sorted(os.listdir(STATIC)):
        served[f"/static/{name}"] = (STATIC / name).read_text(encoding="utf-8")
    assert {"/static/app.js", "/static/style.css"} <= set(served)
    for path, text in served.items():
        found = {match.group(0).rstrip(".,;") for match in url_pattern.finditer(text)}
        foreign = {url for url in found if url not in ALLOWED_URLS and not url.startswith(live_server.url)}
        assert not foreign, f"{path} references another origin: {sorted(foreign)}"
        assert "@import" not in text and "cdn" not in text.lower(), path


# --- slow: a real search, followed in headless Chromium ---------------------------------------------------


def _submit(live_server, body: dict) -> str:
    with live_server.client("alice") as client:
        response = client.post("/v1/searches", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _launch_chromium(playwright):
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def test_a_search_is_followed_live_to_its_winner(search_server, api_search_space, api_search_lut, tmp_path) -> None:
    """`search_server` (tests/conftest.py): the live server with a tiny registered space and device
    "local" (this machine, 1 thread) whose LUT covers it, so a smoke search takes seconds of training."""
    from playwright.sync_api import expect, sync_playwright

    live_server = search_server
    space = api_search_space.with_options(resolutions=[16], num_classes=3)
    fastest = load_predictor(live_server.sessions, "local", space).pricer(space).fastest()[0]
    token = live_server.tokens["alice"]
    url = live_server.url

    with sync_playwright() as playwright:
        browser = _launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        # Uncaught errors and console errors; a refused request (the wrong key below, a 409 report) is
        # logged by the browser itself as "Failed to load resource", which is expected, not a bug.
        page.on(
            "console",
            lambda message: (
                page_errors.append(message.text)
                if message.type == "error" and not message.text.startswith("Failed to load resource")
                else None
            ),
        )
        try:
            # No key yet: the page asks for one; a wrong key is refused with the server's sentence.
            page.goto(f"{url}/")
            expect(page.locator("form.key-form")).to_be_visible()
            page.fill("#api-key", "hwnas_nope_nope")
            page.click("form.key-form button[type=submit]")
            expect(page.locator("form.key-form .error")).to_contain_text("refused")

            # A key in the fragment is taken, stored, and removed from the address bar.
            page.goto(f"{url}/#key={token}")
            expect(page.locator("#searches-table")).to_be_visible()
            assert "key=" not in page.url
            assert page.evaluate("localStorage.getItem('hwnas.apiKey')") == token
            expect(page.locator("#devices-box")).to_contain_text("local")

            search_id = _submit(
                live_server,
                {
                    "device": "local",
                    "space": api_search_space.name,
                    "dataset": DATASET,
                    "budget_ms": round(3.0 * fastest, 6),
                    "effort": "smoke",
                    "resolution": 16,
                    "seed": 3,
                },
            )
            # The list picks the new search up on its own (it polls) and links to it.
            row = page.locator(f'tr[data-search-id="{search_id}"]')
            expect(row).to_be_visible(timeout=10_000)
            row.locator("a").first.click()
            page.wait_for_url(f"**/searches/{search_id}")
            expect(page.locator("#search-header .progress")).to_be_visible()

            # Follow it: record every progress value and status the page shows until it finishes.
            seen_progress: list[float] = []
            seen_status: list[str] = []
            points_while_running = 0
            deadline = time.monotonic() + SEARCH_TIMEOUT_S
            status = ""
            while time.monotonic() < deadline:
                progress = page.get_attribute("#search-header .progress", "data-progress")
                status = page.get_attribute("#search-header .pill", "data-status") or ""
                if progress is not None and (not seen_progress or float(progress) != seen_progress[-1]):
                    seen_progress.append(float(progress))
                if not seen_status or status != seen_status[-1]:
                    seen_status.append(status)
                if status == "running":
                    points_while_running = max(points_while_running, page.locator("#scatter circle.point").count())
                if status in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            assert status == "succeeded", (status, seen_status, page.locator("#search-header").inner_text())
            expect(page.locator("#search-header .bar-label")).to_have_text("100%", timeout=10_000)
            final = float(page.get_attribute("#search-header .progress", "data-progress"))
            seen_progress.append(final)
            assert final == 1.0
            assert len(set(seen_progress)) >= 2, seen_progress  # it moved...
            assert any(0 < p < 1 for p in seen_progress), seen_progress  # ...through values between 0 and 1
            assert "running" in seen_status, seen_status
            assert points_while_running > 0  # points arrived while the search ran, not only at the end

            # The scatter: candidates as points, the Pareto front, the budget line.
            expect(page.locator("#scatter")).to_be_visible()
            with live_server.client("alice") as client:
                candidates = client.get(f"/v1/searches/{search_id}/candidates", params={"limit": 200}).json()
                search = client.get(f"/v1/searches/{search_id}").json()
            trained = [c for c in candidates["items"] if c.get("accuracy") is not None]
            assert len(trained) > 0
            page.wait_for_function(
                "n => document.querySelectorAll('#scatter circle.point').length >= n", arg=len(trained), timeout=10_000
            )
            expect(page.locator("#pareto-line")).to_have_count(1)
            expect(page.locator("#budget-line")).to_have_count(1)
            expect(page.locator("#scatter .ring-winner")).to_have_count(1)

            # The winner's card, the baseline beside it, and downloads that work.
            winner_id = search["winner_id"]
            card = page.locator("#winner-card")
            expect(card).to_be_visible(timeout=10_000)
            expect(card).to_have_attribute("data-architecture-id", winner_id)
            expect(card).to_contain_text("test accuracy")
            expect(card).to_contain_text("measured")
            if search["baseline_id"]:  # MobileNetV3-Small scaled to the budget, when some width fits it
                expect(page.locator("#baseline-card")).to_have_attribute("data-architecture-id", search["baseline_id"])
                expect(card).to_contain_text("the baseline")  # accuracy points and speed against it
            else:
                expect(page.locator("#no-baseline")).to_contain_text("budget")
            links = card.locator("a.download")
            expect(links).to_have_count(4)
            with live_server.client("alice") as client:
                onnx_bytes = client.get(f"/v1/architectures/{winner_id}/onnx").content
            with page.expect_download() as download_info:
                card.locator('a.download[data-kind="onnx"]').click()
            download = download_info.value
            assert download.suggested_filename == "model.onnx"
            saved = tmp_path / "downloaded.onnx"
            download.save_as(saved)
            assert saved.read_bytes() == onnx_bytes and len(onnx_bytes) > 0
            with page.expect_download() as download_info:
                card.locator('a.download[data-kind="spec"]').click()
            spec_path = tmp_path / "spec.json"
            download_info.value.save_as(spec_path)
            assert '"blocks"' in spec_path.read_text()

            # The event log tail, streamed.
            log = page.locator("#event-log li")
            expect(page.locator('#event-log li[data-kind="done"]')).to_have_count(1)
            assert log.count() >= 5
            expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # The device page: coverage of the space and the predictor's report (the worker calibrated
            # the device on networks it measured end to end before searching).
            page.goto(f"{url}/devices/local?space={api_search_space.name}")
            expect(page.locator("#coverage-line")).to_contain_text("100.0%")
            expect(page.locator("#accuracy-table, #accuracy-409").first).to_be_visible()
            if page.locator("#accuracy-table").count():
                expect(page.locator("#accuracy-table tbody tr")).not_to_have_count(0)

            # A board with an empty table: nothing covered, the missing keys listed, and the report's
            # refusal shown as the service's sentence.
            add_device(live_server.sessions, "board", threads=1, local=False)
            page.goto(f"{url}/devices/board?space={api_search_space.name}")
            expect(page.locator("#coverage-line")).to_contain_text("0 of ")
            expect(page.locator("#coverage .key-list li")).not_to_have_count(0)
            expect(page.locator("#accuracy .error")).to_contain_text("board")
            # A phone whose table was imported whole but never measured end to end: the 409 is shown.
            add_device(live_server.sessions, "phone", threads=1, local=False)
            store_lut_entries(live_server.sessions, "phone", api_search_lut)
            page.goto(f"{url}/devices/phone?space={api_search_space.name}")
            expect(page.locator("#coverage-line")).to_contain_text("100.0%")
            expect(page.locator("#accuracy-409")).to_contain_text("phone")

            # Back on the list, the search shows as finished.
            page.goto(f"{url}/")
            expect(row.locator(".pill")).to_have_text("succeeded")
            expect(row.locator(".bar-label")).to_have_text("100%")
            assert not page_errors, page_errors
        finally:
            context.close()
            browser.close()
