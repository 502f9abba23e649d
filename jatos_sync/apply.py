"""Carry out a Plan against the server: backups, uploads in publish order, then deletions.

Order (docs/safety.md, rule 7): copies of server content this tool did not write are saved
and verified first; then the deletions that uploads depend on (a file in the way of a new
folder, or the reverse); then non-HTML files are uploaded, then HTML files, so a running
study never loads a page whose new assets are missing; then the other deletions. A failed
upload holds back the deletions it could matter to: all of them when an HTML page failed
(the old page, still served, may use any file), otherwise those of the same content (a
rename whose new name failed). Uploads run concurrently on the client's one keep-alive
session.

Per file: the file is re-checked just before upload and uploaded as it is then; the bytes
actually sent are hashed, so a file that changed while being read is sent again (bounded).
A per-file failure is collected and the pass goes on; an error about the whole study
(locked, token refused, server gone) stops the pass and is returned as `fatal`.

It must not decide *what* to sync (that is `plan.py`) and must not parse HTTP (`client.py`).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Protocol

import structlog

from jatos_sync.errors import (
    FileSyncError,
    JatosSyncError,
    LocalFileChangedError,
    ServerUnavailableError,
)
from jatos_sync.model import FileInfo, LocalFile, PathProblem, RelPath, RemoteSnapshot, is_html
from jatos_sync.paths import contained
from jatos_sync.plan import Plan, skip_reason
from jatos_sync.scan import file_info_now
from jatos_sync.state import make_private_dirs, new_backup_folder

log = structlog.get_logger("jatos_sync.apply")

# How often a file that keeps changing while it is uploaded is sent again in one pass.
MAX_UPLOAD_ATTEMPTS = 3
# A backup that does not match the listing is downloaded this many times in all.
BACKUP_ATTEMPTS = 2


class AssetClient(Protocol):
    """The part of JatosClient that apply uses (a seam for tests)."""

    def upload(self, study: str, path: RelPath, source: Path, *, size: int) -> FileInfo: ...

    def delete(self, study: str, path: RelPath) -> None: ...

    def download(self, study: str, path: RelPath, dest: IO[bytes]) -> FileInfo: ...

    def list_assets(self, study: str) -> RemoteSnapshot: ...


class ProgressSink(Protocol):
    """Receives progress of a pass (a terminal progress bar; nothing in JSON/non-TTY)."""

    def start(self, *, files: int, total_bytes: int) -> None: ...

    def advance(self, path: RelPath, *, nbytes: int) -> None: ...  # one file done or failed

    def close(self) -> None: ...


@dataclass
class Outcome:
    """What a pass actually did."""

    uploaded: dict[RelPath, FileInfo] = field(default_factory=dict)
    deleted: set[RelPath] = field(default_factory=set)
    backed_up: list[RelPath] = field(default_factory=list)
    failed: list[PathProblem] = field(default_factory=list)
    skipped: list[PathProblem] = field(default_factory=list)
    not_deleted: list[RelPath] = field(default_factory=list)  # held back: an upload failed
    # Old spellings of case-only renames that the server replaced by the upload itself (it
    # ignores letter case): gone under that name without a deletion.
    folded: set[RelPath] = field(default_factory=set)
    # Uploads cut off by a lost connection: the server may have stored them, or not.
    in_doubt: dict[RelPath, FileInfo] = field(default_factory=dict)
    fatal: JatosSyncError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class Target:
    """Where a plan is applied."""

    client: AssetClient
    study: str
    folder: Path
    backup_root: Path  # this mapping's backup folder in the state directory
    concurrency: int = 4


def apply_plan(
    plan: Plan,
    target: Target,
    *,
    scanned: dict[RelPath, LocalFile],
    api_version: str = "",
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    stop: threading.Event | None = None,
    progress: ProgressSink | None = None,
) -> Outcome:
    """Execute `plan`; never raises for per-file problems (see `Outcome`)."""
    out = Outcome()
    stop = stop or threading.Event()
    refused = _save_backups(plan, target, out, stamp=clock())
    uploads = [p for p in plan.uploads if p not in refused]
    first = [p for p in plan.deletes_first if p not in refused]
    deletes = [p for p in plan.deletes if p not in refused]
    if progress is not None:
        sizes = sum(plan.expected[p].size for p in uploads if p in plan.expected)
        progress.start(files=len(uploads) + len(first) + len(deletes), total_bytes=sizes)

    def tracked(work: Callable[[RelPath], None]) -> Callable[[RelPath], None]:
        if progress is None:
            return work

        def run(path: RelPath) -> None:
            def advance() -> None:
                info = plan.expected.get(path)
                progress.advance(path, nbytes=info.size if info else 0)

            try:
                work(path)
            except Exception:  # a failed file is done too; an interrupted one (Ctrl-C) is not
                advance()
                raise
            advance()

        return run

    upload = tracked(lambda p: _upload_one(p, target, out, scanned.get(p), api_version))
    delete = tracked(lambda p: _delete_one(p, target, out))
    try:
        _run_all(first, delete, target.concurrency, out, stop)
        for group in ([p for p in uploads if not is_html(p)], [p for p in uploads if is_html(p)]):
            if out.fatal or stop.is_set():
                break
            _run_all(group, upload, target.concurrency, out, stop)
        deletes = _verify_case_renames(plan, deletes, target, out)
        held = _held_back(plan, deletes, out, stop)
        if held:
            out.not_deleted.extend(held)
            log.warning("deletions_held_back", count=len(held), reason="an upload failed")
        _run_all([p for p in deletes if p not in set(held)], delete, target.concurrency, out, stop)
    finally:
        if progress is not None:
            progress.close()
    return out


def _held_back(
    plan: Plan, deletes: list[RelPath], out: Outcome, stop: threading.Event
) -> list[RelPath]:
    """The deletions a failed upload could matter to (see the module docstring)."""
    if out.fatal or stop.is_set():
        return list(deletes)
    failed = {p.path for p in out.failed if p.path in plan.expected}
    if any(is_html(p) for p in failed):
        return list(deletes)
    moved = {plan.expected[p] for p in failed}
    return [p for p in deletes if plan.server.get(p) in moved or _same_name(p, failed)]


def _same_name(path: RelPath, failed: set[RelPath]) -> bool:
    return any(path.casefold() == f.casefold() for f in failed)


def _verify_case_renames(
    plan: Plan, deletes: list[RelPath], target: Target, out: Outcome
) -> list[RelPath]:
    """Delete the old spelling of a case-only rename only where the server holds both names.

    On a server whose file system ignores letter case (JATOS on macOS or Windows,
    docs/jatos-api.md §9.4) the upload of `stimuli.js` replaced `Stimuli.js` itself;
    deleting `Stimuli.js` would then remove the file just uploaded. One listing tells the
    two kinds of server apart.
    """
    renames = [p for p in plan.case_renames if p in deletes]
    if not renames or out.fatal:
        return deletes
    try:
        listed = target.client.list_assets(target.study).files
    except JatosSyncError as exc:
        log.warning("case_rename_unverified", error=str(exc))
        return [p for p in deletes if p not in set(renames)]  # the next pass looks again
    uploaded = {p.casefold(): p for p in out.uploaded}
    keep = set()
    for old in renames:
        new = uploaded.get(old.casefold())
        if new is None or (new in listed and old in listed):
            continue  # upload failed (held back anyway) or a case-sensitive server
        keep.add(old)
        out.folded.add(old)
        log.info("server_ignores_case", old=str(old), new=str(new))
    return [p for p in deletes if p not in keep]


def _run_all(
    paths: Iterable[RelPath],
    work: Callable[[RelPath], None],
    concurrency: int,
    out: Outcome,
    stop: threading.Event,
) -> None:
    def guarded(path: RelPath) -> None:
        if out.fatal or stop.is_set():
            return
        try:
            work(path)
        except FileSyncError as exc:
            with out._lock:
                out.failed.append(PathProblem(path, str(exc)))
            log.warning("file_failed", path=str(path), error=str(exc))
        except JatosSyncError as exc:  # about the whole study or server: stop the pass
            with out._lock:
                if out.fatal is None:
                    out.fatal = exc

    paths = list(paths)
    if len(paths) <= 1 or concurrency <= 1:
        for path in paths:
            guarded(path)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="jatos-sync-io") as pool:
        list(pool.map(guarded, paths))


def _upload_one(
    path: RelPath, target: Target, out: Outcome, scanned: LocalFile | None, api_version: str
) -> None:
    source = target.folder.joinpath(*path.parts)
    current = scanned
    for _attempt in range(MAX_UPLOAD_ATTEMPTS):
        # Re-check just before upload: a stat tells whether the file changed since it was
        # hashed; only then is it read again.
        if current is None or _stat_key(source) != (current.size, current.mtime_ns):
            current = file_info_now(target.folder, path)
            if current is None:
                with out._lock:
                    out.skipped.append(PathProblem(path, "disappeared before it was uploaded"))
                return
        reason = skip_reason(path, current.info, api_version=api_version)
        if reason:
            with out._lock:
                out.skipped.append(PathProblem(path, reason))
            return
        started = time.monotonic()
        try:
            sent = target.client.upload(target.study, path, source, size=current.size)
        except LocalFileChangedError:
            current = None
            continue
        except ServerUnavailableError:
            with out._lock:
                out.in_doubt[path] = current.info
            raise
        # Verify: the bytes sent are the ones planned, and the file did not change meanwhile.
        with out._lock:
            out.uploaded[path] = sent  # what the server holds now, in any case
        if sent == current.info and _stat_key(source) == (current.size, current.mtime_ns):
            log.info(
                "upload_done",
                path=str(path),
                bytes=sent.size,
                elapsed_s=round(time.monotonic() - started, 3),
            )
            return
        current = None  # changed during the upload: send the new content
    raise FileSyncError(f"{path}: kept changing while it was being uploaded; will retry later")


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _delete_one(path: RelPath, target: Target, out: Outcome) -> None:
    started = time.monotonic()
    target.client.delete(target.study, path)
    with out._lock:
        out.deleted.add(path)
    log.info("delete_done", path=str(path), elapsed_s=round(time.monotonic() - started, 3))


def _save_backups(plan: Plan, target: Target, out: Outcome, *, stamp: datetime) -> set[RelPath]:
    """Download server copies before they are replaced, each verified against the listing
    (docs/safety.md, rule 6); return the paths whose copy failed: those are neither
    overwritten nor deleted."""
    refused: set[RelPath] = set()
    folder: Path | None = None
    for path in plan.backups:
        try:
            folder = folder or new_backup_folder(target.backup_root, prefix="", now=stamp)
            dest = contained(folder, path)
            make_private_dirs(dest.parent)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "w+b") as fh:
                    _download_verified(target, path, fh, plan.server.get(path))
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, FileSyncError) as exc:
            refused.add(path)
            log.warning("backup_failed", path=str(path), error=str(exc))
            out.failed.append(
                PathProblem(
                    path,
                    f"could not save a local copy of the server's version first ({exc}); "
                    "it was not overwritten or deleted",
                )
            )
            continue
        except JatosSyncError as exc:
            refused.add(path)
            out.fatal = out.fatal or exc
            continue
        out.backed_up.append(path)
        log.info("backup_saved", path=str(path), dest=str(dest))
    return refused


def _download_verified(
    target: Target, path: RelPath, dest: IO[bytes], expected: FileInfo | None
) -> None:
    """Download into `dest` until the bytes match what the listing said (size and Adler-32);
    a server or proxy that serves other bytes gets no overwrite."""
    got: FileInfo | None = None
    for _attempt in range(BACKUP_ATTEMPTS):
        got = target.client.download(target.study, path, dest)
        if expected is None or got == expected:
            return
        log.warning(
            "backup_mismatch", path=str(path), expected_bytes=expected.size, got_bytes=got.size
        )
    assert got is not None and expected is not None
    raise FileSyncError(
        f"the server sent other bytes ({got.size} bytes) than its file list says "
        f"({expected.size} bytes), twice"
    )
