"""`/v1/datasets`: uploads of .npz archives and ImageFolder zips, checked by content, size-limited,
validated as a search would load them, owned by the key that uploaded them, usable by id in a search.
A refused upload stores nothing: no row, no file."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.store import DatasetRepository, SearchRepository, session_scope
from tests.api.search_helpers import search_body, wait_finished

PROBLEM = "application/problem+json"


def npz_bytes(n_per_class: int = 6, classes: int = 3, side: int = 16, **extra: np.ndarray) -> bytes:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_per_class * classes, side, side, 3), dtype=np.uint8)
    y = np.repeat(np.arange(classes) * 10, n_per_class)  # any integers: 0, 10, 20
    buffer = io.BytesIO()
    np.savez(buffer, **{"x": x, "y": y, **extra})
    return buffer.getvalue()


def imagefolder_bytes(classes=("cat", "dog"), per_class: int = 3, side: int = 20, extra: dict | None = None) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in classes:
            for index in range(per_class):
                pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
                image = io.BytesIO()
                Image.fromarray(pixels).save(image, format="PNG")
                archive.writestr(f"pets/{name}/{index}.png", image.getvalue())
        for member, data in (extra or {}).items():
            archive.writestr(member, data)
    return buffer.getvalue()


def upload(client, data: bytes, filename: str = "data.npz", **fields: str):
    return client.post("/v1/datasets", files={"file": (filename, data)}, data=fields)


def problem(response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def nothing_stored(server) -> None:
    with session_scope(server.sessions) as session:
        assert DatasetRepository(session).count() == 0
    directory = Path(server.settings.dataset_dir)
    assert not directory.exists() or list(directory.rglob("*")) == []


def test_an_npz_upload_is_validated_stored_and_usable_by_id(search_server) -> None:
    data = npz_bytes()
    alice = search_server.client("alice")
    response = upload(alice, data, "my digits.npz", name="three classes")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert response.headers["location"] == f"/v1/datasets/{dataset['id']}"
    assert dataset["kind"] == "npz" and dataset["name"] == "three classes"
    assert dataset["num_classes"] == 3 and dataset["num_images"] == 18 and dataset["image_shape"] == [3, 16, 16]
    assert dataset["size_bytes"] == len(data) and dataset["sha256"] == hashlib.sha256(data).hexdigest()
    assert "path" not in dataset
    stored = list(Path(search_server.settings.dataset_dir).iterdir())
    assert [p.name for p in stored] == [f"{dataset['id']}.npz"] and stored[0].read_bytes() == data

    assert alice.get(f"/v1/datasets/{dataset['id']}").json() == dataset
    assert alice.get("/v1/datasets").json()["items"] == [dataset]
    bob, admin = search_server.client("bob"), search_server.client("admin")
    problem(bob.get(f"/v1/datasets/{dataset['id']}"), 404, "dataset")
    assert bob.get("/v1/datasets").json()["total"] == 0
    assert admin.get(f"/v1/datasets/{dataset['id']}").status_code == 200
    assert admin.get("/v1/datasets").json()["total"] == 1

    # Usable by id; the search shows the id, never the path; bob cannot use it.
    problem(bob.post("/v1/searches", json=search_body(dataset=dataset["id"])), 404, "dataset")
    submitted = alice.post("/v1/searches", json=search_body(dataset=dataset["id"], budget_ms=1e3))
    assert submitted.status_code == 202, submitted.text
    search = submitted.json()
    assert search["dataset"] == dataset["id"] and search["request"]["dataset"] == dataset["id"]
    assert str(search_server.settings.dataset_dir) not in submitted.text
    alice.post(f"/v1/searches/{search['id']}/cancel")
    assert wait_finished(alice, search["id"])["status"] == "cancelled"
    with session_scope(search_server.sessions) as session:
        row = SearchRepository(session).require(search["id"])
        assert row.request["dataset"] == str(stored[0].resolve())  # what the worker loads


def test_an_imagefolder_zip_is_detected_by_content(search_server) -> None:
    data = imagefolder_bytes(extra={"__MACOSX/._junk": b"x", "pets/.DS_Store": b"x"})
    with search_server.client() as client:
        response = upload(client, data, "upload.bin")  # the name says nothing; the content decides
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["kind"] == "imagefolder" and dataset["name"] == "upload"
    assert dataset["num_classes"] == 2 and dataset["num_images"] == 6 and dataset["image_shape"] == [3, 20, 20]
    assert (Path(search_server.settings.dataset_dir) / f"{dataset['id']}.zip").read_bytes() == data


def test_too_large_is_413_before_anything_is_kept(search_server) -> None:
    limit = search_server.settings.max_upload_bytes
    data = npz_bytes(n_per_class=(limit // (16 * 16 * 3)) // 3 + 10)
    assert len(data) > limit
    with search_server.client() as client:
        body = problem(upload(client, data), 413, "file")
    assert body["max_bytes"] == limit
    nothing_stored(search_server)


def test_too_large_without_content_length_is_cut_off_while_streaming(search_server) -> None:
    """A chunked body declares no size: the server counts as it reads and stops at the limit."""
    limit = search_server.settings.max_upload_bytes
    boundary = "hwnas-test-boundary"
    sent = []

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.npz"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        chunk = b"\0" * 2**16
        for _ in range(limit // len(chunk) + 64):
            sent.append(len(chunk))
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    with search_server.client() as client:
        response = client.post(
            "/v1/datasets", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
    problem(response, 413, "file")
    assert sum(sent) > limit  # the body really was larger than the limit
    nothing_stored(search_server)


@pytest.mark.parametrize(
    ("data", "filename", "status", "words"),
    [
        (b"PK\x03\x04" + b"\x00garbage" * 100, "broken.npz", 422, "corrupt"),
        (npz_bytes()[:700], "truncated.npz", 422, "corrupt"),
        (b"just some text\n" * 20, "notes.txt", 415, ".npz"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "picture.npz", 415, "zip"),
        (b"", "empty.npz", 422, "empty"),
    ],
)
def test_corrupt_or_wrong_kind_is_refused(search_server, data, filename, status, words) -> None:
    with search_server.client() as client:
        body = problem(upload(client, data, filename), status, "file")
    assert words in body["detail"]
    nothing_stored(search_server)


def _npz_without_y() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((6, 16, 16), dtype=np.uint8))
    return buffer.getvalue()


def _npz_with_float_images() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((6, 16, 16), dtype=np.float32), y=np.array([0, 0, 0, 1, 1, 1]))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_npz_without_y(), "'y'"),
        (_npz_with_float_images(), "uint8"),
        (npz_bytes(classes=1), "at least 2 classes"),
        (imagefolder_bytes(extra={"pets/readme.txt": b"hello"}), "readme.txt"),
        (imagefolder_bytes(classes=("only",)), "at least 2 classes"),
        (imagefolder_bytes(extra={"../escape.png": b"x"}), "outside"),
    ],
)
def test_invalid_datasets_are_422_naming_the_problem(search_server, data, words) -> None:
    with search_server.client() as client:
        body = problem(upload(client, data, "d.zip"), 422, "file")
    assert words in body["detail"], body["detail"]
    nothing_stored(search_server)


def test_the_form_itself_must_be_right(search_server) -> None:
    with search_server.client() as client:
        problem(client.post("/v1/datasets", json={"file": "data.npz"}), 415, "Content-Type")
        problem(client.post("/v1/datasets", data={"name": "no file"}, files={"other": ("a", b"1")}), 422, "other")
        problem(client.post("/v1/datasets", data={"name": "only a name"}), 415, "Content-Type")  # urlencoded
        only_name = client.post(
            "/v1/datasets",
            content=b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n',
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        problem(only_name, 422, "file")
        problem(upload(client, npz_bytes(), name="n" * 201), 422, "name")
        cut = client.post(
            "/v1/datasets",
            content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.npz"\r\n\r\nPK',
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        problem(cut, 400, "body")
        problem(client.post("/v1/datasets", content=b"x", headers={"Content-Type": "multipart/form-data"}), 400, None)
    nothing_stored(search_server)
