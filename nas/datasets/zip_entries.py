"""How many entries a zip lists, counted before `zipfile` reads its directory.

`zipfile.ZipFile` builds one `ZipInfo` per entry of the central directory as it opens an archive:
about 500 bytes of memory for an entry that takes 47 bytes on disk, so a 200 MB upload of empty
entries would cost gigabytes before any check of ours could run. The count is therefore taken from
the directory's raw records first (the same records, found the same way `zipfile` finds them), and
an archive with more entries than a dataset can use is refused.
"""

from __future__ import annotations

import struct
from pathlib import Path

from nas.datasets.dataset import DatasetError

_END = struct.Struct("<4s4H2LH")  # signature, disks, entries here, entries, directory size, offset, comment
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 end record, disks
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")  # ..., entries, directory size, directory offset
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ENTRY = struct.Struct("<4s6H3L5H2L")  # a central directory record's fixed 46 bytes
_ENTRY_SIGNATURE = b"PK\x01\x02"
_MAX_COMMENT = 0xFFFF


def max_entries_for(max_images: int) -> int:
    """Entries a usable dataset may list: its images, one folder per class (a class holds at least two
    images) and a few extras (a top folder, macOS metadata)."""
    return max_images + max_images // 2 + 64


def count_entries(path: Path, stop_after: int) -> int | None:
    """The number of central directory records, counting at most `stop_after` + 1; None when the file
    has no end record that points at a directory (zipfile will then refuse it itself)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        tail_size = min(size, _END.size + _MAX_COMMENT)
        handle.seek(size - tail_size)
        tail = handle.read(tail_size)
        at = tail.rfind(_END_SIGNATURE)
        if at < 0 or at + _END.size > len(tail):
            return None
        end_offset = size - tail_size + at
        directory_size = _END.unpack_from(tail, at)[5]
        directory_end = end_offset
        if at >= _ZIP64_LOCATOR.size and tail[at - _ZIP64_LOCATOR.size : at - _ZIP64_LOCATOR.size + 4] == (
            _ZIP64_LOCATOR_SIGNATURE
        ):
            zip64_offset = _ZIP64_LOCATOR.unpack_from(tail, at - _ZIP64_LOCATOR.size)[2]
            handle.seek(zip64_offset)
            record = handle.read(_ZIP64_END.size)
            if len(record) == _ZIP64_END.size and record[:4] == _ZIP64_END_SIGNATURE:
                directory_size = _ZIP64_END.unpack(record)[8]
                directory_end = zip64_offset
        start = directory_end - directory_size
        if start < 0 or directory_size < 0:
            return None
        if directory_size // _ENTRY.size <= stop_after:
            return directory_size // _ENTRY.size  # an upper bound, already small enough
        handle.seek(start)
        directory = handle.read(directory_size)
    count, position = 0, 0
    while position + _ENTRY.size <= len(directory) and count <= stop_after:
        fields = _ENTRY.unpack_from(directory, position)
        if fields[0] != _ENTRY_SIGNATURE:
            break
        name_length, extra_length, comment_length = fields[10], fields[11], fields[12]
        position += _ENTRY.size + name_length + extra_length + comment_length
        count += 1
    return count


def check_zip_entries(path: Path, max_entries: int, where: str) -> None:
    """Refuse an archive listing more than `max_entries` entries, before `zipfile` reads its directory."""
    count = count_entries(path, max_entries)
    if count is not None and count > max_entries:
        raise DatasetError(
            f"{where}: the archive lists more than {max_entries} entries, more than a dataset of the allowed "
            "number of images can hold",
            field="file",
        )
