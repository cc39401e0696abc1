"""A thin httpx client of the service, used by the CLI and the demo.

`HWNAS_SERVER` (default http://127.0.0.1:8000) and `HWNAS_API_KEY` configure it. A problem+json
answer becomes an `ApiError` whose message is the server's `detail`, so the CLI prints the same
sentence the API returned.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from nas.settings import API_KEY_ENV, DEFAULT_SERVER, SERVER_ENV, Settings  # noqa: F401 (re-exported)


class ApiError(Exception):
    """The service answered with an error (a problem+json body when it is hwnas)."""

    def __init__(self, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.problem = problem or {}
        field = self.problem.get("field")
        super().__init__(f"{detail} (HTTP {status}{', field ' + field if field else ''})")


def raise_for_problem(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        raise ApiError(response.status_code, str(body["detail"]), body)
    raise ApiError(response.status_code, response.text[:200] or response.reason_phrase)


class ApiClient:
    """`with ApiClient() as api: api.get_json("/v1/spaces")`."""

    def __init__(self, server: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        settings = Settings()
        self.server = (server or settings.server).rstrip("/")
        key = api_key if api_key is not None else settings.api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ApiError(0, f"cannot reach the hwnas server at {self.server}: {error}") from None
        return raise_for_problem(response)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, payload: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=payload, **kwargs)
        return response.json() if response.content else None

    def download(self, path: str, target: os.PathLike[str] | str) -> int:
        """Stream `path` to the file `target`; returns the number of bytes written."""
        written = 0
        try:
            with self.http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    raise_for_problem(response)
                with open(target, "wb") as handle:
                    for chunk in response.iter_bytes(1 << 16):
                        handle.write(chunk)
                        written += len(chunk)
        except httpx.TransportError as error:
            raise ApiError(0, f"cannot reach the hwnas server at {self.server}: {error}") from None
        return written
