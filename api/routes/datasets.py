"""`/v1/datasets`: upload a dataset once, then name it by id in `POST /v1/searches`.

    POST /v1/datasets        multipart/form-data: `file` (an .npz with `x`/`y`, or an ImageFolder zip),
                             optional `name`  -> 201 + Location, the dataset resource
    GET  /v1/datasets        own (admins: all), newest first, paginated
    GET  /v1/datasets/{id}   one dataset

The body is streamed to disk and refused with 413 as soon as it passes the size limit; so is a file
whose uncompressed contents or decoded pixels would pass it (read from the zip's entries, the arrays'
headers and the images' headers before anything is decoded). The kind is decided by content, not by
file name: a zip whose members are all `.npy` arrays is an .npz archive, any other zip an ImageFolder
zip, anything else 415. The file is then loaded and validated exactly as a search will load it; a file
that fails is deleted and answered with 422 naming `file` (or the part of it at fault, e.g.
`class_names` for names that are not printable or longer than 64 characters). Listings name a
dataset by id, never by where the server keeps it. Everything else is `nas.services.datasets`.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam

from api.auth import Key
from api.deps import AppSettings, Sessions
from api.paging import Limit, Offset
from api.problems import Problem
from api.uploads import receive_upload, too_large
from nas.datasets import DatasetError, DatasetTooLargeError
from nas.services import datasets
from nas.services.datasets import DatasetRecord, InvalidUploadError, UnsupportedDatasetError
from nas.services.records import Page

router = APIRouter(tags=["datasets"])

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


@router.post(
    "/v1/datasets",
    status_code=201,
    response_model=DatasetRecord,
    summary="Upload a dataset (.npz or ImageFolder zip), size-limited",
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {"description": "the file, its uncompressed contents or its decoded pixels exceed HWNAS_MAX_UPLOAD_MB"},
        415: {"description": "not a zip/npz"},
    },
)
async def upload_dataset(
    request: Request, response: Response, identity: Key, sessions: Sessions, settings: AppSettings
) -> DatasetRecord:
    limit = settings.max_upload_bytes
    upload = await receive_upload(request, settings.dataset_dir, limit)
    try:
        dataset = await anyio.to_thread.run_sync(
            lambda: datasets.store_upload(
                sessions,
                upload.path,
                size_bytes=upload.size,
                sha256=upload.sha256,
                name=upload.fields.get("name", ""),
                viewer=identity,
                directory=settings.dataset_dir,
                max_bytes=limit,
            )
        )
    except DatasetTooLargeError as error:
        raise too_large(error.limit, str(error)) from None
    except UnsupportedDatasetError as error:
        raise Problem(415, str(error), field="file") from None
    except InvalidUploadError as error:
        raise Problem(422, str(error), field=error.field or "file", kind=error.kind) from None
    except DatasetError as error:
        raise Problem(422, str(error), field=error.field or "file") from None
    finally:
        upload.discard()
    response.headers["Location"] = dataset.links["self"]
    return dataset


@router.get(
    "/v1/datasets", response_model=Page[DatasetRecord], summary="List your datasets (admins: all), newest first"
)
def list_datasets(identity: Key, sessions: Sessions, limit: Limit = 50, offset: Offset = 0) -> Page[DatasetRecord]:
    return datasets.list_page(sessions, identity, limit=limit, offset=offset)


@router.get("/v1/datasets/{dataset_id}", response_model=DatasetRecord, summary="One uploaded dataset")
def get_dataset(
    dataset_id: Annotated[str, PathParam(max_length=64)], identity: Key, sessions: Sessions
) -> DatasetRecord:
    return datasets.get(sessions, dataset_id, identity)
