"""Value types shared by scan, client, plan, apply and state. No I/O here.

Paths inside the program are `RelPath` values relative to the synced folder (or to the
study assets directory on the server); conversion to OS paths and to URLs happens at the
edges (`scan.py`, `client.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jatos_sync.links import LinkMap


MAX_ID = 2**63 - 1  # JATOS's IDs (studies, results …) are Java longs
# A UUID as JATOS writes it (lower case; any case is accepted and lowered where it is kept).
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class RelPath(str):
    """A relative POSIX path such as `img/logo.png`: a `str`, with the few operations of
    `pathlib.PurePosixPath` this program uses (`parts`, `parent`, `name`, `suffix`, `/` …).

    A daemon keeps one per file in each of its tables (local files, server files, synced
    files), 250,000 of them for a large lab server: as a `str` a path costs its characters
    and no more, where a `PurePosixPath` holds a list of segments and a cached string
    besides (about five times the memory), and it is made without parsing. Like
    `PurePosixPath`, the constructor joins its arguments with "/" and drops empty and "."
    segments; the folder itself is ".". Unlike it, a `RelPath` equals the `str` it spells,
    and sorts as that `str` does.
    """

    __slots__ = ()

    def __new__(cls, *segments: str) -> RelPath:
        text = "/".join(segments) if len(segments) != 1 else segments[0]
        if (
            not text
            or text == "."
            or "//" in text
            or "/." in text
            or text[0] == "."
            or (text[-1] == "/")
        ):
            text = _normalised(text)
        return str.__new__(cls, text)

    def __repr__(self) -> str:
        return f"RelPath({str(self)!r})"

    def __truediv__(self, other: str) -> RelPath:
        if other.startswith("/"):
            return RelPath(other)
        return RelPath(other) if self == "." else RelPath(f"{self}/{other}")

    def joinpath(self, *others: str) -> RelPath:
        result = self
        for other in others:
            result = result / other
        return result

    @property
    def parts(self) -> tuple[str, ...]:
        if self == ".":
            return ()
        if self.startswith("/"):
            return ("/", *self[1:].split("/")) if len(self) > 1 else ("/",)
        return tuple(self.split("/"))

    @property
    def name(self) -> str:
        return "" if self == "." or self == "/" else self.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        name = self.name
        i = name.rfind(".")
        return name[i:] if 0 < i < len(name) - 1 else ""

    @property
    def stem(self) -> str:
        name, suffix = self.name, self.suffix
        return name[: len(name) - len(suffix)] if suffix else name

    @property
    def parent(self) -> RelPath:
        head, sep, _ = self.rpartition("/")
        if not sep:
            return _ROOT
        return RelPath(head or "/")

    @property
    def parents(self) -> Sequence[RelPath]:
        if self.startswith("/"):  # never from the server or a scan; kept exact
            found: list[RelPath] = []
            path = self
            while path.name:
                path = path.parent
                found.append(path)
            return tuple(found)
        # Each head of a normalised path is normalised: cut at each "/", no checks again.
        end, heads = len(self), []
        while (end := self.rfind("/", 0, end)) > 0:
            heads.append(str.__new__(RelPath, self[:end]))
        return (*heads, _ROOT) if self != "." else ()

    def with_name(self, name: str) -> RelPath:
        if not self.name or not name or "/" in name or name == ".":
            raise ValueError(f"{self!r} with name {name!r}")
        return self.parent / name

    def with_suffix(self, suffix: str) -> RelPath:
        return self.with_name(self.stem + suffix)

    def is_absolute(self) -> bool:
        return self.startswith("/")

    def is_relative_to(self, other: str) -> bool:
        base = RelPath(other)
        if base.is_absolute() != self.is_absolute():
            return False
        return base == "." or self == base or self.startswith(base.rstrip("/") + "/")

    def relative_to(self, other: str) -> RelPath:
        if not self.is_relative_to(other):
            raise ValueError(f"{str(self)!r} is not in the subpath of {other!r}")
        base = RelPath(other)
        if base == ".":
            return self
        return _ROOT if self == base else RelPath(self[len(base.rstrip("/")) + 1 :])

    def as_posix(self) -> str:
        return str(self)


def _normalised(text: str) -> str:
    absolute = text.startswith("/")
    kept = [segment for segment in text.split("/") if segment and segment != "."]
    joined = "/".join(kept)
    if absolute:
        return "/" + joined
    return joined or "."


_ROOT = str.__new__(RelPath, ".")


@dataclass(frozen=True, slots=True, eq=False)
class FileInfo:
    """What identifies a file's content: its size and Adler-32, as JATOS lists them
    (docs/jatos-api.md §3.3), and, where this tool read or sent the bytes itself, a strong
    digest.

    Adler-32 is weak: swapping two values in a counterbalancing table keeps size and
    checksum. Equality compares what the server can tell (size and Adler-32) only, for a
    `LocalFile` too; the digest decides between two contents that JATOS cannot tell apart
    (docs/safety.md, rule 12). `b""` means unknown.
    """

    size: int
    checksum: int  # unsigned 32-bit Adler-32, as JATOS lists it
    digest: bytes = b""  # DIGEST_BYTES of SHA-256, or b""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileInfo):
            return NotImplemented
        return self.size == other.size and self.checksum == other.checksum

    def __hash__(self) -> int:
        return hash((self.size, self.checksum))


DIGEST_BYTES = 16  # a truncated SHA-256 tells accidental edits apart; 16 bytes keep it small


@dataclass(frozen=True, slots=True, eq=False)
class LocalFile(FileInfo):
    """A regular file found by the local scan: its content identity, and the stat values
    that say whether it is still the content that was read (the checksum cache's key).

    It is a `FileInfo`, so one object per file serves the checksum cache, the scan, the
    server's listing when it agrees and the record of what was synced: a daemon over
    250,000 files keeps one, not four (benchmarks/bench_scale.py).
    """

    mtime_ns: int = field(default=0, kw_only=True)
    inode: int = field(default=0, kw_only=True)

    @property
    def info(self) -> FileInfo:
        return self


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
    links: LinkMap | None = None  # where links lead, when the scan was asked to note it


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


# The `apiVersion` of each JATOS line (docs/jatos-api.md §1.2). 3.8.1/3.8.2 have no
# component endpoints (docs/jatos-api.md §1.4); 3.10 has PATCH and the component endpoints
# (docs/jatos-api.md §10.4, §12.2).
API_VERSION_382 = "1.0.0"
API_VERSION_310 = "1.1.0"


def jatos_version_for_api(api_version: str) -> str:
    """Coarse JATOS release range for an `apiVersion` value (docs/jatos-api.md §1.2)."""
    return {
        API_VERSION_382: "3.8.1/3.8.2",
        "1.0.1": "3.8.3-3.9.x",
        API_VERSION_310: "3.10.x",
    }.get(api_version, f"unknown (apiVersion {api_version})")


def is_html(path: RelPath) -> bool:
    """HTML files are published after everything they may reference."""
    return path.suffix.lower() in {".html", ".htm"}
