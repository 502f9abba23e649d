"""Study archives (`.jzip`): built from a definition and a folder, read from a file (an
export, or what jspsych-builder or lab.js produced), unpacked, and checked after an export.

Owns the layout of docs/jatos-api.md §11.6 as jatos-sync writes it: one root `.jas`, one
root folder with the assets as file entries, nothing else (3.8/3.9 count any other root file
as a second folder, docs/jatos-api.md §15.2 item 5). It is the one place that proves an
archive's entries stay inside their root: every entry name is validated as a path from the
server is (`paths.server_path`), and every file unpacked is placed with `paths.contained`,
symlinks followed (docs/safety.md, rule 10). Unpacking never replaces a local file with
other content and writes each file atomically.

Must not talk to the server or decide what a study should be (definition.py does).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jatos_sync.errors import ArchiveError, UnsafePathError
from jatos_sync.model import RelPath
from jatos_sync.paths import contained, server_path

MAX_JAS_BYTES = 16 * 1024 * 1024  # a .jas is a few kilobytes; more is not a study
# JATOS takes archives of up to 2 GB (docs/jatos-api.md §5.1, §11.2); unpacked assets above
# this are refused.
MAX_UNPACKED_BYTES = 8 * 1024**3
_JUNK_ROOTS = frozenset({"__MACOSX"})  # macOS Finder's resource forks
_COPY_CHUNK = 1 << 20


JAS_NAME = "study.jas"  # any root file ending in "jas" is the study's (docs/jatos-api.md §11.3)


Guard = Callable[[RelPath], Callable[[bytes], None]]  # a path → a check of its chunks


def build_archive(
    dest: Path,
    *,
    jas: Mapping[str, Any],
    dir_name: str,
    folder: Path,
    files: Sequence[RelPath] = (),
    guard: Guard | None = None,
) -> None:
    """Write a study archive to `dest`: `study.jas` and the `files` of `folder` under
    `<dir_name>/` (file entries only). A file that cannot be read fails the whole archive,
    and so does one that `guard` refuses (a file that holds the API token must never reach
    the server inside an archive either, docs/safety.md, rule 9)."""
    if files and (dir_name.endswith("jas") or not dir_name or "/" in dir_name):
        raise ValueError(f"not a usable assets folder name: {dir_name!r}")
    text = json.dumps(jas, ensure_ascii=False).encode("utf-8")
    # strict_timestamps=False: a file dated before 1980 is stored as 1980, not refused.
    with zipfile.ZipFile(
        dest, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False
    ) as zf:
        zf.writestr(JAS_NAME, text)
        for path in sorted(files):
            source = folder.joinpath(*path.parts)
            check = guard(path) if guard is not None else None
            try:
                info = zipfile.ZipInfo.from_file(
                    source, f"{dir_name}/{path}", strict_timestamps=False
                )
                info.compress_type = zipfile.ZIP_DEFLATED
                with source.open("rb") as src, zf.open(info, "w") as dst:
                    while chunk := src.read(_COPY_CHUNK):
                        if check is not None:
                            check(chunk)
                        dst.write(chunk)
            except OSError as exc:
                raise ArchiveError(
                    f"{path}: could not be read for the study archive "
                    f"({exc.strerror or exc}); nothing was sent"
                ) from exc


@dataclass(frozen=True)
class Archive:
    """What a study archive holds: its `.jas` (parsed) and its assets, by the path each
    would have in the study (relative to the archive's assets folder)."""

    jas_name: str
    jas: Any
    assets_root: str | None  # the root folder holding the assets, None when there is none
    files: Mapping[RelPath, zipfile.ZipInfo]
    ignored: tuple[str, ...] = ()  # other root entries, never unpacked


def read_archive(path: Path) -> Archive:
    """Read and check a study archive; raise `ArchiveError` saying what is wrong.

    Every entry name must be a plain relative path (no `..`, no absolute path, no
    backslash, no symbolic link); there must be exactly one root `*.jas`; assets come from
    the one root folder (or, with several, the one the `.jas` names as `dirName`).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ArchiveError(f"{path} is not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise ArchiveError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _read(zf: zipfile.ZipFile, path: Path) -> Archive:
    roots: dict[str, dict[RelPath, zipfile.ZipInfo]] = {}
    jas_entries: list[zipfile.ZipInfo] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for info in zf.infolist():
        try:
            rel = server_path(info.filename)
        except UnsafePathError as exc:
            raise ArchiveError(
                f"{path} holds an entry that would land outside its folder ({exc}); "
                "nothing was unpacked"
            ) from None
        if str(rel) in seen and not info.is_dir():
            raise ArchiveError(f"{path} holds {rel} twice; nothing was unpacked")
        seen.add(str(rel))
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(
                f"{path} holds a symbolic link ({rel}); a study archive holds files only"
            )
        if info.is_dir() or rel.parts[0] in _JUNK_ROOTS:
            continue
        if len(rel.parts) == 1:
            if rel.name.endswith("jas"):
                jas_entries.append(info)
            else:
                ignored.append(str(rel))
            continue
        roots.setdefault(rel.parts[0], {})[RelPath(*rel.parts[1:])] = info
    if len(jas_entries) != 1:
        found = ", ".join(i.filename for i in jas_entries) or "none"
        raise ArchiveError(
            f"{path} is not a JATOS study archive: it must hold exactly one .jas file at its "
            f"top level (found: {found})"
        )
    jas_info = jas_entries[0]
    if jas_info.file_size > MAX_JAS_BYTES:
        raise ArchiveError(f"{path}: its .jas file is too large to be a study description")
    try:
        jas = json.loads(zf.read(jas_info).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError(f"{path}: its .jas file is not valid JSON") from None
    root = _assets_root(roots, jas, path)
    files = roots.get(root, {}) if root is not None else {}
    if sum(i.file_size for i in files.values()) > MAX_UNPACKED_BYTES:
        raise ArchiveError(f"{path}: its files would take more than 8 GB unpacked; refused")
    others = [f"{name}/" for name in roots if name != root]
    return Archive(jas_info.filename, jas, root, files, tuple([*ignored, *others]))


def _assets_root(roots: Mapping[str, object], jas: Any, path: Path) -> str | None:
    if len(roots) <= 1:
        return next(iter(roots), None)
    data = jas.get("data") if isinstance(jas, dict) else None
    named = data.get("dirName") if isinstance(data, dict) else None
    if isinstance(named, str) and named in roots:
        return named
    raise ArchiveError(
        f"{path} holds several top-level folders ({', '.join(sorted(roots))}) and its .jas "
        "names none of them as the study's folder; a study archive holds one"
    )


def unpack_assets(
    path: Path, archive: Archive, dest: Path, *, keep_existing: bool = False
) -> tuple[list[RelPath], list[RelPath]]:
    """Unpack the archive's assets into the folder `dest` (created if missing); return the
    files written and the local files kept.

    A local file with the same content is kept. One with other content stops everything
    before a file is written, or, with `keep_existing`, is kept as it is. A folder where a
    file goes always stops everything. Each file stays inside `dest` with symlinks followed
    (docs/safety.md, rule 10) and is written to a temporary name beside its place, then
    renamed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    targets: dict[RelPath, Path] = {}
    for rel in sorted(archive.files):
        try:
            target = contained(dest, rel)
        except UnsafePathError as exc:
            raise ArchiveError(f"{rel}: {exc}; nothing was unpacked") from None
        if os.path.isdir(target):
            raise ArchiveError(f"{target} is a folder where the archive has a file; rename it")
        for parent in list(rel.parents)[:-1]:
            place = dest.joinpath(*parent.parts)
            if os.path.lexists(place) and not os.path.isdir(place):
                raise ArchiveError(f"{place} is a file where the archive has a folder; rename it")
        targets[rel] = target
    written: list[RelPath] = []
    kept: list[RelPath] = []
    with zipfile.ZipFile(path) as zf:
        conflicts = [
            rel
            for rel, target in targets.items()
            if os.path.lexists(target) and not _same_content(zf, archive.files[rel], target)
        ]
        if conflicts and not keep_existing:
            shown = ", ".join(str(c) for c in conflicts[:5])
            raise ArchiveError(
                f"{dest} already holds other versions of {len(conflicts)} file(s) of the "
                f"archive ({shown}); nothing was unpacked. Unpack into a new or empty folder "
                "with --folder."
            )
        for rel, target in targets.items():
            if os.path.lexists(target):
                kept += [rel] if rel in conflicts else []
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            contained(dest, rel)  # again: a folder made above must not lead out either
            _write_atomically(zf, archive.files[rel], target)
            written.append(rel)
    return written, kept


def _same_content(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> bool:
    try:
        if not os.path.isfile(target) or os.path.getsize(target) != info.file_size:
            return False
        with zf.open(info) as packed, target.open("rb") as local:
            return _equal_streams(packed, local)
    except OSError:
        return False


def _equal_streams(a: IO[bytes], b: IO[bytes]) -> bool:
    while True:
        x, y = a.read(_COPY_CHUNK), b.read(_COPY_CHUNK)
        if x != y:
            return False
        if not x:
            return True


def _write_atomically(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.part")
    try:
        with zf.open(info) as src, tmp.open("xb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)  # the CRC is checked at the end
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{info.filename}: damaged in the archive ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_export(path: Path, *, study_uuid: str | None = None) -> Archive:
    """That `path` is what an export must be: a zip whose every entry is intact (CRC) and
    safe, with exactly one root `.jas` describing `study_uuid`. Raises `ArchiveError`."""
    archive = read_archive(path)
    try:
        with zipfile.ZipFile(path) as zf:
            damaged = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArchiveError(f"{path} is damaged ({exc})") from None
    if damaged is not None:
        raise ArchiveError(f"{path} is damaged: {damaged} fails its checksum")
    data = archive.jas.get("data") if isinstance(archive.jas, dict) else None
    found = data.get("uuid") if isinstance(data, dict) else None
    if study_uuid is not None and (not isinstance(found, str) or found.lower() != study_uuid):
        raise ArchiveError(f"{path} describes study {found!r}, not {study_uuid}")
    return archive
