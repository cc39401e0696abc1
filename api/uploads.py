"""Streaming multipart uploads with a hard size limit.

Starlette's form parser reads a whole body (spooling files to disk) before a route sees it, so a
client could make the server store gigabytes it will refuse anyway. `receive_upload` parses the
body as it arrives instead: the one file part goes straight to a temporary file under the target
directory (hashed on the way), and the request is refused with 413 as soon as more than the limit
has arrived, or before anything is read when `Content-Length` already says it is too large.
Everything else a client sends is bounded too: the number of parts, each text field, and (by
python-multipart itself) each part's headers. Whatever happens, a refused upload leaves no file behind.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.problems import Problem

# Room for the multipart framing and small form fields on top of the file itself.
FRAMING_ALLOWANCE = 64 * 1024
MAX_FIELD_BYTES = 4096
MAX_PARTS = 16
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Upload:
    """A received file: where it lies (inside its own temporary directory), and what came with it."""

    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def safe_filename(name: str, default: str = "upload") -> str:
    """The client's file name reduced to a safe base name (no directories, no odd characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE_NAME.sub("_", base).strip("._")[:100]
    return cleaned or default


def too_large(limit: int, why: str | None = None) -> Problem:
    """413 naming `file`; `why` says what passed the limit when it is not the body itself (the
    uncompressed contents, the decoded pixels)."""
    if why:
        detail = f"{why} (HWNAS_MAX_UPLOAD_MB: {limit / 2**20:.4g} MiB)"
    else:
        detail = f"the upload is larger than the limit of {limit} bytes ({limit / 2**20:.4g} MiB; HWNAS_MAX_UPLOAD_MB)"
    return Problem(413, detail, field="file", max_bytes=limit)


class _Receiver:
    """python-multipart callbacks: one file part (`file_field`) to disk, small text fields in memory."""

    def __init__(self, directory: Path, file_field: str, limit: int) -> None:
        self.directory = directory
        self.file_field = file_field
        self.limit = limit
        self.fields: dict[str, str] = {}
        self.parts = 0
        self.filename: str | None = None
        self.file: BinaryIO | None = None
        self.path: Path | None = None
        self.size = 0
        self.digest = hashlib.sha256()
        self.finished = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    # --- callbacks ---------------------------------------------------------------------------------

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Problem(422, f"the form has more than {MAX_PARTS} parts", field="body")
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        raw_name = options.get(b"name")
        if raw_name is None:
            raise Problem(422, "a form part has no name (Content-Disposition: form-data; name=...)", field="body")
        self._name = raw_name.decode("utf-8", "replace")
        if b"filename" in options or self._name == self.file_field:
            if self._name != self.file_field:
                raise Problem(422, f"unexpected file part {self._name!r}; send the file as {self.file_field!r}",
                              field=self._name)  # fmt: skip
            if self.file is not None or self.filename is not None:
                raise Problem(422, f"send exactly one {self.file_field!r} part", field=self.file_field)
            self._is_file = True
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self.path = self.directory / safe_filename(self.filename)
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed in on_part_end or by the caller

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            assert self.file is not None
            self.size += len(chunk)
            if self.size > self.limit:
                raise too_large(self.limit)
            self.digest.update(chunk)
            self.file.write(chunk)
        else:
            self._text.extend(chunk)
            if len(self._text) > MAX_FIELD_BYTES:
                raise Problem(422, f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                              field=self._name)  # fmt: skip

    def on_part_end(self) -> None:
        if self._is_file:
            assert self.file is not None
            self.file.close()
        else:
            try:
                self.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise Problem(422, f"form field {self._name!r} is not UTF-8 text", field=self._name) from None

    def on_end(self) -> None:
        self.finished = True

    def callbacks(self) -> dict:
        return {
            name: getattr(self, name)
            for name in (
                "on_part_begin",
                "on_part_data",
                "on_part_end",
                "on_header_field",
                "on_header_value",
                "on_header_end",
                "on_headers_finished",
                "on_end",
            )
        }


async def receive_upload(request: Request, directory: Path, limit: int, file_field: str = "file") -> Upload:
    """Receive a `multipart/form-data` body holding one file part named `file_field`.

    Returns the file in a fresh temporary directory under `directory` (the caller moves it away or
    calls `Upload.discard()`). Raises `Problem`: 415 for another content type, 413 over `limit`, 422
    for a malformed body or a missing or empty file; nothing is left on disk then.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise Problem(
            415,
            f"send the dataset as multipart/form-data with a {file_field!r} part "
            f"(e.g. curl -F {file_field}=@data.npz), not {content_type.decode('latin-1') or 'no content type'}",
            field="Content-Type",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise Problem(400, "the multipart Content-Type has no boundary", field="Content-Type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit + FRAMING_ALLOWANCE:
        raise too_large(limit)

    directory.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".upload-", dir=directory))
    receiver = _Receiver(workdir, file_field, limit)
    received = 0
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + FRAMING_ALLOWANCE:
                raise too_large(limit)
            try:
                parser.write(chunk)
            except MultipartParseError as error:
                raise Problem(400, f"the multipart body is malformed: {error}", field="body") from None
        parser.finalize()
        if not receiver.finished:
            raise Problem(400, "the multipart body ends before its closing boundary", field="body")
        if receiver.path is None:
            raise Problem(422, f"the form has no {file_field!r} part (the file to upload)", field=file_field)
        if receiver.size == 0:
            raise Problem(422, f"the uploaded {file_field!r} is empty", field=file_field)
        return Upload(receiver.path, receiver.filename or "", receiver.size, receiver.digest.hexdigest(),
                      receiver.fields)  # fmt: skip
    except BaseException:
        if receiver.file is not None:
            receiver.file.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
