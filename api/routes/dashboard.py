"""The live dashboard: `/` (searches), `/searches/{id}` (one search), `/devices/{name}` (one device).

The HTML pages are shells that need no key; everything they show comes from the `/v1` API, called by
`/static/app.js` with the API key the user typed once (kept in the browser's localStorage, or handed
over in the URL fragment `#key=...`, which never reaches the server). Progress streams over the
search's Server-Sent Events, read with `fetch()` because EventSource cannot send the key.

Static files are served from `api/static/` by a route here rather than a mount, so the router stays
self-contained: only plain files directly in that folder with a known suffix, nothing else (no `..`,
no dotfiles, no sub-folders), each with its content type. Nothing is loaded from another origin; the
pages' Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from api.problems import Problem

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9]+)+")

# Same origin only: scripts, styles, API calls; blob: for downloads built in the page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · hwnas</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<script type="module" src="/static/app.js"></script>
</head>
<body data-page="{page}" data-arg="{arg}">
<header class="topbar">
  <a class="brand" href="/"><span class="logo" aria-hidden="true"></span>hwnas</a>
  <nav><a href="/">Searches</a></nav>
  <div class="key-status" id="key-status"></div>
</header>
<main id="app">
  <noscript>This dashboard needs JavaScript; the same data is at <code>/v1</code> (see <code>/docs</code>).</noscript>
  <p class="muted" id="loading">Loading…</p>
</main>
</body>
</html>
"""


def _page(page: str, title: str, arg: str = "") -> HTMLResponse:
    body = SHELL.format(page=page, title=html.escape(title), arg=html.escape(arg, quote=True))
    return HTMLResponse(body, headers=PAGE_HEADERS)


# Documented like the API's routes, though kept out of /openapi.json (pages and files, not the API).
PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {"schema": {"type": "string"}}}}}
STATIC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in sorted(set(CONTENT_TYPES.values()))
        }
    }
}


@router.get("/", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def searches_page() -> HTMLResponse:
    return _page("searches", "Searches")


@router.get("/searches/{search_id}", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def search_page(search_id: str) -> HTMLResponse:
    return _page("search", f"Search {search_id[:12]}", search_id)


@router.get("/devices/{name}", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def device_page(name: str) -> HTMLResponse:
    return _page("device", f"Device {name}", name)


@router.get("/static/{path:path}", response_class=FileResponse, responses=STATIC_RESPONSES)
def static_file(path: str) -> FileResponse:
    """A file of `api/static/`; anything else (`..`, sub-folders, dotfiles, unknown suffixes) is 404."""
    missing = Problem(404, f"no static file {path!r}", field="path")
    if not _STATIC_NAME.fullmatch(path):
        raise missing
    suffix = Path(path).suffix.lower()
    media_type = CONTENT_TYPES.get(suffix)
    root = STATIC_DIR.resolve()
    candidate = (root / path).resolve()
    if media_type is None or candidate.parent != root or not candidate.is_file():
        raise missing
    return FileResponse(
        candidate,
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
