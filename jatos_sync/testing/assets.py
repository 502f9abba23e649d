"""What JATOS does to a study assets directory on disk (docs/jatos-api.md §3-§6, §9).

Owns: path resolution inside the assets directory (`getFileSecurely`), the structure
listing with Adler-32 checksums, the two upload write methods (3.8/3.9 and 3.10), download
opening and delete. Raises `ApiError` with an `ErrorKind`; rendering the error per
version is the server's job. Knows nothing about HTTP, tokens or studies.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Literal

from jatos_sync.testing.personality import ApiError, ErrorKind

_CHECKSUM_CHUNK = 1024 * 1024
_JAVA_BLANK = re.compile(r"[\s\x1c-\x1f]*")


class InvalidPathError(Exception):
    """`getFileSecurely` refused the path; `detail` is 3.10's IOException message
    (docs/jatos-api.md §4)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def resolve(base: Path, rel: str, legal: re.Pattern[str] | None) -> Path:
    """The file `rel` inside `base`, or InvalidPathError (docs/jatos-api.md §9.2, §9.3).

    Blank, absolute and escaping paths are refused; `..` is fine while it stays inside
    (the assets dir itself counts as inside). `legal` is 3.10.5's `REGEX_LEGAL_IN_PATH`,
    applied to the relative path. A NUL byte on ≤3.9 makes Java's `Path` constructor throw
    an unchecked exception → the generic 500 (ErrorKind.INTERNAL).
    """
    if _JAVA_BLANK.fullmatch(rel):
        raise InvalidPathError("File missing")
    if legal is not None and not legal.fullmatch(rel):
        raise InvalidPathError(f'Couldn\'t generate path to file or directory "{rel}".')
    if rel.startswith("/"):
        raise InvalidPathError(f'Path "{rel}" should be relative.')
    if "\x00" in rel:
        raise ApiError(ErrorKind.INTERNAL)
    normalized = posixpath.normpath(rel)
    if normalized == ".." or normalized.startswith("../"):
        raise InvalidPathError(f'Couldn\'t generate path to file or directory "{rel}".')
    return base if normalized == "." else base.joinpath(*normalized.split("/"))


# ------------------------------------------ case-insensitive disks (docs/jatos-api.md §9.4)


def fold_case(base: Path, rel: str, *, for_write: bool = False) -> str:
    """`rel` as a case-insensitive file system (JATOS on macOS or Windows) resolves it.

    Each existing segment takes the spelling stored on disk. For a write the last segment
    keeps the new spelling, and a stored file whose name differs only in case is removed
    first: the JDK's `Files.move(REPLACE_EXISTING)` unlinks the target it finds (that file)
    and renames the upload to the name it was given.
    """
    parts = [p for p in rel.split("/") if p]
    folded: list[str] = []
    current = base
    for index, part in enumerate(parts):
        match = _same_but_case(current, part)
        last = index == len(parts) - 1
        if last and for_write:
            if match is not None and match != part and (current / match).is_file():
                os.remove(current / match)
            folded.append(part)
            break
        folded.append(match or part)
        current = current / (match or part)
    return "/".join(folded)


def _same_but_case(folder: Path, name: str) -> str | None:
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    if name in names:
        return name
    return next((n for n in names if n.casefold() == name.casefold()), None)


# ----------------------------------------------------------- listing (docs/jatos-api.md §3)


def adler32_of_file(path: Path) -> int:
    """Adler-32 of the whole file, streamed in chunks (docs/jatos-api.md §3.3)."""
    value = 1
    with path.open("rb") as f:
        while chunk := f.read(_CHECKSUM_CHUNK):
            value = zlib.adler32(chunk, value)
    return value & 0xFFFFFFFF


def _json_name(name: str) -> str:
    # Undecodable bytes in a file name: Java would show U+FFFD.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _millis(ns: int) -> int:
    return ns // 1_000_000


def _node(path: Path, name: str, rel: str, dir_suffix: str) -> dict[str, Any]:
    """One node of the structure; follows symlinks like `readAttributes` does
    (docs/jatos-api.md §3.6)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ApiError(ErrorKind.LISTING_IO, detail=str(exc.filename or exc)) from exc
    birth = getattr(st, "st_birthtime", None)
    creation = int(birth * 1000) if isinstance(birth, (int, float)) else _millis(st.st_mtime_ns)
    node: dict[str, Any] = {"name": _json_name(name), "path": _json_name(rel)}
    if stat.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    node["type"] = kind
    node["creation"] = creation
    node["lastModified"] = _millis(st.st_mtime_ns)
    node["size"] = st.st_size
    if kind == "file":
        try:
            node["checksum"] = adler32_of_file(path)
        except OSError as exc:
            raise ApiError(ErrorKind.LISTING_IO, detail=str(exc.filename or exc)) from exc
    elif kind == "directory":
        if rel:
            node["path"] = _json_name(rel + dir_suffix)
        try:
            # No sorting: JATOS returns whatever the file system lists (docs/jatos-api.md §3.5).
            names = os.listdir(path)
        except OSError as exc:
            raise ApiError(
                ErrorKind.LISTING_DIR_UNREADABLE, detail=str(exc.filename or exc)
            ) from exc
        node["content"] = [
            _node(path / child, child, f"{rel}/{child}" if rel else child, dir_suffix)
            for child in names
        ]
    return node


def structure(assets_dir: Path, dir_name: str, *, dir_suffix: str, flatten: bool) -> Any:
    """The `data` of `GET …/assets/structure` (docs/jatos-api.md §3.5): a tree or a flat list."""
    if not assets_dir.is_dir():
        raise ApiError(ErrorKind.ASSETS_DIR_MISSING)
    root = _node(assets_dir, dir_name, "", dir_suffix)
    return _flatten(root) if flatten else root


def _flatten(node: dict[str, Any]) -> list[dict[str, Any]]:
    # Every node whose content is absent or empty: files, "other", empty directories — and
    # the root itself when the whole directory is empty (`flatten()` in all versions).
    content = node.get("content")
    if not content:
        return [node]
    result: list[dict[str, Any]] = []
    for child in content:
        result.extend(_flatten(child))
    return result


# ---------------------------------------------------------- upload (docs/jatos-api.md §5.3)


def write_upload(
    base: Path,
    target_rel: str,
    tmp_file: Path,
    *,
    mode: Literal["create_target_dirs", "parents_only"],
    legal: re.Pattern[str] | None,
) -> bool:
    """Move the uploaded temp file to `target_rel`; True if an existing file was replaced."""
    try:
        target = resolve(base, target_rel, legal)
    except InvalidPathError:
        raise ApiError(ErrorKind.UPLOAD_BAD_PATH, path=target_rel) from None
    if mode == "create_target_dirs":
        return _write_create_target_dirs(target, tmp_file)
    return _write_parents_only(target, tmp_file)


def _write_create_target_dirs(target: Path, tmp_file: Path) -> bool:
    # 3.8/3.9: `Files.createDirectories(target)` when the target does not exist — the target
    # itself becomes an empty directory for a moment — then `Files.move(REPLACE_EXISTING)`,
    # which rmdir()s an empty directory (or unlinks a file) and renames. Every IOException
    # is 400 "Error writing file" (docs/jatos-api.md §5.3, 3.8.2/3.9.x steps 1-5).
    existed = target.exists()
    try:
        if not existed:
            os.makedirs(target)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            os.rmdir(target)  # DirectoryNotEmptyException for a non-empty directory
        os.replace(tmp_file, target)
    except OSError as exc:
        raise ApiError(ErrorKind.UPLOAD_IO) from exc
    return existed


def _write_parents_only(target: Path, tmp_file: Path) -> bool:
    # 3.10.5: parents only; a directory at the target or a file as a parent element is
    # FILE_ALREADY_EXISTS; other IO errors are 500 UNSPECIFIED (docs/jatos-api.md §5.3, 3.10
    # steps 1-6).
    try:
        os.makedirs(target.parent, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ApiError(ErrorKind.UPLOAD_WRONG_TYPE) from exc
    except OSError as exc:
        raise ApiError(ErrorKind.UPLOAD_IO) from exc
    if target.is_dir():
        raise ApiError(ErrorKind.UPLOAD_WRONG_TYPE)
    existed = os.path.lexists(target)
    try:
        os.replace(tmp_file, target)
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise ApiError(ErrorKind.UPLOAD_WRONG_TYPE) from exc
    except OSError as exc:
        raise ApiError(ErrorKind.UPLOAD_IO) from exc
    return existed


# ---------------------------------------------------------- download (docs/jatos-api.md §4)


def open_download(base: Path, rel: str, legal: re.Pattern[str] | None) -> tuple[BinaryIO, int]:
    """An open binary file and its size; ApiError for a bad or missing path."""
    try:
        target = resolve(base, rel, legal)
    except InvalidPathError as exc:
        raise ApiError(ErrorKind.DOWNLOAD_BAD_PATH, path=rel, detail=exc.detail) from None
    if not target.is_file():
        raise ApiError(ErrorKind.FILE_NOT_FOUND, path=rel)
    try:
        f = target.open("rb")
    except OSError as exc:
        raise ApiError(ErrorKind.FILE_NOT_FOUND, path=rel) from exc
    return f, os.fstat(f.fileno()).st_size


# ------------------------------------------------------------ delete (docs/jatos-api.md §6)


def delete_file(base: Path, rel: str, legal: re.Pattern[str] | None) -> None:
    """Delete one regular file; directories and bad paths are refused (docs/jatos-api.md §6)."""
    try:
        target = resolve(base, rel, legal)
    except InvalidPathError:
        raise ApiError(ErrorKind.DELETE_BAD_PATH, path=rel) from None
    if target.is_dir():
        raise ApiError(ErrorKind.DELETE_IS_DIR, path=rel)
    try:
        os.remove(target)
    except FileNotFoundError as exc:
        raise ApiError(ErrorKind.FILE_NOT_FOUND, path=rel) from exc
    except OSError as exc:
        raise ApiError(ErrorKind.DELETE_IO, path=rel) from exc


def regular_files(assets_dir: Path) -> dict[str, bytes]:
    """Relative POSIX path -> content of every regular file (symlinks not followed)."""
    result: dict[str, bytes] = {}
    if not assets_dir.is_dir():
        return result
    for dirpath, _dirnames, filenames in os.walk(assets_dir):
        for name in filenames:
            full = Path(dirpath, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                result[full.relative_to(assets_dir).as_posix()] = full.read_bytes()
    return result
