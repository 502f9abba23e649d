"""Value types shared by scan, client, plan, apply and state. No I/O here.

Paths inside the program are `PurePosixPath` objects relative to the synced folder (or to
the study assets directory on the server); conversion to OS paths and to URLs happens at
the edges (`scan.py`, `client.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

RelPath = PurePosixPath


@functools.lru_cache(maxsize=1 << 17)
def rel_path(text: str) -> RelPath:
    """`RelPath(text)`, interned.

    Each path of a pass is built three times (scan, server listing, saved state), and
    parsing a PurePosixPath costs microseconds: for 5,000 files that is most of a no-op
    pass. The cache is bounded, so a long-running daemon does not grow without limit.
    """
    return RelPath(text)


@dataclass(frozen=True)
class FileInfo:
    """What identifies a file's content: its size and Adler-32, as JATOS lists them
    (docs/jatos-api.md §3.3), and, where this tool read or sent the bytes itself, a strong
    digest.

    Adler-32 is weak: swapping two values in a counterbalancing table keeps size and
    checksum. Equality compares what the server can tell (size and Adler-32) only; the
    digest decides between two contents that JATOS cannot tell apart (docs/safety.md,
    rule 12). `b""` means unknown.
    """

    size: int
    checksum: int  # unsigned 32-bit Adler-32, as JATOS lists it
    digest: bytes = field(default=b"", compare=False)  # DIGEST_BYTES of SHA-256, or b""


DIGEST_BYTES = 16  # a truncated SHA-256 tells accidental edits apart; 16 bytes keep it small


@dataclass(frozen=True)
class LocalFile:
    """A regular file found by the local scan."""

    size: int
    checksum: int
    mtime_ns: int = 0
    digest: bytes = field(default=b"", compare=False)  # see FileInfo.digest

    @property
    def info(self) -> FileInfo:
        return FileInfo(self.size, self.checksum, self.digest)


@dataclass(frozen=True)
class PathProblem:
    """A path with a short reason: a scan error, a skipped file, or a failed file."""

    path: RelPath
    reason: str


@dataclass(frozen=True)
class LocalSnapshot:
    """The result of scanning a folder.

    `files` holds every syncable regular file. `errors` lists paths that could not be read
    (a pass with scan errors deletes nothing, docs/safety.md, rule 4). `unsyncable` lists files
    found but not syncable for a reason known at scan time (e.g. a name that is not UTF-8);
    they count as present locally, so their remote copies are never deleted.
    """

    files: Mapping[RelPath, LocalFile]
    errors: tuple[PathProblem, ...] = ()
    unsyncable: tuple[PathProblem, ...] = ()


@dataclass(frozen=True)
class RemoteSnapshot:
    """The study's files as listed by `assets/structure?flatten=true` (directories dropped).

    `refused` lists entries that were not plain relative paths (docs/safety.md, rule 10):
    they are never acted on, only reported. Their `path` is an escaped rendering for
    messages, not a path to use.
    """

    files: Mapping[RelPath, FileInfo]
    api_version: str = ""
    refused: tuple[PathProblem, ...] = ()


@dataclass(frozen=True)
class StudyInfo:
    """A study as listed by `GET /studies/properties` (docs/jatos-api.md §10.1)."""

    id: int
    uuid: str
    title: str
    locked: bool
    dir_name: str


@dataclass(frozen=True)
class TokenInfo:
    """What `GET /admin/token` tells about the token (docs/jatos-api.md §2.7). Never holds
    the token itself."""

    api_version: str
    name: str
    username: str | None
    expiration_ms: int | None  # epoch milliseconds; None = never expires
    is_expired: bool
    roles: tuple[str, ...] = field(default_factory=tuple)


def jatos_version_for_api(api_version: str) -> str:
    """Coarse JATOS release range for an `apiVersion` value (docs/jatos-api.md §1.2)."""
    return {
        "1.0.0": "3.8.1/3.8.2",
        "1.0.1": "3.8.3-3.9.x",
        "1.1.0": "3.10.x",
    }.get(api_version, f"unknown (apiVersion {api_version})")


def is_html(path: RelPath) -> bool:
    """HTML files are published after everything they may reference."""
    return path.suffix.lower() in {".html", ".htm"}
