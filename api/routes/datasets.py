"""`/v1/datasets`: upload a dataset once, then name it by id in `POST /v1/searches`.

    POST /v1/datasets        multipart/form-data: `file` (an .npz with `x`/`y`, or an ImageFolder zip),
                             optional `name`  -> 201 + Location, the dataset resource
    GET  /v1/datasets        own (admins: all), newest first, paginated
    GET  /v1/datasets/{id}   one dataset

The body is streamed to disk and refused with 413 as soon as it passes the size limit. The kind is
decided by content, not by file name: a zip whose members are all `.npy` arrays is an .npz archive,
any other zip an ImageFolder zip, anything else 415. The file is then loaded and validated exactly as
a search will load it; a file that fails is deleted and answered with 422 naming `file` (or the
part of it at fault, e.g. `class_names` for names that are not printable or longer than 64 characters).
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam

from api.auth import Key
from api.paging import Limit, Offset, owned_page
from api.problems import Problem
from api.uploads import Upload, receive_upload
from nas.datasets import DatasetError, ImageDataset, load_imagefolder_zip, load_npz
from nas.store import DatasetRepository, KeyIdentity, session_scope
from nas.store.models import Dataset

router = APIRouter(tags=["datasets"])

KIND_SUFFIX = {"npz": "npz", "imagefolder": "zip"}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an .npz archive (uint8 `x` images, integer `y` labels) or an "
                            "ImageFolder zip (class_name/image.png)",
                        },
                        "name": {"type": "string", "maxLength": 200, "description": "default: the file's name"},
                    },
                }
            }
        },
    }
}


def dataset_resource(row: Dataset) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "name": row.name,
        "kind": row.kind,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "num_classes": row.num_classes,
        "num_images": row.num_images,
        "image_shape": list(row.image_shape),
        "created_at": row.created_at,
        "links": {"self": f"/v1/datasets/{row.public_id}"},
    }


def detect_kind(path: Path) -> str:
    """'npz' or 'imagefolder' from the file's content; 415 when it is no zip at all, 422 when damaged."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise Problem(
            415,
            "the file is neither an .npz archive nor a zip: upload np.savez(path, x=images, y=labels) output "
            "or an ImageFolder zip (class_name/image.png)",
            field="file",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise Problem(422, f"{path.name}: the zip archive is corrupt ({error})", field="file") from None
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    return "imagefolder"


def _validate(upload: Upload) -> tuple[str, ImageDataset]:
    kind = detect_kind(upload.path)
    loader = load_npz if kind == "npz" else load_imagefolder_zip
    try:
        return kind, loader(upload.path)
    except DatasetError as error:
        raise Problem(422, str(error), field=error.field or "file", kind=kind) from None


def _store(upload: Upload, identity: KeyIdentity, sessions: Any, directory: Path) -> dict[str, Any]:
    """Validate the received file, move it to its final place and record it (all or nothing)."""
    try:
        name = upload.fields.get("name", "").strip()
        if len(name) > 200:
            raise Problem(422, "name must be at most 200 characters", field="name")
        kind, dataset = _validate(upload)
        public_id = uuid.uuid4().hex
        final = directory / f"{public_id}.{KIND_SUFFIX[kind]}"
        os.replace(upload.path, final)
    finally:
        upload.discard()
    try:
        with session_scope(sessions) as session:
            row = DatasetRepository(session).add(
                public_id=public_id,
                owner=identity.key_id,
                name=name or dataset.name,
                kind=kind,
                path=str(final.resolve()),
                size_bytes=upload.size,
                sha256=upload.sha256,
                num_classes=dataset.num_classes,
                num_images=len(dataset),
                image_shape=[dataset.in_channels, dataset.resolution, dataset.resolution],
            )
            return dataset_resource(row)
    except BaseException:
        final.unlink(missing_ok=True)
        raise


@router.post(
    "/v1/datasets",
    status_code=201,
    summary="Upload a dataset (.npz or ImageFolder zip), size-limited",
    openapi_extra=_UPLOAD_BODY,
    responses={413: {"description": "larger than HWNAS_MAX_UPLOAD_MB"}, 415: {"description": "not a zip/npz"}},
)
async def upload_dataset(request: Request, response: Response, identity: Key) -> dict[str, Any]:
    settings = request.app.state.settings
    directory = Path(settings.dataset_dir)
    upload = await receive_upload(request, directory, settings.max_upload_bytes)
    resource = await anyio.to_thread.run_sync(_store, upload, identity, request.app.state.sessions, directory)
    response.headers["Location"] = resource["links"]["self"]
    return resource


@router.get("/v1/datasets", summary="List your datasets (admins: all), newest first")
def list_datasets(
    request: Request,
    identity: Key,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    return owned_page(request, identity, DatasetRepository, dataset_resource, limit, offset)


@router.get("/v1/datasets/{dataset_id}", summary="One uploaded dataset")
def get_dataset(
    dataset_id: Annotated[str, PathParam(max_length=64)], request: Request, identity: Key
) -> dict[str, Any]:
    with session_scope(request.app.state.sessions) as session:
        return dataset_resource(DatasetRepository(session).require(dataset_id, viewer=identity))
