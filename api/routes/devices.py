"""`/v1/devices`: journey 1, "profile a new phone", over HTTP.

A device belongs to the key that registered it; others read it while it is shared (`nas.services.devices`).

| method and path | what |
|---|---|
| POST /v1/devices | register a device (`local`: this server's machine) -> 201 + Location |
| GET /v1/devices | every device you may see, with its LUT size |
| GET /v1/devices/{name} | one device; with `?space=` its coverage of that space |
| GET /v1/devices/{name}/lut | LUT entries, paginated |
| GET /v1/devices/{name}/lut/missing | keys of a space the LUT still lacks (what the agent pulls) |
| GET /v1/devices/{name}/keys/onnx?key= | the ONNX model of one block key, as a kit holds it |
| GET /v1/devices/{name}/kit | a profiling kit (zip) for the missing keys and calibration networks |
| POST /v1/devices/{name}/lut | upload a kit's results file or the agent's measurements (validated, all or nothing) |
| GET /v1/devices/{name}/accuracy | predictor accuracy from the stored end-to-end measurements |

Space-scoped endpoints take `space` plus optional repeatable `resolution`, `width` and `num_classes`
(`api.deps`). Each route parses its request, makes one call to the service floor and returns its record.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from api.auth import Key
from api.deps import (
    AppSettings,
    ChosenSpace,
    DeviceName,
    OptionalSpace,
    ResultsFile,
    Sessions,
    WritableDevice,
)
from api.paging import Offset
from api.schemas.files import KIT_FILE, ONNX_FILE, kit_response, onnx_response
from api.service_errors import ServiceRoute
from nas.services import calibration, devices, kits, luts
from nas.services.calibration import AccuracyRecord
from nas.services.devices import DeviceDetail, DeviceRecord, DeviceRegistration
from nas.services.luts import LutPage, LutUploadAnswer, MissingKeys

router = APIRouter(tags=["devices"], route_class=ServiceRoute)


# --- devices -----------------------------------------------------------------------------------------


@router.post("/v1/devices", status_code=201, summary="Register a device (owned by your key)")
def create_device(body: DeviceRegistration, sessions: Sessions, response: Response, identity: Key) -> DeviceRecord:
    record = devices.register_device(sessions, body, identity)
    response.headers["Location"] = f"/v1/devices/{body.name}"
    return record


@router.get("/v1/devices", summary="List the devices you may see with the size of their lookup tables")
def list_devices(sessions: Sessions, identity: Key) -> list[DeviceRecord]:
    return devices.list_visible(sessions, identity)


@router.get("/v1/devices/{name}", summary="One device; with ?space= its LUT coverage of that space")
def get_device(name: DeviceName, space: OptionalSpace, sessions: Sessions, identity: Key) -> DeviceDetail:
    return devices.detail(sessions, name, identity, space)


# --- the lookup table --------------------------------------------------------------------------------


@router.get("/v1/devices/{name}/lut", summary="The device's lookup-table entries (paginated, by key)")
def lut_entries(
    name: DeviceName,
    sessions: Sessions,
    _: Key,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Offset = 0,
) -> LutPage:
    return luts.entries_page(sessions, name, limit, offset)


@router.get("/v1/devices/{name}/lut/missing", summary="Keys of a space the device's lookup table lacks")
def lut_missing(
    name: DeviceName,
    space: ChosenSpace,
    sessions: Sessions,
    _: Key,
    limit: Annotated[int, Query(ge=1, le=5000)] = 50,
    offset: Offset = 0,
) -> MissingKeys:
    return luts.missing_page(sessions, name, space, limit, offset)


@router.get(
    "/v1/devices/{name}/keys/onnx",
    summary="The ONNX model of one block key (latency-neutral weights), as a profiling kit holds it",
    response_class=Response,
    responses=ONNX_FILE,
)
def key_onnx(
    name: DeviceName,
    space: OptionalSpace,
    sessions: Sessions,
    _: Key,
    key: Annotated[str, Query(max_length=200, description="a block key, e.g. ir_k5_s2_e72_c40_se_hs@56x56x24")],
) -> Response:
    return onnx_response(kits.key_model(sessions, name, key, space), **{"X-Hwnas-Key": key})


@router.get(
    "/v1/devices/{name}/kit",
    summary="A profiling kit (zip: ONNX per missing key, manifest, stand-alone runner) for a device off the network",
    response_class=FileResponse,
    responses=KIT_FILE,
)
def kit(
    name: DeviceName,
    space: ChosenSpace,
    sessions: Sessions,
    settings: AppSettings,
    _: Key,
    quick: Annotated[bool, Query(description="fewer timed runs per model (smoke runs)")] = False,
    networks: Annotated[
        bool, Query(description="also the space's calibration networks the device has not measured end to end")
    ] = True,
) -> FileResponse:
    made = kits.profiling_kit(sessions, name, space, settings.artifact_dir, quick=quick, networks=networks)
    return kit_response(made)


@router.post(
    "/v1/devices/{name}/lut",
    summary="Upload measurements: a kit's results file (multipart `file` or raw JSON) or the agent's JSON",
)
def upload_lut(
    name: WritableDevice, space: OptionalSpace, upload: ResultsFile, sessions: Sessions, _: Key
) -> LutUploadAnswer:
    """Everything is validated before anything is stored: one problem refuses the whole upload.

    - a kit's results file (from the kit's runner.py): checked against the kit's manifest (unknown or
      duplicated keys, non-finite or non-positive times, checksums, kit id, thread count);
    - the agent's `{"measurements": [{key, median_ms, iqr_ms, runs, runtime_version}], "threads": T}`.

    `imported` counts the entries written, `already_present` those of them that replaced an entry
    already in the table. With `?space=` the answer includes the device's new coverage of that space.
    """
    return luts.upload(sessions, name, upload.content, upload.part, space)


# --- accuracy ----------------------------------------------------------------------------------------


@router.get("/v1/devices/{name}/accuracy", summary="How well the LUT predicts the stored end-to-end measurements")
def accuracy(
    name: DeviceName,
    space: ChosenSpace,
    sessions: Sessions,
    _: Key,
    n_calibration: Annotated[
        int | None, Query(ge=0, le=10_000, description="networks to fit on (default: as the stored calibration)")
    ] = None,
) -> AccuracyRecord:
    return calibration.accuracy(sessions, name, space, n_calibration)
