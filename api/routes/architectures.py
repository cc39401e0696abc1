"""`/v1/architectures`: the networks searches exported (winner and baseline), with their files.

    GET /v1/architectures                      own (admins: all), newest first, paginated
    GET /v1/architectures/{id}                 metadata: role, search, spec JSON, latency, validation and
                                               test accuracy, the test images' positions, counts
    GET /v1/architectures/{id}/spec            spec.json    (application/json)
    GET /v1/architectures/{id}/onnx            model.onnx   (float32 NCHW input; preprocessing in its metadata)
    GET /v1/architectures/{id}/onnx-uint8      model_uint8.onnx (raw uint8 NHWC images; preprocessing in the graph)
    GET /v1/architectures/{id}/weights         weights.pt   (PyTorch: {"spec": ..., "state_dict": ...})

Files are streamed from the artifact directory the database records; another key's architecture reads
as 404, exactly like one that does not exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from api.auth import Key
from api.paging import Limit, Offset, owned_page
from api.problems import Problem
from nas.store import Architecture, ArchitectureNotFoundError, ArchitectureRepository, KeyIdentity, session_scope
from search_spaces.arch_spec import ArchSpec

router = APIRouter(tags=["architectures"])

ArtifactKind = Literal["spec", "onnx", "onnx_uint8", "weights"]
# kind -> (download name, media type); a kind's URL segment is its name with '-' for '_'
ARTIFACTS: dict[str, tuple[str, str]] = {
    "spec": ("spec.json", "application/json"),
    "onnx": ("model.onnx", "application/octet-stream"),
    "onnx_uint8": ("model_uint8.onnx", "application/octet-stream"),
    "weights": ("weights.pt", "application/octet-stream"),
}

ArchitectureId = Annotated[str, PathParam(description="the architecture's id", max_length=64)]


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None: JSON has no such numbers (a browser's
    JSON.parse refuses them, and Starlette refuses to encode them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def spec_string(spec: dict[str, Any]) -> str:
    """The short readable form of a stored spec (`ir_k5_s2_e72_c40_se_hs ...`); '' if it no longer parses."""
    try:
        return ArchSpec.model_validate(spec).to_string()
    except ValueError:
        return ""


def architecture_links(public_id: str) -> dict[str, str]:
    base = f"/v1/architectures/{public_id}"
    return {"self": base, **{kind: f"{base}/{kind.replace('_', '-')}" for kind in ARTIFACTS}}


def architecture_summary(row: Architecture) -> dict[str, Any]:
    """An architecture as lists show it (no spec JSON)."""
    return json_safe(
        {
            "id": row.public_id,
            "role": row.role,
            "search_id": row.search.public_id if row.search is not None else None,
            "arch_hash": row.arch_hash,
            "spec_string": spec_string(row.spec),
            "accuracy": row.accuracy,
            "test_accuracy": row.test_accuracy,
            "predicted_ms": row.predicted_ms,
            "measured_ms": row.measured_ms,
            "params": row.params,
            "madds": row.madds,
            "created_at": row.created_at,
            "files": sorted(kind for kind in ARTIFACTS if kind in (row.files or {})),
            "links": architecture_links(row.public_id),
        }
    )


def architecture_resource(row: Architecture) -> dict[str, Any]:
    """An architecture in full: the summary plus its spec as JSON."""
    resource = architecture_summary(row)
    resource["spec"] = dict(row.spec)
    # Positions (in the dataset as the service loaded it) of the held-out images test_accuracy is scored on.
    resource["test_indices"] = list(row.test_indices or [])
    if resource["search_id"] is not None:
        resource["links"]["search"] = f"/v1/searches/{resource['search_id']}"
    return resource


def visible_architecture(repository: ArchitectureRepository, public_id: str, identity: KeyIdentity) -> Architecture:
    """The architecture if `identity` may see it; another key's reads as not found."""
    row = repository.require(public_id)
    if not identity.may_see(row.owner):
        raise ArchitectureNotFoundError(public_id)
    return row


@router.get("/v1/architectures", summary="List your architectures (admins: all), newest first")
def list_architectures(
    request: Request,
    identity: Key,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    return owned_page(request, identity, ArchitectureRepository, architecture_summary, limit, offset)


@router.get("/v1/architectures/{architecture_id}", summary="One architecture: spec, latency, accuracy, links")
def get_architecture(architecture_id: ArchitectureId, request: Request, identity: Key) -> dict[str, Any]:
    with session_scope(request.app.state.sessions) as session:
        return architecture_resource(visible_architecture(ArchitectureRepository(session), architecture_id, identity))


def _artifact_path(row: Architecture, kind: str) -> Path:
    name = (row.files or {}).get(kind)
    if not name:
        raise Problem(404, f"architecture {row.public_id!r} has no {kind} file", field="kind")
    directory = Path(row.artifact_dir).resolve()
    path = (directory / str(name)).resolve()
    if directory not in path.parents:  # a stored name may never point outside its directory
        raise Problem(404, f"architecture {row.public_id!r} has no {kind} file", field="kind")
    if not path.is_file():
        raise Problem(
            404,
            f"the {kind} file of architecture {row.public_id!r} is missing from the artifact directory",
            field="kind",
        )
    return path


def _download(architecture_id: str, kind: str, request: Request, identity: KeyIdentity) -> FileResponse:
    with session_scope(request.app.state.sessions) as session:
        row = visible_architecture(ArchitectureRepository(session), architecture_id, identity)
        path = _artifact_path(row, kind)
    filename, media_type = ARTIFACTS[kind]
    return FileResponse(path, media_type=media_type, filename=filename)


_FILE_RESPONSE = {200: {"content": {"application/octet-stream": {}}, "description": "the file, streamed"}}


@router.get("/v1/architectures/{architecture_id}/spec", summary="Download spec.json", responses=_FILE_RESPONSE)
def download_spec(architecture_id: ArchitectureId, request: Request, identity: Key) -> FileResponse:
    return _download(architecture_id, "spec", request, identity)


@router.get("/v1/architectures/{architecture_id}/onnx", summary="Download model.onnx", responses=_FILE_RESPONSE)
def download_onnx(architecture_id: ArchitectureId, request: Request, identity: Key) -> FileResponse:
    return _download(architecture_id, "onnx", request, identity)


@router.get(
    "/v1/architectures/{architecture_id}/onnx-uint8",
    summary="Download model_uint8.onnx: raw uint8 images [N, H, W, C] in, logits and probabilities out",
    responses=_FILE_RESPONSE,
)
def download_onnx_uint8(architecture_id: ArchitectureId, request: Request, identity: Key) -> FileResponse:
    return _download(architecture_id, "onnx_uint8", request, identity)


@router.get(
    "/v1/architectures/{architecture_id}/weights",
    summary="Download weights.pt (torch.load: {'spec': ..., 'state_dict': ...})",
    responses=_FILE_RESPONSE,
)
def download_weights(architecture_id: ArchitectureId, request: Request, identity: Key) -> FileResponse:
    return _download(architecture_id, "weights", request, identity)
