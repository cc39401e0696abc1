"""`/v1/devices/{name}/networks`: the calibration networks a remote device's agent measures.

| method and path | what |
|---|---|
| GET /v1/devices/{name}/networks/missing?space= | the scope's calibration networks the device lacks |
| GET /v1/devices/{name}/networks/{arch_hash}/onnx?space= | one of them as ONNX (latency-neutral weights) |
| POST /v1/devices/{name}/networks?space= | their end-to-end measurements; refits when the set is complete |

Only networks of the scope's calibration set are served or accepted (`nas.services.calibration`).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.auth import Key
from api.deps import ChosenSpace, DeviceName, Sessions, WritableDevice
from api.schemas.files import ONNX_FILE, onnx_response
from api.service_errors import ServiceRoute
from nas.services import calibration
from nas.services.calibration import MissingNetworks, NetworkUpload, NetworkUploadAnswer

router = APIRouter(tags=["devices"], route_class=ServiceRoute)


@router.get("/v1/devices/{name}/networks/missing", summary="The space's calibration networks the device lacks")
def networks_missing(name: DeviceName, space: ChosenSpace, sessions: Sessions, _: Key) -> MissingNetworks:
    return calibration.missing_networks(sessions, name, space)


@router.get(
    "/v1/devices/{name}/networks/{arch_hash}/onnx",
    summary="One calibration network as ONNX (latency-neutral weights), as a kit holds it",
    response_class=Response,
    responses=ONNX_FILE,
)
def network_onnx(name: DeviceName, arch_hash: str, space: ChosenSpace, sessions: Sessions, _: Key) -> Response:
    return onnx_response(calibration.network_model(sessions, name, arch_hash, space))


@router.post("/v1/devices/{name}/networks", summary="End-to-end measurements of calibration networks")
def upload_networks(
    name: WritableDevice, space: ChosenSpace, body: NetworkUpload, sessions: Sessions, _: Key
) -> NetworkUploadAnswer:
    """All or nothing: a hash outside the scope's calibration set refuses the whole upload (422)."""
    return calibration.store_networks(sessions, name, space, body)
