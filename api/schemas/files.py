"""Downloads: ONNX models and kit zips, with the headers a device checks them by."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from nas.services.kits import KitFile, OnnxModel

_BINARY = {"schema": {"type": "string", "format": "binary"}}

ONNX_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The ONNX model; X-Hwnas-Input-Shape says what to feed it, X-Hwnas-Sha256 its checksum",
        "content": {"application/octet-stream": _BINARY},
    }
}
KIT_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The kit (zip); X-Hwnas-Kit-Id names it, X-Hwnas-Kit-Models counts its models",
        "content": {"application/zip": _BINARY},
    }
}


def onnx_response(model: OnnxModel, **headers: str) -> Response:
    return Response(
        model.content,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{model.filename}"',
            **headers,
            "X-Hwnas-Input-Shape": ",".join(str(n) for n in model.input_shape),
            "X-Hwnas-Sha256": model.sha256,
        },
    )


def kit_response(kit: KitFile) -> FileResponse:
    """The kit's file, removed once sent."""
    return FileResponse(
        kit.path,
        media_type="application/zip",
        filename=kit.filename,
        headers={"X-Hwnas-Kit-Id": kit.kit_id, "X-Hwnas-Kit-Models": str(kit.models)},
        background=BackgroundTask(kit.path.unlink, missing_ok=True),
    )
