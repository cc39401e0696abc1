"""Helpers shared by the HTTP search tests: request bodies, budgets, waiting, reading an SSE stream."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

DATASET = "synthetic:classes=3,per_class=24,resolution=16"
FINISHED = ("succeeded", "failed", "cancelled")


def search_body(**changes: Any) -> dict[str, Any]:
    body = {
        "device": "local",
        "space": "api_tiny",
        "dataset": DATASET,
        "budget_ms": 50.0,
        "effort": "smoke",
        "resolution": 16,
        "seed": 3,
    }
    body.update(changes)
    return body


def fastest_ms(server) -> float:
    """The fastest network of the tiny space on device "local", as the submission check prices it."""
    from nas.latency import load_predictor
    from search_spaces.space import get_space

    space = get_space("api_tiny").with_options(resolutions=[16], num_classes=3)
    return load_predictor(server.sessions, "local", space).pricer(space).fastest()[0]


def wait_for(client: httpx.Client, search_id: str, condition, timeout: float = 180.0, interval: float = 0.2) -> dict:
    """Poll GET /v1/searches/{id} until `condition(resource)`; returns the resource."""
    deadline = time.monotonic() + timeout
    while True:
        resource = client.get(f"/v1/searches/{search_id}").json()
        if condition(resource):
            return resource
        if time.monotonic() > deadline:
            raise AssertionError(f"search {search_id} did not get there in {timeout} s: {resource}")
        time.sleep(interval)


def wait_finished(client: httpx.Client, search_id: str, timeout: float = 180.0) -> dict:
    return wait_for(client, search_id, lambda r: r["status"] in FINISHED, timeout)


@dataclass
class SseMessage:
    event: str
    data: Any
    id: int | None


@dataclass
class SseReader:
    """Reads a whole SSE stream in a thread (until the server ends it)."""

    url: str
    headers: dict[str, str]
    messages: list[SseMessage] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    content_type: str = ""
    error: BaseException | None = None

    def start(self) -> SseReader:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = 180.0) -> SseReader:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the SSE stream did not end"
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=60.0) as response:
                assert response.status_code == 200, response.read()
                self.content_type = response.headers["content-type"]
                parse_sse(response.iter_lines(), self)
        except BaseException as error:  # noqa: BLE001 - re-raised in join()
            self.error = error


def parse_sse(lines, sink: SseReader) -> None:
    """A minimal SSE parser (the WHATWG rules this server uses: id, event, data, retry, comments)."""
    event, data, event_id = "message", [], None
    for line in lines:
        if line == "":
            if data:
                sink.messages.append(SseMessage(event, json.loads("\n".join(data)), event_id))
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            sink.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = int(value)
        elif name == "retry":
            sink.retry = int(value)


def read_sse(url: str, headers: dict[str, str]) -> SseReader:
    return SseReader(url, headers).start().join()
