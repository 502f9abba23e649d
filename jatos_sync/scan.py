"""Local folder -> `LocalSnapshot`: walk, ignore rules, Adler-32 checksums, checksum cache.

Owns reading the synced folder: which regular files it holds, their size and the Adler-32
checksum JATOS computes for them (docs/jatos-api.md §3.3), and why other entries cannot be
synced. It translates OS errors into snapshot entries (`errors`, `unsyncable`) or into
`SafetyStop` (the folder itself is unusable, docs/safety.md, rule 1). It must not talk to
the server, decide what to upload or delete (that is `plan.py`), or write anything into the
folder.

Every entry, whether the walk meets it or a pass that follows file-system events asks about
it (`scan_folder(under=…)`), is classified by one function, `classify`: a regular file, a
directory, unsyncable (with the reason), unreadable (an error), or really gone. "Cannot
read it" is never "it is gone" (docs/safety.md, rule 4).

Symbolic links are followed, to files and to directories, wherever the target is, even
outside the folder: JATOS follows links in its assets directory the same way
(docs/jatos-api.md §3.6), and a link to a shared stimulus folder is a normal way to reuse
files across studies. What gets uploaded is the target's content, as regular files. Links
that form a directory loop and dangling links are reported in `unsyncable`; their paths
therefore count as present, so the planner never deletes their server copies.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from jatos_sync.errors import FileSyncError, LocalFileChangedError, SafetyStop
from jatos_sync.ignore import IgnoreRules
from jatos_sync.links import LinkCollector
from jatos_sync.model import (
    DIGEST_BYTES,
    FileInfo,
    LocalFile,
    LocalSnapshot,
    PathProblem,
    RelPath,
)

# A cached checksum is trusted only for a file whose mtime is at least this much older than
# the clock. Git's "racy git" problem: a file rewritten within the file system's timestamp
# granularity after it was hashed keeps size and mtime, so the cache would hide the change.
# 2 s covers the coarsest common granularity (FAT: 2 s) and kernel timestamps that lag the
# wall clock by a tick. Racy files are hashed on every pass and never stored, until they age.
RACY_WINDOW_NS = 2_000_000_000

# A file that keeps changing while it is read is tried this many times per pass.
_HASH_ATTEMPTS = 3

_REASON_NOT_UTF8 = "file name is not valid UTF-8; rename it"
_REASON_DIR_NOT_UTF8 = "folder name is not valid UTF-8; rename it (its files are not synced)"
_REASON_LOOP = "symlink loop"
_REASON_BROKEN = "broken symbolic link"
_REASON_UNSTABLE = "file kept changing while it was read; it is read again on the next pass"


def adler32_file(path: Path, *, chunk_size: int = 1 << 20) -> tuple[int, int]:
    """(size, Adler-32) of the file's content, read in chunks; as JATOS lists it
    (docs/jatos-api.md §3.3)."""
    size, checksum, _, _ = _hash(os.fspath(path), chunk_size)
    return size, checksum


class ChecksumCache:
    """Checksums of files seen before, keyed by relative path.

    An entry is the `LocalFile` the scan made (size, Adler-32, digest, mtime_ns, inode)
    and is used only while its three stat values still match and the mtime is not racy
    (see `RACY_WINDOW_NS`); the scan then returns that very object, so the cache and the
    snapshot share their entries. The counters let benchmarks show that an unchanged folder
    is scanned without reading file content.
    """

    def __init__(self, entries: dict[RelPath, LocalFile] | None = None) -> None:
        self._entries: dict[RelPath, LocalFile] = dict(entries or {})
        self._shared = False  # `_entries` is a snapshot's table: copy it before a change
        self.generation = 0  # counts changes, so an unchanged cache need not be saved again
        self.bytes_read = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ChecksumCache({len(self._entries)} entries)"

    def lookup(self, path: RelPath, st: os.stat_result, *, now_ns: int) -> FileInfo | None:
        """The cached content identity of `path` if `st` still describes the hashed content."""
        return self._lookup(path, st, now_ns)

    def store(
        self,
        path: RelPath,
        st: os.stat_result,
        checksum: int,
        digest: bytes,
        *,
        now_ns: int | None = None,
    ) -> None:
        """Remember `checksum` and `digest` for the content described by `st` (read before
        hashing).

        A racy file (mtime within `RACY_WINDOW_NS` of `now_ns`, default: the wall clock) is
        not stored: it could change again within the same timestamp tick.
        """
        now = time.time_ns() if now_ns is None else now_ns
        self._store(path, _local_file(st, checksum, digest), st, now)

    def keep_only(self, files: dict[RelPath, LocalFile]) -> None:
        """After a whole scan: forget every path the scan did not find (files that
        disappeared), and hold the snapshot's own path objects, so that the two share them.

        When the cache then holds exactly the scan's entries (no racy file left out), it
        takes the snapshot's table itself, which nobody changes, and copies it only before
        a change of its own (`_store`): a daemon keeps one table per mapping less."""
        kept = {path: f for path, f in files.items() if self._entries.get(path) is f}
        if len(kept) != len(self._entries):
            self.generation += 1
        self._shared = len(kept) == len(files)
        self._entries = files if self._shared else kept

    def to_json(self) -> dict[str, list[int | str]]:
        return {
            key: [e.size, e.mtime_ns, e.inode, e.checksum, e.digest.hex()]
            for key, e in sorted(self._entries.items())
        }

    @classmethod
    def from_json(cls, data: object, *, paths: Mapping[str, RelPath] = {}) -> ChecksumCache:
        """Rebuild from `to_json` output; anything malformed is dropped, never raised.

        Entries without a digest (written before digests were kept) are dropped too: the
        file is read once more. A key found in `paths` takes that path object (the state's
        own, so the two share it).
        """
        entries: dict[RelPath, LocalFile] = {}
        if not isinstance(data, dict):
            return cls(entries)
        for key, value in data.items():
            if not (isinstance(key, str) and key and type(value) is list and len(value) == 5):
                continue
            size, mtime_ns, inode, checksum, digest_hex = value
            if (
                type(size) is int
                and type(mtime_ns) is int
                and type(inode) is int
                and type(checksum) is int
                and size >= 0
                and mtime_ns >= 0
                and inode >= 0
                and 0 <= checksum <= 0xFFFFFFFF
            ):
                digest = digest_from_hex(digest_hex)
                if digest:
                    entries[paths.get(key) or RelPath(key)] = LocalFile(
                        size, checksum, digest, mtime_ns=mtime_ns, inode=inode
                    )
        return cls(entries)

    def _lookup(self, key: RelPath, st: os.stat_result, now_ns: int) -> LocalFile | None:
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry.size == st.st_size
            and entry.mtime_ns == st.st_mtime_ns
            and entry.inode == st.st_ino
            and not _is_racy(st, now_ns)
        ):
            self.hits += 1
            return entry
        return None

    def _store(self, key: RelPath, local: LocalFile, st: os.stat_result, now_ns: int) -> None:
        """Remember `local` (read from the content `st` describes), unless it is racy."""
        if self._shared:
            self._entries, self._shared = dict(self._entries), False
        old = self._entries.get(key)
        if _is_racy(st, now_ns):
            self._entries.pop(key, None)
        else:
            self._entries[key] = local
        new = self._entries.get(key)
        if _fields(new) != _fields(old):
            self.generation += 1


def _local_file(st: os.stat_result, checksum: int, digest: bytes) -> LocalFile:
    return LocalFile(st.st_size, checksum, digest, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


def _fields(entry: LocalFile | None) -> tuple[object, ...] | None:
    """Every field of a cache entry (`==` on a FileInfo compares size and Adler-32 only)."""
    if entry is None:
        return None
    return entry.size, entry.checksum, entry.digest, entry.mtime_ns, entry.inode


def check_folder(folder: Path) -> None:
    """Raise `SafetyStop` unless `folder` exists, is a directory and can be listed.

    A vanished folder (unmounted drive, renamed project) must never look like "all files
    were deleted" (docs/safety.md, rule 1).
    """
    _folder_stat(folder)


def _folder_stat(folder: Path) -> os.stat_result:
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise SafetyStop(
            f"The mapping folder {folder} does not exist (renamed, or a drive or share not "
            "mounted?); nothing was changed on the server."
        ) from None
    except OSError as exc:
        raise SafetyStop(_unreadable_message(folder, exc)) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise SafetyStop(
            f"The mapping folder {folder} is not a directory; nothing was changed on the server."
        )
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except OSError as exc:
        raise SafetyStop(_unreadable_message(folder, exc)) from exc
    return st


class Entry(NamedTuple):
    """What one directory entry is, symbolic links followed: the one classification that
    the walk and `scan_folder(under=…)` share (`classify`).

    kind: "file" (a regular file, `st` set), "dir" (a directory, `st` set), "unsyncable"
    (there, but not syncable: a FIFO, socket or device, a broken link, a link loop, a name
    that is not UTF-8; `reason`), "error" (it could not be looked at, e.g. permission
    denied; `reason`), or "gone" (really not there). "Cannot read it" is never "it is gone"
    (docs/safety.md, rule 4): only "gone" lets the planner delete a server copy.
    `is_dir`: whether the ignore rules see a directory.
    """

    kind: Literal["file", "dir", "unsyncable", "error", "gone"]
    is_dir: bool = False
    st: os.stat_result | None = None
    reason: str = ""


_GONE = Entry("gone")


def classify(os_path: str, name: str, *, entry: os.DirEntry[str] | None = None) -> Entry:
    """Classify the entry at `os_path` (named `name` in its directory; `entry` when it comes
    from `os.scandir`, whose cached stat is then used)."""
    try:
        st = entry.stat() if entry is not None else os.stat(os_path)
    except (FileNotFoundError, NotADirectoryError):
        # Gone, unless a symbolic link is still there: then its target is missing.
        return Entry("unsyncable", reason=_REASON_BROKEN) if _is_link(os_path, entry) else _GONE
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link that points (via links) to itself
            return Entry("unsyncable", reason=_REASON_LOOP)
        return Entry("error", is_dir=_dir_hint(entry), reason=_os_reason(exc))
    except ValueError as exc:  # a name the OS cannot take (an embedded NUL)
        return Entry("error", reason=str(exc))
    is_dir = stat.S_ISDIR(st.st_mode)
    if not _is_utf8(name):
        reason = _REASON_DIR_NOT_UTF8 if is_dir else _REASON_NOT_UTF8
        return Entry("unsyncable", is_dir=is_dir, reason=reason)
    if is_dir:
        if st.st_ino == 0:  # Windows: DirEntry.stat() leaves st_ino/st_dev zero
            st = os.stat(os_path)
        return Entry("dir", is_dir=True, st=st)
    if stat.S_ISREG(st.st_mode):
        return Entry("file", st=st)
    return Entry("unsyncable", reason=_not_regular_reason(st.st_mode))


# (os path, relative prefix ending in "/" or "", (dev, ino) of the dirs on the path)
_Pending = tuple[str, str, frozenset[tuple[int, int]]]


class _Walk:
    """One scan's findings, and the directories still to be listed."""

    def __init__(
        self,
        rules: IgnoreRules,
        cache: ChecksumCache,
        now_ns: int,
        links: LinkCollector | None = None,
    ) -> None:
        self.rules, self.cache, self.now_ns, self.links = rules, cache, now_ns, links
        self.files: dict[RelPath, LocalFile] = {}
        self.errors: list[PathProblem] = []
        self.unsyncable: list[PathProblem] = []
        self.stack: list[_Pending] = []

    def take(
        self,
        found: Entry,
        rel: str,
        os_path: str,
        ancestors: frozenset[tuple[int, int]],
        *,
        is_link: bool = False,
    ) -> None:
        """Record what `classify` found at `rel`; a directory is queued to be listed, unless
        it is one of the directories it lies in (a loop through a link)."""
        if found.kind == "dir":
            assert found.st is not None
            key = (found.st.st_dev, found.st.st_ino)
            if key in ancestors:
                self.unsyncable.append(PathProblem(_rel_path(rel), _REASON_LOOP))
            else:
                self.stack.append((os_path, rel + "/", ancestors | {key}))
                if self.links is not None:
                    self.links.note(rel, os_path, found.st, is_link=is_link)
        elif found.kind == "file":
            assert found.st is not None
            if self.links is not None:
                self.links.note(rel, os_path, found.st, is_link=is_link)
            path = RelPath(rel)  # a file's name is UTF-8 here: `classify` checked it
            scanned = _scan_file(path, os_path, found.st, self.cache, self.now_ns)
            if isinstance(scanned, LocalFile):
                self.files[path] = scanned
            elif scanned is not None:
                self.errors.append(scanned)
        elif found.kind == "unsyncable":
            self.unsyncable.append(PathProblem(_rel_path(rel), found.reason))
        elif found.kind == "error":
            self.errors.append(PathProblem(_rel_path(rel), found.reason))

    def list_dirs(self, folder: Path) -> None:
        while self.stack:
            dir_path, prefix, ancestors = self.stack.pop()
            try:
                with os.scandir(dir_path) as iterator:
                    entries = list(iterator)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked: its files are simply gone
            except OSError as exc:
                if not prefix:
                    raise SafetyStop(_unreadable_message(folder, exc)) from exc
                self.errors.append(PathProblem(_rel_path(prefix.rstrip("/")), _os_reason(exc)))
                continue
            for entry in entries:
                rel = prefix + entry.name
                found = classify(entry.path, entry.name, entry=entry)
                if self.rules.match_entry(rel, is_dir=found.is_dir):
                    continue
                is_link = self.links is not None and entry.is_symlink()
                self.take(found, rel, entry.path, ancestors, is_link=is_link)

    def start_under(self, folder: Path, under: RelPath, root: frozenset[tuple[int, int]]) -> None:
        """Start at `under` instead of the folder: each directory on the way down is
        classified as the walk would have found it, so a path below an ignored, unreadable,
        unsyncable or looping folder gives what the walk gives for that folder."""
        ancestors, os_path, parts = root, os.fspath(folder), under.parts
        for depth, name in enumerate(parts, start=1):
            os_path = os.path.join(os_path, name)
            rel = "/".join(parts[:depth])
            found = classify(os_path, name)
            if self.rules.match_entry(rel, is_dir=found.is_dir):
                return
            if depth == len(parts) or found.kind != "dir":
                self.take(found, rel, os_path, ancestors)
                return
            assert found.st is not None
            key = (found.st.st_dev, found.st.st_ino)
            if key in ancestors:
                self.take(found, rel, os_path, ancestors)  # a loop, reported at its own path
                return
            ancestors = ancestors | {key}


def scan_folder(
    folder: Path,
    rules: IgnoreRules,
    *,
    cache: ChecksumCache | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
    under: RelPath | None = None,
    links: bool = False,
) -> LocalSnapshot:
    """Every syncable regular file below `folder`, with problems listed on the side.

    Raises `SafetyStop` if the folder itself is unusable. Ignored directories are not
    entered. `cache` is consulted and updated (entries of vanished files are dropped).

    With `under`, only that file or directory (relative to `folder`) is scanned, for a
    pass that follows file-system events: nothing if it or a directory above it is
    ignored. Paths stay relative to `folder`, and the cache keeps its other entries. Each
    entry is classified by `classify` in both cases.

    With `links` (and no `under`), the walk also notes where the folder's links lead and
    which files have other names (`LocalSnapshot.links`): the watcher follows them without
    a walk of its own.
    """
    root_st = _folder_stat(folder)
    collector = LinkCollector(os.path.realpath(folder)) if links and under is None else None
    walk = _Walk(rules, ChecksumCache() if cache is None else cache, clock_ns(), collector)
    root = frozenset({(root_st.st_dev, root_st.st_ino)})
    if under is None:
        walk.stack.append((os.fspath(folder), "", root))
    elif under.parts and not under.is_absolute() and ".." not in under.parts:
        walk.start_under(folder, under, root)
    walk.list_dirs(folder)
    files = {path: walk.files[path] for path in sorted(walk.files)}
    if under is None:
        walk.cache.keep_only(files)
    return LocalSnapshot(
        links=collector.result() if collector is not None else None,
        files=files,
        errors=tuple(sorted(walk.errors, key=_problem_key)),
        unsyncable=tuple(sorted(walk.unsyncable, key=_problem_key)),
    )


def _scan_file(
    path: RelPath, os_path: str, st: os.stat_result, cache: ChecksumCache, now_ns: int
) -> LocalFile | PathProblem | None:
    """The file's content identity (cached or read), a scan error, or None if it vanished."""
    known = cache._lookup(path, st, now_ns)
    if known is not None:
        return known
    cache.misses += 1
    try:
        hashed = _hash_settled(os_path, cache)
    except FileNotFoundError:
        return None  # deleted between listing and reading
    except OSError as exc:
        return PathProblem(path, _os_reason(exc))
    if hashed is None:
        return PathProblem(path, _REASON_UNSTABLE)
    file_st, checksum, digest = hashed
    local = _local_file(file_st, checksum, digest)
    cache._store(path, local, file_st, now_ns)
    return local


def file_info_now(folder: Path, path: RelPath) -> LocalFile | None:
    """Re-stat and re-hash one file just before it is uploaded; None if it is gone.

    Raises `LocalFileChangedError` if it kept changing while being read, `FileSyncError`
    if it cannot be read or is no longer a regular file.
    """
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ValueError(f"not a path inside the folder: {path}")
    os_path = os.path.join(folder, *path.parts)
    try:
        hashed = _hash_settled(os_path, None)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except _NotRegularFileError as exc:
        if stat.S_ISDIR(exc.mode):
            return None
        raise FileSyncError(f"{path}: {_not_regular_reason(exc.mode)}; not uploaded.") from None
    except OSError as exc:
        raise FileSyncError(f"Cannot read {path}: {_os_reason(exc)}.") from exc
    if hashed is None:
        raise LocalFileChangedError(
            f"{path} kept changing while it was read; it is uploaded once it has settled."
        )
    st, checksum, digest = hashed
    return _local_file(st, checksum, digest)


class _NotRegularFileError(OSError):
    def __init__(self, mode: int) -> None:
        super().__init__("not a regular file")
        self.mode = mode


def _hash(os_path: str, chunk_size: int) -> tuple[int, int, bytes, os.stat_result | None]:
    """(bytes read, Adler-32, digest, stat of the opened file if it did not change while
    read). The digest is a truncated SHA-256 (docs/safety.md, rule 12), computed in the same
    read: SHA-256 with CPU support costs less than a second read would."""
    # O_NONBLOCK: if the path was swapped for a FIFO since it was listed, do not hang.
    fd = os.open(os_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise _NotRegularFileError(before.st_mode)
        # No bigger than the file: a fresh 1 MiB buffer per small file would cost more than
        # reading it.
        buffer = bytearray(max(1, min(chunk_size, before.st_size + 1)))
        checksum = 1  # Adler-32 initial value: an empty file lists as 1
        strong = hashlib.sha256()
        size = 0
        with open(fd, "rb", buffering=0, closefd=False) as stream, memoryview(buffer) as view:
            while n := stream.readinto(buffer):
                chunk = view[:n]
                checksum = zlib.adler32(chunk, checksum)
                strong.update(chunk)
                size += n
        after = os.fstat(fd)
    finally:
        os.close(fd)
    settled = size == before.st_size == after.st_size and before.st_mtime_ns == after.st_mtime_ns
    digest = strong.digest()[:DIGEST_BYTES]
    return size, checksum & 0xFFFFFFFF, digest, before if settled else None


def _hash_settled(
    os_path: str, cache: ChecksumCache | None
) -> tuple[os.stat_result, int, bytes] | None:
    """Hash until one read saw no change; None if the file kept changing."""
    for _ in range(_HASH_ATTEMPTS):
        size, checksum, digest, st = _hash(os_path, 1 << 20)
        if cache is not None:
            cache.bytes_read += size
        if st is not None:
            return st, checksum, digest
    return None


def digest_from_hex(value: object) -> bytes:
    """A digest as stored in JSON, or b"" when it is not one."""
    if not isinstance(value, str) or len(value) != 2 * DIGEST_BYTES:
        return b""
    try:
        return bytes.fromhex(value)
    except ValueError:
        return b""


def _is_racy(st: os.stat_result, now_ns: int) -> bool:
    # Also true for mtimes in the future (clock skew, copied archives): never trusted.
    return now_ns - st.st_mtime_ns < RACY_WINDOW_NS


def _is_utf8(name: str) -> bool:
    # os.scandir decodes undecodable bytes with surrogateescape (PEP 383).
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rel_path(rel: str) -> RelPath:
    """A RelPath that is safe to print and serialise even for a non-UTF-8 name."""
    if _is_utf8(rel):
        return RelPath(rel)
    raw = rel.encode("utf-8", "surrogateescape")
    return RelPath(raw.decode("utf-8", "backslashreplace"))


def _is_link(os_path: str, entry: os.DirEntry[str] | None) -> bool:
    try:
        return entry.is_symlink() if entry is not None else os.path.islink(os_path)
    except OSError:
        return False


def _dir_hint(entry: os.DirEntry[str] | None) -> bool:
    """Whether an entry that cannot be stat-ed is a directory itself (not through a link),
    as far as its directory listing tells."""
    try:
        return entry is not None and entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _not_regular_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        kind = "a named pipe (FIFO)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    else:
        kind = "not a regular file"
        return f"{kind}; only regular files can be synced"
    return f"{kind}, not a regular file; only regular files can be synced"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied; make it readable"
    return exc.strerror or str(exc)


def _unreadable_message(folder: Path, exc: OSError) -> str:
    return (
        f"The mapping folder {folder} cannot be read ({_os_reason(exc)}); "
        "nothing was changed on the server."
    )


def _problem_key(problem: PathProblem) -> str:
    return str(problem.path)
