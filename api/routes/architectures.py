"""`/v1/architectures`: the networks searches exported (winner and baseline), with their files.

    GET /v1/architectures                      own (admins: all), newest first, paginated
    GET /v1/architectures/{id}                 metadata: role, search, spec JSON, latency, validation and
                                               test accuracy, the test images' positions, counts
    GET /v1/architectures/{id}/spec            spec.json    (application/json)
    GET /v1/architectures/{id}/onnx            model.onnx   (float32 NCHW input; preprocessing in its metadata)
    GET /v1/architectures/{id}/onnx-uint8      model_uint8.onnx (raw uint8 NHWC images; preprocessing in the graph)
    GET /v1/architectures/{id}/weights         weights.pt   (PyTorch: {"spec": ..., "state_dict": ...})

Files are streamed from the artifact directory the database records; another key's architecture reads
as 404, exactly like one that does not exist. Everything is `nas.services.architectures`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from api.auth import Key
from api.deps import Sessions
from api.paging import Limit, Offset
from api.service_errors import ServiceRoute
from nas.services import architectures
from nas.services.architectures import ArchitectureRecord, ArchitectureSummary
from nas.services.records import Page

router = APIRouter(tags=["architectures"], route_class=ServiceRoute)

ArchitectureId = Annotated[str, PathParam(description="the architecture's id", max_length=64)]


@router.get(
    "/v1/architectures",
    response_model=Page[ArchitectureSummary],
    summary="List your architectures (admins: all), newest first",
)
def list_architectures(
    identity: Key, sessions: Sessions, limit: Limit = 50, offset: Offset = 0
) -> Page[ArchitectureSummary]:
    return architectures.list_page(sessions, identity, limit=limit, offset=offset)


@router.get(
    "/v1/architectures/{architecture_id}",
    response_model=ArchitectureRecord,
    summary="One architecture: spec, latency, accuracy, links",
)
def get_architecture(architecture_id: ArchitectureId, identity: Key, sessions: Sessions) -> ArchitectureRecord:
    return architectures.get(sessions, architecture_id, identity)


# (path suffix, artifact kind, summary, media type): one download route each, all the same handler.
DOWNLOADS: tuple[tuple[str, str, str, str], ...] = (
    ("spec", "spec", "Download spec.json", "application/json"),
    ("onnx", "onnx", "Download model.onnx", "application/octet-stream"),
    (
        "onnx-uint8",
        "onnx_uint8",
        "Download model_uint8.onnx: raw uint8 images [N, H, W, C] in, logits and probabilities out",
        "application/octet-stream",
    ),
    (
        "weights",
        "weights",
        "Download weights.pt (torch.load: {'spec': ..., 'state_dict': ...})",
        "application/octet-stream",
    ),
)


def _download_route(kind: str) -> Callable[..., FileResponse]:
    def download(architecture_id: ArchitectureId, identity: Key, sessions: Sessions) -> FileResponse:
        file = architectures.artifact_file(sessions, architecture_id, kind, identity)  # NotFound: 404 naming `kind`
        return FileResponse(file.path, media_type=file.media_type, filename=file.filename)

    download.__name__ = f"download_{kind}"
    return download


for _suffix, _kind, _summary, _media_type in DOWNLOADS:
    router.add_api_route(
        f"/v1/architectures/{{architecture_id}}/{_suffix}",
        _download_route(_kind),
        methods=["GET"],
        summary=_summary,
        response_class=FileResponse,
        responses={
            200: {
                "description": "the file, streamed (Content-Disposition names it)",
                "content": {_media_type: {"schema": {"type": "string", "format": "binary"}}},
            },
            404: {"description": "unknown architecture, or it has no such file"},
        },
    )
