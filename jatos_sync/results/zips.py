"""Reading a results zip (docs/jatos-api.md §14.3), and what an entry must be to be trusted.

Owns looking entries up by the names the metadata implies (never by their own), allowing
for JATOS's keep-alive byte inside the stream, the sizes an entry may have given the
metadata (`data_bounds`, `file_bounds`), `Unverified`, the reason a result is not
written, and `write_result`: one study result's entries staged beside their places, checked,
then renamed into place together. Must not write anywhere else, or talk to the server.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from jatos_sync.errors import UnsafePathError
from jatos_sync.model import RelPath
from jatos_sync.paths import contained
from jatos_sync.results.metadata import StudyResultMeta, result_path
from jatos_sync.state import fsync_dir, make_private_dirs

CHUNK_BYTES = 1 << 20
_RUNNING_SLACK_BYTES = 1 << 20  # a running result may grow between metadata and zip


class Unverified(Exception):
    """A result whose zip entries do not match the metadata: never written as complete."""


def find_entry(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    try:
        return archive.getinfo(name)
    except KeyError:
        return None


# How far before the position the central directory gives an entry's local header may lie.
_REALIGN_WINDOW = 64 * 1024


def open_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> IO[bytes]:
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


def data_bounds(size: int, *, running: bool) -> tuple[int, int]:
    """The byte sizes of data.txt that fit `size` from the metadata
    (docs/jatos-api.md §14.2): it counts bytes on MySQL and UTF-16 units on H2, and the file
    is in the server's charset, so a unit takes from half a byte (a pair replaced by "?") to
    four bytes. A running result may have grown or been replaced since the metadata was
    read."""
    if running:
        return 0, 4 * size + _RUNNING_SLACK_BYTES
    return size // 2, 4 * size


def file_bounds(size: int, *, running: bool) -> tuple[int, int]:
    """A result file's size is its length on the server's disk: exact once the run ended."""
    return (0, 4 * size + _RUNNING_SLACK_BYTES) if running else (size, size)


def zip_reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def write_result(
    archive: zipfile.ZipFile,
    sr: StudyResultMeta,
    *,
    root: Path,
    files: bool,
    check_stop: Callable[[], None],
) -> dict[int, tuple[int, tuple[str, ...]]]:
    """Check every entry `sr` needs against the metadata, each into a temporary file
    next to its target; only when all passed are they renamed into place. Returns each
    component result's local data size and files. Raises `Unverified`."""
    staged: list[tuple[Path, Path]] = []
    local: dict[int, tuple[int, tuple[str, ...]]] = {}
    try:
        for cr in sr.components:
            base = RelPath(result_path(sr.id, cr.id))
            size = 0
            entry = find_entry(archive, f"{base}/data.txt")
            if entry is None and cr.data_size > 0:
                raise Unverified(f"{base}/data.txt is missing from the zip")
            if entry is not None:
                bounds = data_bounds(cr.data_size, running=not sr.final)
                size = _stage(archive, entry, base / "data.txt", bounds, staged, root, check_stop)
            names: list[str] = []
            for item in cr.files if files else ():
                rel = f"{base}/files/{item.name}"
                entry = find_entry(archive, rel)
                if entry is None:
                    raise Unverified(f"{rel} is missing from the zip")
                bounds = file_bounds(item.size, running=not sr.final)
                _stage(archive, entry, RelPath(rel), bounds, staged, root, check_stop)
                names.append(item.name)
            local[cr.id] = (size, tuple(names))
        for temporary, target in staged:
            os.replace(temporary, target)
        for directory in {target.parent for _, target in staged}:
            fsync_dir(directory)
    except BaseException:
        for temporary, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        for cr in sr.components:  # folders made for this try, if nothing else is there
            remove_empty(root, RelPath(result_path(sr.id, cr.id)) / "files")
            remove_empty(root, RelPath(result_path(sr.id, cr.id)))
        remove_empty(root, RelPath(f"study_result_{sr.id}"))
        raise
    return local


def _stage(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    rel: RelPath,
    bounds: tuple[int, int],
    staged: list[tuple[Path, Path]],
    root: Path,
    check_stop: Callable[[], None],
) -> int:
    """One entry into a temporary file beside `rel`, CRC and size checked; its size."""
    low, high = bounds
    if not low <= entry.file_size <= high:
        raise Unverified(f"{rel} holds {entry.file_size} bytes, which does not fit the metadata")
    try:
        target = contained(root, rel)
        make_private_dirs(target.parent)
        target = contained(root, rel)  # again, now that its folders exist
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
            stale.unlink()  # left by a process that was killed while writing it
    except (UnsafePathError, OSError) as exc:
        raise Unverified(f"{rel} cannot be written here: {exc}") from exc
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    staged.append((Path(name), target))
    size = 0
    try:
        with open(fd, "wb") as out, open_entry(archive, entry) as source:
            while chunk := source.read(CHUNK_BYTES):
                check_stop()
                size += len(chunk)
                if size > entry.file_size:
                    raise Unverified(f"{rel} is longer than the zip says")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise Unverified(f"{rel} is damaged in the zip ({zip_reason(exc)})") from exc
    except OSError as exc:
        raise Unverified(f"{rel} could not be written ({exc.strerror or exc})") from exc
    if size != entry.file_size:
        raise Unverified(f"{rel} is shorter than the zip says")
    return size


def remove_empty(root: Path, rel: RelPath) -> None:
    """Remove the folder `rel` below `root` if it is empty."""
    with contextlib.suppress(FileNotFoundError, OSError):
        contained(root, rel).rmdir()  # only when empty
