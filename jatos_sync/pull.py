"""`jatos-sync pull [--force] MAPPING`: fill a mapping's folder from its study on the server.

For a researcher who only has the server copy, or a new lab member. The direction is the
opposite of `sync`, and so is the caution: it never replaces a local file that differs from
the server's unless `--force`, and then only after a copy of the local file is saved in the
state directory (`backups/<key>/pull-<UTC time>/…`). It never deletes a local file. Files
that are identical on both sides are not downloaded; files matching the mapping's ignore
rules are not downloaded; server names that are unsafe as local paths are skipped.

Every file is downloaded into a temporary file beside its destination, its size and
Adler-32 are compared with the listing (docs/jatos-api.md §3.3, §4) — a mismatch is tried
once more, then reported — and only then is it renamed into place (`os.replace`), so a
reader (an editor, `jatos-sync watch`) never sees half a file. Afterwards the state records
every file that is now identical on both sides, so the next `sync` uploads nothing; if the
state directory cannot be written, the files are still pulled and the result says so.

A pull that was killed (SIGKILL, power loss) leaves its temporary files behind. Each pull
first removes such leftovers of earlier ones: only regular files with pull's own temporary
names, only inside the mapping folder (symlinks are not followed), and never one that a
running pull still writes (it holds a lock on it, and it is younger than
`LEFTOVER_AGE_S`).

`plan_pull` is the pure decision (what to download, replace, keep, skip); `pull` carries it
out; `run` is the command. It must not parse HTTP (client.py) or map errors to exit codes
(jatos_sync.cli): a problem with the whole study or server is raised as `JatosSyncError`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

import structlog

from jatos_sync.apply import ProgressSink
from jatos_sync.config import Config, MappingConfig
from jatos_sync.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    FileSyncError,
    JatosSyncError,
)
from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import FileInfo, LocalSnapshot, PathProblem, RelPath, RemoteSnapshot
from jatos_sync.paths import contained, is_inside
from jatos_sync.scan import check_folder, scan_folder
from jatos_sync.state import (
    StateStore,
    StateWriteError,
    make_private_dirs,
    mapping_key,
    new_backup_folder,
)

if sys.platform != "win32":
    import fcntl

log = structlog.get_logger("jatos_sync.pull")

DOWNLOAD_ATTEMPTS = 2  # a checksum mismatch is tried once more (the file may be mid-upload)

# Pull's temporary files: `.<name>.<8 hex digits>.part` beside the destination. A hidden name
# ending in ".part" is ignored by the scan and the watcher (ignore.BUILTIN_PATTERNS), so a
# running `watch` never uploads a half download.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")
# A leftover is removed only when it is at least this old (a running pull writes to its
# file, or has just renamed it into place) and not locked by a running pull.
LEFTOVER_AGE_S = 600.0

# Names Windows cannot hold: reserved device names (with any extension), characters that are
# not allowed in a file name, and a trailing dot or space (which Windows silently drops).
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.I)
_WINDOWS_ILLEGAL = re.compile(r'[\x00-\x1f<>:"|?*\\]')


class DownloadClient(Protocol):
    """The part of JatosClient that pull uses (a seam for tests)."""

    @property
    def base_url(self) -> str: ...

    def list_assets(self, study: str) -> RemoteSnapshot: ...

    def download(self, study: str, path: RelPath, dest: IO[bytes]) -> FileInfo: ...


# ------------------------------------------------------------------------------ the decision


@dataclass(frozen=True)
class PullPlan:
    """What a pull will do; paths are sorted."""

    download: tuple[RelPath, ...] = ()  # absent locally
    replace: tuple[RelPath, ...] = ()  # differ locally; only with --force
    unchanged: tuple[RelPath, ...] = ()  # identical on both sides
    kept: tuple[PathProblem, ...] = ()  # differ locally; kept (no --force)
    skipped: tuple[PathProblem, ...] = ()  # names unsafe as local paths
    ignored: tuple[RelPath, ...] = ()  # match the mapping's ignore rules
    local_only: tuple[RelPath, ...] = ()  # local files the server does not have; left alone


def local_name_problem(path: RelPath, *, windows: bool = os.name == "nt") -> str | None:
    """Why a server name cannot safely be a local path here, or None when it can."""
    parts = path.parts
    if not parts or path.is_absolute() or any(p in ("", ".", "..") for p in parts):
        return "not a safe local path (absolute, or with '..'); not downloaded"
    if any("\x00" in p for p in parts):
        return "the name contains a NUL character; not downloaded"
    if windows:
        for part in parts:
            if _WINDOWS_ILLEGAL.search(part):
                return 'Windows does not allow control characters or \\ < > : " | ? * in names'
            if _WINDOWS_RESERVED.match(part):
                return f"{part!r} is a reserved device name on Windows"
            if part.endswith((".", " ")):
                return "Windows does not allow a name that ends with a dot or a space"
    return None


def plan_pull(
    remote: RemoteSnapshot,
    local: LocalSnapshot,
    *,
    ignored: Callable[[RelPath], bool],
    force: bool,
    name_problem: Callable[[RelPath], str | None] = local_name_problem,
) -> PullPlan:
    """Compare the listing with the local scan and decide, file by file. Pure."""
    download: list[RelPath] = []
    replace: list[RelPath] = []
    unchanged: list[RelPath] = []
    kept: list[PathProblem] = []
    skipped: list[PathProblem] = []
    ignored_paths: list[RelPath] = []
    unreadable = {p.path: p.reason for p in (*local.errors, *local.unsyncable)}

    def unreadable_reason(path: RelPath) -> str | None:
        for candidate in (path, *path.parents):
            if candidate in unreadable:
                return unreadable[candidate]
        return None

    for path in sorted(remote.files):
        if ignored(path):
            ignored_paths.append(path)
            continue
        problem = name_problem(path)
        if problem is not None:
            skipped.append(PathProblem(path, problem))
            continue
        mine = local.files.get(path)
        if mine is not None and mine.info == remote.files[path]:
            unchanged.append(path)
            continue
        if mine is not None:
            reason = "differs from the server's copy"
        else:
            found = unreadable_reason(path)
            if found is None:
                download.append(path)
                continue
            reason = f"the local copy could not be read ({found})"
        if force:
            replace.append(path)
        else:
            kept.append(PathProblem(path, reason))
    local_only = sorted(p for p in local.files if p not in remote.files)
    return PullPlan(
        download=tuple(download),
        replace=tuple(replace),
        unchanged=tuple(unchanged),
        kept=tuple(kept),
        skipped=tuple(skipped),
        ignored=tuple(ignored_paths),
        local_only=tuple(local_only),
    )


# ------------------------------------------------------------------------------ the result


@dataclass
class PullResult:
    """What a pull did for one mapping."""

    name: str
    study: str
    folder: Path
    created_folder: bool = False
    downloaded: list[RelPath] = field(default_factory=list)
    unchanged: int = 0
    kept: list[PathProblem] = field(default_factory=list)
    skipped: list[PathProblem] = field(default_factory=list)
    failed: list[PathProblem] = field(default_factory=list)
    backed_up: dict[RelPath, Path] = field(default_factory=dict)
    ignored: int = 0
    local_only: list[RelPath] = field(default_factory=list)
    removed_leftovers: list[RelPath] = field(default_factory=list)
    state_error: str | None = None  # the files were pulled, but the state was not saved
    fatal: JatosSyncError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return self.fatal.exit_code
        return EXIT_PARTIAL if self.failed or self.kept or self.state_error else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "study": self.study,
            "folder": str(self.folder),
            "created_folder": self.created_folder,
            "downloaded": [str(p) for p in sorted(self.downloaded)],
            "unchanged": self.unchanged,
            "kept": [{"path": str(p.path), "reason": p.reason} for p in self.kept],
            "skipped": [{"path": str(p.path), "reason": p.reason} for p in self.skipped],
            "failed": [{"path": str(p.path), "error": p.reason} for p in self.failed],
            "backed_up": [
                {"path": str(p), "backup": str(b)}
                for p, b in sorted(self.backed_up.items(), key=lambda item: str(item[0]))
            ],
            "ignored": self.ignored,
            "local_only": [str(p) for p in self.local_only],
            "removed_leftovers": [str(p) for p in self.removed_leftovers],
            "exit_code": self.exit_code,
        }
        if self.state_error is not None:
            document["state_error"] = self.state_error
        if self.fatal is not None:
            document["error"] = str(self.fatal)
        return document


# ------------------------------------------------------------------------------ doing it


def pull(
    mapping: MappingConfig,
    *,
    client: DownloadClient,
    store: StateStore,
    force: bool = False,
    concurrency: int = 4,
    progress: ProgressSink | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    stop: threading.Event | None = None,
) -> PullResult:
    """Pull `mapping`'s study into its folder. Per-file problems end up in the result; an
    error about the whole study or server before any download is raised, one during the
    downloads is returned as `fatal` (after the state of what was done is saved)."""
    folder = mapping.folder
    result = PullResult(mapping.name, mapping.study, folder)
    store.ensure_outside(folder)
    key = mapping_key(client.base_url, mapping.study, folder)
    remote = client.list_assets(mapping.study)
    if not os.path.lexists(folder):
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the folder {folder} ({exc.strerror or exc}); create it or "
                "fix `folder:` in the configuration."
            ) from exc
        result.created_folder = True
        log.info("folder_created", folder=str(folder))
    check_folder(folder)
    rules = IgnoreRules.for_folder(folder, mapping.ignore)
    result.removed_leftovers = remove_leftovers(folder, rules, now_s=clock().timestamp())
    state = store.load(key)
    local = scan_folder(folder, rules, cache=state.cache)
    plan = plan_pull(remote, local, ignored=rules, force=force)
    result.unchanged = len(plan.unchanged)
    result.kept = list(plan.kept)
    result.skipped = list(plan.skipped)
    result.ignored = len(plan.ignored)
    result.local_only = list(plan.local_only)

    # Only `--force` replacements are backed up: one new private folder for this pull. If
    # it cannot be made (a full or read-only state directory), nothing is replaced.
    backup_root = store.backup_dir(key)
    replace = plan.replace
    if replace:
        try:
            backup_root = new_backup_folder(backup_root, prefix="pull-", now=clock())
        except OSError as exc:
            reason = (
                f"could not save a copy of the local file first (cannot create a backup "
                f"folder in {backup_root}: {exc.strerror or exc}); it was not replaced"
            )
            result.failed += [PathProblem(path, reason) for path in replace]
            log.warning("backup_failed", folder=str(backup_root), error=exc.strerror or str(exc))
            replace = ()
    job = _Job(
        client=client,
        study=mapping.study,
        folder=folder,
        remote=remote.files,
        backup_root=backup_root,
        result=result,
        stop=stop or threading.Event(),
        progress=progress,
    )
    work = [(p, False) for p in plan.download] + [(p, True) for p in replace]
    try:
        job.run_all(work, concurrency)
    finally:
        # Whatever happened, remember what is now identical on both sides. Entries of files
        # that are still different keep their old value, so a later `sync` still knows
        # which server content it put there (docs/safety.md, rule 6).
        synced = {p: info for p, info in state.synced.items() if p in remote.files}
        for path in (*plan.unchanged, *result.downloaded):
            synced[path] = remote.files[path]
        state.synced = synced
        try:
            store.save(key, state)
        except StateWriteError as exc:
            # The files are in place; only the record of them is missing, so the next
            # `sync` compares more carefully (and may back up server files it need not).
            result.state_error = str(exc)
            log.warning("state_not_saved", mapping=mapping.name, error=str(exc))
    result.kept.sort(key=lambda p: str(p.path))
    result.failed.sort(key=lambda p: str(p.path))
    return result


@dataclass
class _Job:
    client: DownloadClient
    study: str
    folder: Path
    remote: Mapping[RelPath, FileInfo]
    backup_root: Path
    result: PullResult
    stop: threading.Event
    progress: ProgressSink | None

    def run_all(self, work: Sequence[tuple[RelPath, bool]], concurrency: int) -> None:
        if not work:
            return
        if self.progress is not None:
            total = sum(self.remote[path].size for path, _ in work)
            self.progress.start(files=len(work), total_bytes=total)
        pool = ThreadPoolExecutor(
            max_workers=max(1, min(concurrency, len(work))), thread_name_prefix="jatos-sync-pull"
        )
        try:
            futures = [pool.submit(self.guarded, path, replace) for path, replace in work]
            for future in futures:
                future.result()
        except BaseException:
            self.stop.set()  # Ctrl-C: let running downloads finish their file, start no more
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self.progress is not None:
                self.progress.close()

    def guarded(self, path: RelPath, replace: bool) -> None:
        if self.stop.is_set():
            return
        try:
            self.one(path, replace=replace)
        except FileSyncError as exc:
            self.fail(path, str(exc))
        except OSError as exc:
            self.fail(path, f"could not write it: {exc.strerror or exc}")
        except JatosSyncError as exc:  # about the whole study or server: stop
            with self.result._lock:
                if self.result.fatal is None:
                    self.result.fatal = exc
            self.stop.set()
        finally:
            if self.progress is not None:
                self.progress.advance(path, nbytes=self.remote[path].size)

    def fail(self, path: RelPath, reason: str) -> None:
        with self.result._lock:
            self.result.failed.append(PathProblem(path, reason))
        log.warning("download_failed", path=str(path), error=reason)

    def keep(self, path: RelPath, reason: str) -> None:
        with self.result._lock:
            self.result.kept.append(PathProblem(path, reason))

    def one(self, path: RelPath, *, replace: bool) -> None:
        dest = contained(self.folder, path)  # docs/safety.md, rule 10
        expected = self.remote[path]
        started = time.monotonic()
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise FileSyncError(
                "a local file is in the way of one of its folders; rename that file"
            ) from None
        if os.path.isdir(dest):
            raise FileSyncError("a local folder has this name; rename the folder to pull it")
        if not replace and os.path.lexists(dest):
            # Appeared since the scan (or the file system folds case/Unicode forms and
            # another server name already landed here): never overwrite it unasked.
            self.keep(path, "a local file with this name appeared during the pull")
            return
        mode: int | None = None
        if replace:
            mode = self.save_backup(path, dest)
        tmp = self.download_checked(path, dest, expected)
        try:
            if mode is not None:
                os.chmod(tmp, mode)  # keep the permissions of the file it replaces
            if not replace and os.path.lexists(dest):
                self.keep(path, "a local file with this name appeared during the pull")
                return
            os.replace(tmp, dest)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        with self.result._lock:
            self.result.downloaded.append(path)
        log.info(
            "download_done",
            path=str(path),
            bytes=expected.size,
            elapsed_s=round(time.monotonic() - started, 3),
        )

    def save_backup(self, path: RelPath, dest: Path) -> int | None:
        """Copy the local file into the backup folder; return its permission bits."""
        backup = contained(self.backup_root, path)
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
            make_private_dirs(backup.parent)
            shutil.copy2(dest, backup)
        except OSError as exc:
            raise FileSyncError(
                f"could not save a copy of the local file first ({exc.strerror or exc}); "
                "it was not replaced"
            ) from exc
        with self.result._lock:
            self.result.backed_up[path] = backup
        log.info("backup_saved", path=str(path), dest=str(backup))
        return mode

    def download_checked(self, path: RelPath, dest: Path, expected: FileInfo) -> Path:
        """Download into a temp file beside `dest` and verify it; return the temp file."""
        tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")  # see _TEMP_NAME
        # 0o666 before the umask, as any new file; mkstemp's 0o600 would hide assets.
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        _try_lock(fd)  # held while it is written: another pull's clean-up leaves it alone
        try:
            with open(fd, "w+b") as stream:
                got = expected
                for attempt in range(DOWNLOAD_ATTEMPTS):
                    got = self.client.download(self.study, path, stream)
                    if got == expected:
                        break
                    log.warning(
                        "download_mismatch",
                        path=str(path),
                        attempt=attempt + 1,
                        expected_bytes=expected.size,
                        got_bytes=got.size,
                    )
                else:
                    raise FileSyncError(
                        f"the download did not match the server's listing ({got.size} bytes, "
                        f"Adler-32 {got.checksum} instead of {expected.size} bytes, "
                        f"{expected.checksum}), twice; the file is probably being changed on "
                        "the server right now. Run `jatos-sync pull` again."
                    )
                stream.flush()
                # Durable before it is renamed into place: after a crash, a short file at
                # the final name would look like a local edit, and `sync` would upload it.
                os.fsync(stream.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp


# ------------------------------------------------------------------------------ leftovers


def remove_leftovers(
    folder: Path, rules: IgnoreRules, *, now_s: float, min_age_s: float = LEFTOVER_AGE_S
) -> list[RelPath]:
    """Delete the temporary files earlier, killed pulls left in `folder`; return them.

    Only regular files named like pull's own (`_TEMP_NAME`), at least `min_age_s` old by
    `now_s`, not locked by a running pull, in directories of the folder itself: symbolic
    links are not followed and ignored directories are not entered.
    """
    removed: list[RelPath] = []
    for top, dirs, files in os.walk(folder):  # followlinks=False: links are not entered
        base = os.path.relpath(top, folder).replace(os.sep, "/")
        prefix = "" if base == "." else base + "/"
        dirs[:] = [d for d in dirs if not rules.match_entry(prefix + d, is_dir=True)]
        for name in files:
            if _TEMP_NAME.match(name) and _remove_if_stale(
                Path(top, name), folder, now_s=now_s, min_age_s=min_age_s
            ):
                removed.append(RelPath(prefix + name))
                log.info("leftover_removed", path=prefix + name)
    return sorted(removed)


def _remove_if_stale(path: Path, folder: Path, *, now_s: float, min_age_s: float) -> bool:
    try:
        # O_NOFOLLOW: a symbolic link with such a name is not ours; O_NONBLOCK: nor a FIFO.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or now_s - st.st_mtime < min_age_s
            or not is_inside(path.parent, folder)
            or not _try_lock(fd)
        ):
            return False
        # Still the file that was checked (not swapped since it was opened)?
        if os.lstat(path).st_ino != st.st_ino:
            return False
        path.unlink()
    except OSError as exc:
        log.warning("leftover_not_removed", path=str(path), error=exc.strerror or str(exc))
        return False
    finally:
        os.close(fd)
    return True


def _try_lock(fd: int) -> bool:
    """Take an exclusive advisory lock on `fd` without waiting; False only when another
    process holds one. Where there are no such locks (Windows, some file systems), the
    age of a leftover alone tells that no pull writes it any more."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


# ------------------------------------------------------------------------------ the command


def select_mapping(config: Config, name: str | None, *, command: str = "pull") -> MappingConfig:
    """The mapping named `name`, or the only one; `command` takes exactly one."""
    if name:
        return config.select([name])[0]
    if len(config.mappings) == 1:
        return config.mappings[0]
    names = ", ".join(m.name for m in config.mappings)
    raise ConfigError(f"{command} takes one mapping: name the mapping, one of: {names}")
