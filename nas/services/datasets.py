"""Datasets: uploaded once (an `.npz` or an ImageFolder zip), then named by id in a search.

An uploaded file is kept under the artifact directory as `<id>.<npz|zip>`; its path stays on the
server. Records and errors name a dataset by its id, its name and the file name the client sent, so
no response can tell where the server keeps anything. A dataset belongs to the key that uploaded it;
another key's reads as not found. Every size is bounded by `max_bytes` (HWNAS_MAX_UPLOAD_MB): the file,
its uncompressed contents and its decoded pixels, each checked before the memory is allocated.
"""

from __future__ import annotations

import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from nas.datasets import (
    BUILTIN_DATASETS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    DatasetError,
    DatasetTooLargeError,
    ImageDataset,
    load_imagefolder_zip,
    load_npz,
)
from nas.datasets.zip_entries import check_zip_entries, max_entries_for
from nas.services.records import Page, Timestamp, Viewer, owner_filter
from nas.store import DatasetRepository, session_scope
from nas.store.models import Dataset

DatasetKind = Literal["npz", "imagefolder"]
KIND_SUFFIX: dict[str, str] = {"npz": "npz", "imagefolder": "zip"}
MAX_NAME_LENGTH = 200
# An uploaded dataset's id (uuid4 hex), as `store_upload` hands it out.
DATASET_ID = re.compile(r"[0-9a-f]{32}")


class UnsupportedDatasetError(DatasetError):
    """The file is no zip at all: neither an `.npz` nor an ImageFolder zip (the API answers 415)."""


class InvalidUploadError(DatasetError):
    """The upload is a zip of the `kind` it looks like, but not a usable dataset (the API answers 422)."""

    def __init__(self, message: str, *, kind: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.kind = kind


class DatasetRecord(BaseModel):
    """An uploaded dataset as every caller sees it: ids and counts, never where its file lies."""

    id: str
    name: str
    kind: DatasetKind
    size_bytes: int = Field(description="the file as uploaded")
    sha256: str
    num_classes: int
    num_images: int
    image_shape: list[int] = Field(description="[channels, height, width] of every image as the service loads it")
    created_at: Timestamp
    links: dict[str, str]


def record(row: Dataset) -> DatasetRecord:
    return DatasetRecord(
        id=row.public_id,
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        num_classes=row.num_classes,
        num_images=row.num_images,
        image_shape=list(row.image_shape),
        created_at=row.created_at,
        links={"self": f"/v1/datasets/{row.public_id}"},
    )


def detect_kind(path: Path, where: str) -> DatasetKind:
    """'npz' or 'imagefolder' from the file's content (a zip whose members are all `.npy` arrays is an
    `.npz`); `UnsupportedDatasetError` when it is no zip at all, `DatasetError` when it is damaged.
    `where` names the file in messages (the client's file name, never the server's path)."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise UnsupportedDatasetError(
            "the file is neither an .npz archive nor a zip: upload np.savez(path, x=images, y=labels) output "
            "or an ImageFolder zip (class_name/image.png)",
            field="file",
        )
    check_zip_entries(path, max_entries_for(DEFAULT_MAX_IMAGES), where)  # before zipfile reads the directory
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DatasetError(f"{where}: the zip archive is corrupt ({error})", field="file") from None
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    return "imagefolder"


def _load(path: Path, max_bytes: int) -> tuple[DatasetKind, ImageDataset]:
    """Validate the file exactly as a search will load it."""
    kind = detect_kind(path, path.name)
    loader = load_npz if kind == "npz" else load_imagefolder_zip
    try:
        return kind, loader(path, max_bytes=max_bytes)
    except DatasetTooLargeError:
        raise
    except DatasetError as error:
        raise InvalidUploadError(str(error), kind=kind, field=error.field) from None


def store_upload(
    sessions: sessionmaker[Session],
    received: Path,
    *,
    size_bytes: int,
    sha256: str,
    name: str,
    viewer: Viewer,
    directory: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DatasetRecord:
    """Validate a received file, move it into `directory` under a new id and record it (all or nothing).

    `received` is moved away on success; on failure it is left for the caller to discard. Raises
    `DatasetTooLargeError` over `max_bytes`, `UnsupportedDatasetError` for a file that is no zip,
    `InvalidUploadError` (or `DatasetError` for a damaged zip, `field` "name" for a bad name) otherwise.
    """
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise DatasetError(f"name must be at most {MAX_NAME_LENGTH} characters", field="name")
    kind, dataset = _load(received, max_bytes)
    public_id = uuid.uuid4().hex
    final = directory / f"{public_id}.{KIND_SUFFIX[kind]}"
    os.replace(received, final)
    try:
        with session_scope(sessions) as session:
            row = DatasetRepository(session).add(
                public_id=public_id,
                owner=None if viewer is None else viewer.key_id,
                name=name or dataset.name,
                kind=kind,
                path=str(final.resolve()),
                size_bytes=size_bytes,
                sha256=sha256,
                num_classes=dataset.num_classes,
                num_images=len(dataset),
                image_shape=[dataset.in_channels, dataset.resolution, dataset.resolution],
            )
            return record(row)
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def list_page(sessions: sessionmaker[Session], viewer: Viewer, limit: int = 50, offset: int = 0) -> Page[DatasetRecord]:
    """The datasets `viewer` may see (its own; an admin's and the operator's: all), newest first."""
    owner = owner_filter(viewer)
    with session_scope(sessions) as session:
        repository = DatasetRepository(session)
        items = [record(row) for row in repository.list(owner=owner, limit=limit, offset=offset)]
        total = repository.count(owner=owner)
    return Page[DatasetRecord](items=items, total=total, limit=limit, offset=offset)


def get(sessions: sessionmaker[Session], public_id: str, viewer: Viewer) -> DatasetRecord:
    with session_scope(sessions) as session:
        return record(DatasetRepository(session).require(public_id, viewer=viewer))


# --- naming a dataset in a search ----------------------------------------------------------------------


def looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith((".npz", ".zip"))


def resolve_for_search(session: Session, value: str, viewer: Viewer) -> tuple[str, str | None]:
    """(what the worker loads, what the search shows) for a search's `dataset`: a built-in spec as it is,
    an uploaded id as its stored file (shown as the id).

    A key may name only built-in datasets and uploads it may see; a path from a key is refused, since
    a search may only read what was uploaded through the API. The operator (`viewer` None: the CLI on
    the server) may also name a local file, shown by its file name.
    """
    value = value.strip()
    if looks_like_path(value):
        if viewer is None:
            return value, Path(value).name
        raise DatasetError(
            f"dataset {value!r} looks like a file path; the server reads no paths from clients: upload the file "
            "with POST /v1/datasets (hwnas search submit --dataset FILE does) and pass its id",
            field="dataset",
        )
    if value.partition(":")[0] in BUILTIN_DATASETS:
        return value, None
    if DATASET_ID.fullmatch(value):
        row = DatasetRepository(session).require(value, viewer=viewer)
        return row.path, row.public_id
    raise DatasetError(
        f"unknown dataset {value!r}: expected {', '.join(BUILTIN_DATASETS)} (with options, e.g. "
        "synthetic:classes=4,per_class=20) or the id of a dataset uploaded with POST /v1/datasets",
        field="dataset",
    )
