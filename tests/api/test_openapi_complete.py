"""/openapi.json documents what every operation returns on success: a typed schema for JSON (a model,
never a bare object), a media type with a schema for files, pages and text. Clients, the docs and the
schema fuzz test (tests/api/test_schema_fuzz.py) then see the whole API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# Operations whose response models are still on their way, skipped here until then (as ("GET", "/v1/...")).
# Empty: every operation passes. Add one only while its model is being written, and empty it again.
PENDING: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory: Path = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        database_url=f"sqlite:///{directory / 'hwnas.db'}",
        artifact_dir=directory / "artifacts",
        embedded_worker=False,
        log_format="text",
    )
    return create_app(settings).openapi()


def operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def _resolve(schema: dict[str, Any], openapi: dict[str, Any]) -> dict[str, Any]:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    return openapi["components"]["schemas"][reference.rsplit("/", 1)[-1]]


def is_typed(schema: dict[str, Any], openapi: dict[str, Any]) -> bool:
    """Whether a JSON schema says what the body holds: a model (properties), a list or map of typed
    values, a union of typed alternatives, or a scalar; a bare `object` (dict[str, Any]) is not."""
    schema = _resolve(schema, openapi)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return all(is_typed(option, openapi) for option in alternatives)
    kind = schema.get("type")
    if kind == "array":
        return is_typed(schema.get("items") or {}, openapi)
    if kind == "object" or "properties" in schema:
        values = schema.get("additionalProperties")
        return bool(schema.get("properties")) or (isinstance(values, dict) and is_typed(values, openapi))
    return kind in {"string", "integer", "number", "boolean", "null"}


def success_problems(operation: dict[str, Any], openapi: dict[str, Any]) -> list[str]:
    """What an operation's 2xx responses fail to document (empty when complete)."""
    successes = {code: response for code, response in operation["responses"].items() if code.startswith("2")}
    if not successes:
        return ["no 2xx response"]
    found = []
    for code, response in successes.items():
        content = response.get("content") or {}
        if not content:
            found.append(f"{code}: no content")
        for media_type, body in content.items():
            schema = body.get("schema") or {}
            if not schema:
                found.append(f"{code} {media_type}: no schema")
            elif "json" in media_type and not is_typed(schema, openapi):
                found.append(f"{code} {media_type}: an untyped schema {schema}")
    return found


def test_every_success_response_has_a_schema(openapi: dict[str, Any]) -> None:
    checked, incomplete = 0, {}
    for method, path, operation in operations(openapi):
        if (method, path) in PENDING:
            continue
        checked += 1
        problems = success_problems(operation, openapi)
        if problems:
            incomplete[f"{method} {path}"] = problems
    assert checked >= 20, checked
    assert not incomplete, incomplete


def test_the_check_tells_a_model_from_a_bare_object(openapi: dict[str, Any]) -> None:
    bare = {"responses": {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}}}
    assert success_problems(bare, openapi) == ["200 application/json: an untyped schema {'type': 'object'}"]
    files = {"responses": {"200": {"content": {"application/zip": {}}}}}
    assert success_problems(files, openapi) == ["200 application/zip: no schema"]
    assert success_problems({"responses": {"404": {}}}, openapi) == ["no 2xx response"]
    device = openapi["paths"]["/v1/devices/{name}"]["get"]
    assert success_problems(device, openapi) == []
