"""Reading a results zip (docs/jatos-api.md §14.3), and what an entry must be to be trusted.

Owns looking entries up by the names the metadata implies (never by their own), allowing
for JATOS's keep-alive byte inside the stream, the sizes an entry may have given the
metadata (`_data_bounds`, `_file_bounds`), and `_Unverified`, the reason a result is not
written. Must not write into the results folder (mirror.py does).
"""

from __future__ import annotations

import copy
import zipfile
from typing import IO

CHUNK_BYTES = 1 << 20
_RUNNING_SLACK_BYTES = 1 << 20  # a running result may grow between metadata and zip


class _Unverified(Exception):
    """A result whose zip entries do not match the metadata: never written as complete."""


def _entry(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    try:
        return archive.getinfo(name)
    except KeyError:
        return None


# How far before the position the central directory gives an entry's local header may lie.
_REALIGN_WINDOW = 64 * 1024


def _open_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> IO[bytes]:
    """Open `entry`, allowing for JATOS's keep-alive: a space byte sent after 30 s of
    silence lands inside the zip (docs/jatos-api.md §14.3), so the central directory's
    offsets of the entries before it are off by the spaces that follow them. Such an entry's
    local header is looked for a little earlier (its name must match); its CRC then proves
    the content."""
    try:
        return archive.open(entry)
    except zipfile.BadZipFile:
        stream = archive.fp
        if stream is None:
            raise
        name = entry.orig_filename.encode("utf-8" if entry.flag_bits & 0x800 else "cp437")
        start = max(0, entry.header_offset - _REALIGN_WINDOW)
        stream.seek(start)
        window = stream.read(entry.header_offset - start + 30 + len(name))
        # A header that starts before the offset given (it may end after it).
        at = window.rfind(b"PK\x03\x04", 0, entry.header_offset - start + 3)
        while at >= 0:
            if window[at + 30 : at + 30 + len(name)] == name:
                moved = _moved(entry, start + at)
                return archive.open(moved)
            at = window.rfind(b"PK\x03\x04", 0, at)
        raise


def _moved(entry: zipfile.ZipInfo, offset: int) -> zipfile.ZipInfo:
    """A copy of `entry` whose local header is at `offset`."""
    moved = copy.copy(entry)
    moved.header_offset = offset
    return moved


def _data_bounds(size: int, *, running: bool) -> tuple[int, int]:
    """The byte sizes of data.txt that fit `size` from the metadata
    (docs/jatos-api.md §14.2): it counts bytes on MySQL and UTF-16 units on H2, and the file
    is in the server's charset, so a unit takes from half a byte (a pair replaced by "?") to
    four bytes. A running result may have grown or been replaced since the metadata was
    read."""
    if running:
        return 0, 4 * size + _RUNNING_SLACK_BYTES
    return size // 2, 4 * size


def _file_bounds(size: int, *, running: bool) -> tuple[int, int]:
    """A result file's size is its length on the server's disk: exact once the run ended."""
    return (0, 4 * size + _RUNNING_SLACK_BYTES) if running else (size, size)


def _zip_reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
