"""Local folder -> `LocalSnapshot`: walk, ignore rules, Adler-32 checksums, checksum cache.

Owns reading the synced folder: which regular files it holds, their size and the Adler-32
checksum JATOS computes for them (JATOS_ASSETS_API.md §2.2), and why other entries cannot
be synced. It translates OS errors into snapshot entries (`errors`, `unsyncable`) or into
`SafetyStop` (the folder itself is unusable, PRODUCT.md §7). It must not talk to the server,
decide what to upload or delete (that is `plan.py`), or write anything into the folder.

Symbolic links are followed, to files and to directories, wherever the target is, even
outside the folder: JATOS follows links in its assets directory the same way (§2.4), and a
link to a shared stimulus folder is a normal way to reuse files across studies. What gets
uploaded is the target's content, as regular files. Links that form a directory loop and
dangling links are reported in `unsyncable`; their paths therefore count as present, so the
planner never deletes their server copies.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
import zlib
from collections.abc import Callable, Collection
from pathlib import Path

from jatos_sync.errors import FileSyncError, LocalFileChangedError, SafetyStop
from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import (
    DIGEST_BYTES,
    FileInfo,
    LocalFile,
    LocalSnapshot,
    PathProblem,
    RelPath,
    rel_path,
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

_CacheEntry = tuple[int, int, int, int, bytes]  # size, mtime_ns, inode, checksum, digest


def adler32_file(path: Path, *, chunk_size: int = 1 << 20) -> tuple[int, int]:
    """(size, Adler-32) of the file's content, read in chunks; as JATOS lists it (§2.2)."""
    size, checksum, _, _ = _hash(os.fspath(path), chunk_size)
    return size, checksum


class ChecksumCache:
    """Checksums of files seen before, keyed by relative path.

    An entry is (size, mtime_ns, inode, Adler-32, digest) and is used only while all three
    stat values still match and the mtime is not racy (see `RACY_WINDOW_NS`). The counters
    let benchmarks show that an unchanged folder is scanned without reading file content.
    """

    def __init__(self, entries: dict[str, _CacheEntry] | None = None) -> None:
        self._entries: dict[str, _CacheEntry] = dict(entries or {})
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
        return self._lookup(str(path), st, now_ns)

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
        self._store(str(path), st, checksum, digest, now)

    def prune(self, keep: Collection[str]) -> None:
        """Forget every path not in `keep` (files that disappeared)."""
        kept = {key: entry for key, entry in self._entries.items() if key in keep}
        if len(kept) != len(self._entries):
            self._entries = kept
            self.generation += 1

    def to_json(self) -> dict[str, list[int | str]]:
        return {key: [*entry[:4], entry[4].hex()] for key, entry in sorted(self._entries.items())}

    @classmethod
    def from_json(cls, data: object) -> ChecksumCache:
        """Rebuild from `to_json` output; anything malformed is dropped, never raised.

        Entries without a digest (written before digests were kept) are dropped too: the
        file is read once more.
        """
        entries: dict[str, _CacheEntry] = {}
        if isinstance(data, dict):
            for key, value in data.items():
                if (
                    isinstance(key, str)
                    and key
                    and isinstance(value, list)
                    and len(value) == 5
                    and all(type(v) is int and v >= 0 for v in value[:4])
                    and value[3] <= 0xFFFFFFFF
                ):
                    digest = digest_from_hex(value[4])
                    if digest:
                        entries[key] = (value[0], value[1], value[2], value[3], digest)
        return cls(entries)

    def _lookup(self, key: str, st: os.stat_result, now_ns: int) -> FileInfo | None:
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry[0] == st.st_size
            and entry[1] == st.st_mtime_ns
            and entry[2] == st.st_ino
            and not _is_racy(st, now_ns)
        ):
            self.hits += 1
            return FileInfo(entry[0], entry[3], entry[4])
        return None

    def _store(
        self, key: str, st: os.stat_result, checksum: int, digest: bytes, now_ns: int
    ) -> None:
        old = self._entries.get(key)
        if _is_racy(st, now_ns):
            self._entries.pop(key, None)
        else:
            self._entries[key] = (st.st_size, st.st_mtime_ns, st.st_ino, checksum, digest)
        if self._entries.get(key) != old:
            self.generation += 1


def check_folder(folder: Path) -> None:
    """Raise `SafetyStop` unless `folder` exists, is a directory and can be listed.

    A vanished folder (unmounted drive, renamed project) must never look like "all files
    were deleted" (PRODUCT.md §7, FIELD_NOTES "mass deletion").
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


def scan_folder(
    folder: Path,
    rules: IgnoreRules,
    *,
    cache: ChecksumCache | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
    under: RelPath | None = None,
) -> LocalSnapshot:
    """Every syncable regular file below `folder`, with problems listed on the side.

    Raises `SafetyStop` if the folder itself is unusable. Ignored directories are not
    entered. `cache` is consulted and updated (entries of vanished files are dropped).

    With `under`, only that file or directory (relative to `folder`, not itself ignored)
    is scanned, for a pass that follows file-system events; paths stay relative to
    `folder`, and the cache keeps its other entries.
    """
    root_st = _folder_stat(folder)
    if cache is None:
        cache = ChecksumCache()
    now_ns = clock_ns()
    files: dict[str, LocalFile] = {}
    errors: list[PathProblem] = []
    unsyncable: list[PathProblem] = []

    # (os path, relative prefix ending in "/" or "", (dev, ino) of the dirs on the path)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (os.fspath(folder), "", frozenset({(root_st.st_dev, root_st.st_ino)}))
    ]
    if under is not None:
        stack = _start_under(folder, under, stack[0][2], cache, now_ns, files, errors)
    while stack:
        dir_path, prefix, ancestors = stack.pop()
        try:
            with os.scandir(dir_path) as iterator:
                entries = list(iterator)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed while we walked: its files are simply gone
        except OSError as exc:
            if not prefix:
                raise SafetyStop(_unreadable_message(folder, exc)) from exc
            errors.append(PathProblem(RelPath(prefix.rstrip("/")), _os_reason(exc)))
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError as exc:
                if rules.match_entry(rel):
                    continue
                if exc.errno == errno.ELOOP:  # a link that points (via links) to itself
                    unsyncable.append(PathProblem(_rel_path(rel), _REASON_LOOP))
                else:
                    errors.append(PathProblem(_rel_path(rel), _os_reason(exc)))
                continue
            if rules.match_entry(rel, is_dir=is_dir):
                continue
            if not _is_utf8(entry.name):
                reason = _REASON_DIR_NOT_UTF8 if is_dir else _REASON_NOT_UTF8
                unsyncable.append(PathProblem(_rel_path(rel), reason))
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                if _is_symlink(entry):
                    unsyncable.append(PathProblem(RelPath(rel), _REASON_BROKEN))
                continue  # else: deleted between listing and stat
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    unsyncable.append(PathProblem(RelPath(rel), _REASON_LOOP))
                else:
                    errors.append(PathProblem(RelPath(rel), _os_reason(exc)))
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                if st.st_ino == 0:  # Windows: DirEntry.stat() leaves st_ino/st_dev zero
                    st = os.stat(entry.path)
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    unsyncable.append(PathProblem(RelPath(rel), _REASON_LOOP))
                else:
                    stack.append((entry.path, rel + "/", ancestors | {key}))
            elif stat.S_ISREG(mode):
                found = _scan_file(rel, entry.path, st, cache, now_ns)
                if isinstance(found, LocalFile):
                    files[rel] = found
                elif found is not None:
                    errors.append(found)
            else:
                unsyncable.append(PathProblem(RelPath(rel), _not_regular_reason(mode)))

    if under is None:
        cache.prune(files.keys())
    return LocalSnapshot(
        files={rel_path(rel): files[rel] for rel in sorted(files)},
        errors=tuple(sorted(errors, key=_problem_key)),
        unsyncable=tuple(sorted(unsyncable, key=_problem_key)),
    )


def _start_under(
    folder: Path,
    under: RelPath,
    root: frozenset[tuple[int, int]],
    cache: ChecksumCache,
    now_ns: int,
    files: dict[str, LocalFile],
    errors: list[PathProblem],
) -> list[tuple[str, str, frozenset[tuple[int, int]]]]:
    """The walk's start for `scan_folder(under=…)`: a directory to walk, or one file."""
    rel = str(under)
    os_path = os.path.join(folder, *under.parts)
    try:
        st = os.stat(os_path)
    except OSError:
        return []  # gone (or a broken link): nothing there to sync
    if stat.S_ISDIR(st.st_mode):
        return [(os_path, rel + "/", root | {(st.st_dev, st.st_ino)})]
    if stat.S_ISREG(st.st_mode) and _is_utf8(rel):
        found = _scan_file(rel, os_path, st, cache, now_ns)
        if isinstance(found, LocalFile):
            files[rel] = found
        elif found is not None:
            errors.append(found)
    return []


def _scan_file(
    rel: str, os_path: str, st: os.stat_result, cache: ChecksumCache, now_ns: int
) -> LocalFile | PathProblem | None:
    """The file's content identity (cached or read), a scan error, or None if it vanished."""
    known = cache._lookup(rel, st, now_ns)
    if known is not None:
        return LocalFile(st.st_size, known.checksum, st.st_mtime_ns, known.digest)
    cache.misses += 1
    try:
        hashed = _hash_settled(os_path, cache)
    except FileNotFoundError:
        return None  # deleted between listing and reading
    except OSError as exc:
        return PathProblem(RelPath(rel), _os_reason(exc))
    if hashed is None:
        return PathProblem(RelPath(rel), _REASON_UNSTABLE)
    file_st, checksum, digest = hashed
    cache._store(rel, file_st, checksum, digest, now_ns)
    return LocalFile(file_st.st_size, checksum, file_st.st_mtime_ns, digest)


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
    return LocalFile(st.st_size, checksum, st.st_mtime_ns, digest)


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
        return rel_path(rel)
    raw = rel.encode("utf-8", "surrogateescape")
    return RelPath(raw.decode("utf-8", "backslashreplace"))


def _is_symlink(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
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
