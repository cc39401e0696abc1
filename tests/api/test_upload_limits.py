"""HWNAS_MAX_UPLOAD_MB bounds memory all the way down, not only the HTTP body: an upload whose
uncompressed contents or decoded pixels would pass it is a 413 naming `file` (decided from zip entries,
array headers and image headers, before anything is decoded); a built-in dataset a search asks for is
a 422 naming `dataset` when its generated pixels would pass it; lists and repeatable filters have a
maximum length. The server's settings are replaced with a tiny limit through the settings dependency.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.search.request import MAX_WIDTHS
from nas.store import DatasetRepository, SearchRepository, session_scope

LIMIT = 32 * 1024
PROBLEM = "application/problem+json"


@pytest.fixture
def small_limit(live_server):
    """The live server with `max_upload_bytes` = LIMIT."""
    from api.deps import get_settings

    settings = replace(live_server.settings, max_upload_bytes=LIMIT)
    live_server.app.dependency_overrides[get_settings] = lambda: settings
    try:
        yield live_server
    finally:
        live_server.app.dependency_overrides.pop(get_settings, None)


def problem(response, status: int, field: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"] and body.get("field") == field, body
    return body


def nothing_stored(server) -> None:
    with session_scope(server.sessions) as session:
        assert DatasetRepository(session).count() == 0
        assert SearchRepository(session).count() == 0
    directory = Path(server.settings.dataset_dir)
    assert not directory.exists() or list(directory.rglob("*")) == []


def upload(server, data: bytes, filename: str = "data.npz"):
    assert len(data) < LIMIT  # the body itself is within the limit: only what it decodes to is not
    with server.client() as client:
        return client.post("/v1/datasets", files={"file": (filename, data)})


def npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def npy_member(shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    """An .npy file whose header declares `shape` whatever `payload` really holds."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})  # fmt: skip
    return buffer.getvalue() + payload


# --- uploads ---------------------------------------------------------------------------------------


def test_a_compressed_npz_whose_arrays_pass_the_limit_is_413(small_limit) -> None:
    x = np.zeros((60, 32, 32, 3), dtype=np.uint8)  # 184 kB of zeros compress to about 1 kB
    body = problem(upload(small_limit, npz(compressed=True, x=x, y=np.repeat(np.arange(3), 20))), 413, "file")
    assert body["max_bytes"] == LIMIT and "uncompressed" in body["detail"]
    nothing_stored(small_limit)


def test_an_npz_whose_header_declares_a_huge_array_is_413_before_numpy_allocates_it(small_limit) -> None:
    """The zip entry is honest about its few bytes; the .npy header inside claims 30 GB of pixels."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", npy_member((10_000_000, 32, 32, 3), "uint8", bytes(64)))
        archive.writestr("y.npy", npy_member((6,), "int64", np.arange(6, dtype=np.int64).tobytes()))
    body = problem(upload(small_limit, buffer.getvalue()), 413, "file")
    assert body["max_bytes"] == LIMIT and "declare" in body["detail"]
    nothing_stored(small_limit)


def test_an_imagefolder_zip_whose_pixels_pass_the_limit_is_413(small_limit) -> None:
    """Four flat 128x128 PNGs are a few hundred bytes; decoded they are 64 kB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("cat", "dog"):
            for index in range(2):
                image = io.BytesIO()
                Image.new("L", (128, 128)).save(image, format="PNG")
                archive.writestr(f"{name}/{index}.png", image.getvalue())
    body = problem(upload(small_limit, buffer.getvalue(), "pets.zip"), 413, "file")
    assert body["max_bytes"] == LIMIT and "smaller resolution" in body["detail"]
    nothing_stored(small_limit)


def test_a_dataset_within_the_limit_is_still_accepted(small_limit) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(18, 16, 16), dtype=np.uint8)
    response = upload(small_limit, npz(x=x, y=np.repeat(np.arange(3), 6)))
    assert response.status_code == 201, response.text
    assert response.json()["image_shape"] == [1, 16, 16]


def test_a_part_header_longer_than_allowed_is_refused(small_limit) -> None:
    """python-multipart bounds each part's headers (about 4 kB): a longer one is a malformed body."""
    boundary = "b"
    filename = "x" * 8192
    content = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}.npz"\r\n\r\nPK\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    with small_limit.client() as client:
        response = client.post(
            "/v1/datasets", content=content, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
    problem(response, 400, "body")
    nothing_stored(small_limit)


# --- search requests -------------------------------------------------------------------------------


@pytest.fixture
def local_device(live_server) -> None:
    from nas.latency import add_device

    add_device(live_server.sessions, "local", threads=1)


def search_request(**changes) -> dict:
    return {"device": "local", "dataset": "digits", "budget_ms": 5.0, "effort": "smoke", **changes}


@pytest.mark.parametrize(
    ("dataset", "limited"),
    [
        ("synthetic:classes=3,per_class=24,resolution=16", True),  # 55 kB: over the 32 kB limit only
        ("synthetic:classes=10,per_class=1000,resolution=64", False),  # 123 MB: over the server's 4 MiB
        ("digits:resolution=128", False),  # 1,797 images at 128 px: 29 MB
        ("photos:per_class=200,resolution=128", False),  # 177 MB
    ],
)
def test_a_built_in_dataset_whose_pixels_pass_the_limit_is_422_naming_dataset(
    live_server, local_device, small_limit, dataset, limited
) -> None:
    from api.deps import get_settings

    if not limited:
        live_server.app.dependency_overrides.pop(get_settings, None)
    with live_server.client() as client:
        body = problem(client.post("/v1/searches", json=search_request(dataset=dataset)), 422, "dataset")
    assert "more than the limit" in body["detail"]
    nothing_stored(live_server)


def test_lists_in_a_search_request_have_a_maximum_length(live_server, local_device) -> None:
    with live_server.client() as client:
        widths = [1.0] * (MAX_WIDTHS + 1)
        problem(client.post("/v1/searches", json=search_request(widths=widths)), 422, "widths")
        problem(client.post("/v1/searches", json=search_request(space="s" * 101)), 422, "space")
    nothing_stored(live_server)


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/v1/searches", "status", "queued"),
        ("/v1/searches/nope/candidates", "phase", "search"),
        ("/v1/searches/nope/candidates", "status", "completed"),
        ("/v1/searches/nope/pareto", "phase", "search"),
    ],
)
def test_repeatable_filters_have_a_maximum_length(live_server, path, name, value) -> None:
    from api.routes.searches import MAX_FILTER_VALUES

    with live_server.client() as client:
        assert client.get(path, params={name: [value] * MAX_FILTER_VALUES}).status_code in (200, 404)
        problem(client.get(path, params={name: [value] * (MAX_FILTER_VALUES + 1)}), 422, name)


# --- zip directories -------------------------------------------------------------------------------


def _zip_of_empty_entries(path: Path, count: int, prefix: bytes = b"") -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"{index}", b"")
    path.write_bytes(prefix + buffer.getvalue())
    return path


@pytest.mark.parametrize(("count", "prefix"), [(3_000, b""), (3_000, b"#!/bin/sh\n"), (70_000, b"")])  # 70k: zip64
def test_a_zip_listing_more_entries_than_a_dataset_can_use_is_refused_before_zipfile_reads_it(
    tmp_path: Path, count: int, prefix: bytes
) -> None:
    from nas.datasets import DatasetError
    from nas.datasets.zip_entries import check_zip_entries, count_entries

    path = _zip_of_empty_entries(tmp_path / "many.zip", count, prefix)
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) == count
    assert count_entries(path, stop_after=100) == 101  # counted from the raw records, stopping early
    assert count_entries(path, stop_after=count) >= count  # enough room: a cheap upper bound is fine
    with pytest.raises(DatasetError, match="more than 100 entries") as refused:
        check_zip_entries(path, 100, "many.zip")
    assert refused.value.field == "file"
    check_zip_entries(path, count, "many.zip")
    not_a_zip = tmp_path / "no.zip"
    not_a_zip.write_bytes(b"not a zip at all")
    assert count_entries(not_a_zip, 10) is None
