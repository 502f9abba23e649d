"""File-system events → debounced dirty paths for the daemon. The only importer of watchdog.

Owns:

- `FolderWatcher`: one watchdog observer for one folder. It translates events into
  `Change`s (debounce.py; "this path may have changed; look soon": level-triggered sync),
  drops what the ignore rules exclude, and reports lost events (inotify queue overflow) as
  a request to rescan everything. A write that has ended — the file closed after writing
  (inotify's IN_CLOSE_WRITE) or renamed into place (IN_MOVED_TO: the safe save of vim,
  emacs, JetBrains and VS Code) — is a `done` change: complete, ready for upload at once.
- Choosing between native events and polling: polling on file systems where events from
  other machines never arrive (NFS, SMB, 9p/WSL, sshfs, vboxsf, other FUSE), and when the
  inotify limits are exhausted.
- Following what the kernel does not report under the folder's own paths: the scan follows
  symbolic links, also to directories outside the folder, but inotify watches only the real
  tree. `links.LinkMap` records where the scan meets each linked directory and file; their
  targets outside the folder are watched too, and every event is reported at each folder
  path the scan lists it under. Files with more than one name (hard links) are re-checked
  by a stat every two seconds (`FolderWatcher.poll`), since a write through another
  name produces no event here. What cannot be followed is listed in `not_followed`.

It must not talk to the server, decide what to upload or delete, run passes or start
threads of its own beyond the observer's (the daemon package does all that).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from jatos_sync.debounce import Change
from jatos_sync.errors import ConfigError
from jatos_sync.ignore import IgnoreRules
from jatos_sync.links import LinkMap, map_links, signature
from jatos_sync.model import RelPath

log = structlog.get_logger("jatos_sync.watch")

Mode = Literal["events", "polling"]

# File systems whose changes made elsewhere (the server of a share, the Windows side of
# WSL, the host of a VM) never reach this kernel's inotify: they are polled. `fuse.*`
# (sshfs, rclone, gvfs, …) counts as remote too; `fuseblk` is a local disk (ntfs-3g, exFAT)
# whose changes all pass through this kernel, so events work there.
POLLED_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "sshfs",
        "vboxsf",
        "drvfs",
        "virtiofs",
        "afs",
        "ncpfs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "prl_fs",
        "vmhgfs",
        "fuse",
    }
)

# Watch these only: reads (open, close without write) are what our own scans and uploads
# do, and a directory's "modified" merely repeats what its entries report.
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileAttribEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

RAISED_WATCH_LIMIT = 524288
RAISED_INSTANCE_LIMIT = 1024
_SYSCTL_FILE = "/etc/sysctl.d/90-jatos-sync.conf"


# --------------------------------------------------------------- events or polling


def read_proc(name: str, *, proc: Path = Path("/proc")) -> str | None:
    """The text of `/proc/<name>`, or None where there is no such file (macOS, Windows)."""
    try:
        return (proc / name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def fs_type_of(path: str, mountinfo: str) -> str | None:
    """The file-system type of the mount holding `path` (absolute, symlinks resolved),
    from the text of /proc/self/mountinfo (proc(5)); None if no mount matches."""
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount_point = _unescape_mount(fields[4])
        covers = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        # The longest mount point wins; on a tie the later line (mounted on top) wins.
        if covers and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), tail[0])
    return None if best is None else best[1]


def _unescape_mount(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash in mount points as \ooo octal.
    out, i = [], 0
    while i < len(text):
        octal = text[i + 1 : i + 4]
        if text[i] == "\\" and len(octal) == 3 and all(c in "01234567" for c in octal):
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def choose_mode(polling: str, fs_type: str | None) -> tuple[Mode, str]:
    """(mode, reason for polling or "") for the `watch.polling` setting and the file system."""
    if polling == "always":
        return "polling", "watch.polling is 'always'"
    if polling == "never" or fs_type is None:
        return "events", ""
    if fs_type in POLLED_FS_TYPES or (fs_type.startswith("fuse.") and fs_type != "fuseblk"):
        return "polling", (
            f"the folder is on a {fs_type} file system, where changes made on other machines "
            "produce no file-system events"
        )
    return "events", ""


def limit_advice(code: int, *, proc: Path = Path("/proc")) -> tuple[str, str]:
    """(reason, hint) for an inotify limit that was hit: ENOSPC (watches) or EMFILE."""
    if code == errno.EMFILE:
        key, raised, what = "max_user_instances", RAISED_INSTANCE_LIMIT, "instance"
    else:
        key, raised, what = "max_user_watches", RAISED_WATCH_LIMIT, "watch"
    current = (read_proc(f"sys/fs/inotify/{key}", proc=proc) or "").strip() or "unknown"
    reason = f"the inotify {what} limit (fs.inotify.{key} = {current}) is exhausted"
    hint = (
        f"raise it with `sudo sysctl fs.inotify.{key}={raised}`, and keep it after a reboot "
        f"with `echo fs.inotify.{key}={raised} | sudo tee {_SYSCTL_FILE}`; then restart "
        "jatos-sync to use file-system events again"
    )
    return reason, hint


# -------------------------------------------------------------------------- observers


class Observer(Protocol):
    """The part of a watchdog observer that FolderWatcher uses (a seam for tests)."""

    def schedule(
        self,
        event_handler: FileSystemEventHandler,
        path: str,
        *,
        recursive: bool,
        event_filter: list[type[FileSystemEvent]] | None,
    ) -> object: ...

    def unschedule(self, watch: object) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...


ObserverFactory = Callable[[Mode, float], Observer]


def default_observer_factory(mode: Mode, poll_interval_s: float) -> Observer:
    """watchdog's native observer for "events", its polling observer for "polling".

    The polling observer looks at entries with lstat, as inotify does: it does not walk
    through symbolic links (a link to an ancestor would have it walk in circles), and
    `FolderWatcher` follows links itself in both modes.
    """
    if mode == "polling":
        from watchdog.observers.polling import PollingObserverVFS

        return _WatchdogObserver(
            PollingObserverVFS(stat=os.lstat, listdir=os.scandir, polling_interval=poll_interval_s)
        )
    from watchdog.observers import Observer as NativeObserver

    native = NativeObserver()
    return _WatchdogObserver(native, probe_inotify=_is_inotify(native))


def _is_inotify(observer: object) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    from watchdog.observers.inotify import InotifyObserver

    return isinstance(observer, InotifyObserver)


class _WatchdogObserver:
    """A watchdog observer whose health includes its emitter threads, and which, on inotify,
    checks after starting that the watch limit was not hit.

    watchdog raises ENOSPC only when the folder itself cannot be watched; a subdirectory
    beyond the limit is skipped silently, and its changes would never be seen. When no
    watch is left after all were added, some may be missing: report ENOSPC then too.
    """

    def __init__(self, observer: BaseObserver, *, probe_inotify: bool = False) -> None:
        self._observer = observer
        self._probe = probe_inotify
        self._path = ""

    def schedule(
        self,
        event_handler: FileSystemEventHandler,
        path: str,
        *,
        recursive: bool,
        event_filter: list[type[FileSystemEvent]] | None,
    ) -> object:
        self._path = self._path or path
        watch = self._observer.schedule(
            event_handler, path, recursive=recursive, event_filter=event_filter
        )
        if self._probe and self._observer.is_alive() and _inotify_watches_exhausted(path):
            self._observer.unschedule(watch)  # a further folder scheduled on a running one
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return watch

    def unschedule(self, watch: object) -> None:
        with contextlib.suppress(KeyError):  # gone already (its emitter stopped)
            self._observer.unschedule(watch)  # type: ignore[arg-type]

    def start(self) -> None:
        self._observer.start()
        if self._probe and _inotify_watches_exhausted(self._path):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def stop(self) -> None:
        self._observer.stop()

    def join(self, timeout: float | None = None) -> None:
        self._observer.join(timeout)

    def is_alive(self) -> bool:
        return self._observer.is_alive() and all(e.is_alive() for e in self._observer.emitters)


def _inotify_watches_exhausted(path: str) -> bool:
    """Whether adding one more inotify watch fails with ENOSPC (Linux only)."""
    from watchdog.observers import inotify_c

    fd = inotify_c.inotify_init()
    if fd < 0:
        return False  # out of instances: our own observer already has one
    try:
        wd = inotify_c.inotify_add_watch(
            fd, os.fsencode(path), inotify_c.InotifyConstants.IN_DELETE_SELF
        )
        return wd < 0 and ctypes.get_errno() == errno.ENOSPC
    finally:
        os.close(fd)


class _OverflowTap(logging.Handler):
    """watchdog reports a kernel event-queue overflow only as a log record (it rebuilds its
    watches, but the events are lost). Turn that record into a rescan for every watcher
    using native events: one full pass each is the cure (sync tools that trusted their events
    lost edits after an overflow)."""

    LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._watchers: set[FolderWatcher] = set()
        self._members = threading.Lock()

    def add(self, watcher: FolderWatcher) -> None:
        with self._members:
            if not self._watchers:
                for name in self.LOGGERS:
                    logging.getLogger(name).addHandler(self)
            self._watchers.add(watcher)

    def discard(self, watcher: FolderWatcher) -> None:
        with self._members:
            self._watchers.discard(watcher)
            if not self._watchers:
                for name in self.LOGGERS:
                    logging.getLogger(name).removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        lowered = message.lower()
        if "overflow" not in lowered and "unable to rebuild" not in lowered:
            return
        with self._members:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.events_lost(message)


_tap_lock = threading.Lock()
_tap: _OverflowTap | None = None


def _overflow_tap() -> _OverflowTap:
    global _tap
    with _tap_lock:
        if _tap is None:
            _tap = _OverflowTap()
        return _tap


# ------------------------------------------------------------------------ the watcher


class FolderWatcher:
    """Watches one mapping folder and sends `Change`s to `sink` (from the observer's thread).

    Paths are made relative to the folder — each event at every folder path the scan lists
    it under (`LinkMap`) — and ignored ones (IgnoreRules, the same rules the scan uses,
    including JATOS's own temp names) are dropped. A change to the top-level `.jatosignore`
    or a PsychoPy `.psyexp` reloads the rules and is passed on, so the pass rebuilds its
    rules and rescans too. Moves become gone + touch; a directory created or moved in is a
    touch of the directory (its subtree is looked at); the folder itself being deleted is
    `folder_gone`. `poll()`, called by the worker every two seconds, follows new links
    and re-checks hard-linked files.
    """

    # A linked folder that could not be watched is tried again this often.
    RETRY_NOT_FOLLOWED_S = 30.0

    def __init__(
        self,
        folder: Path,
        *,
        name: str,
        sink: Callable[[Change], None],
        ignore: Sequence[str] = (),
        polling: str = "auto",
        poll_interval_s: float = 1.0,
        observer_factory: ObserverFactory = default_observer_factory,
        proc: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.name = name
        self.polling = polling
        self.poll_interval_s = poll_interval_s
        self.mode: Mode | None = None
        # Linked places that are not followed, in words, for the status.
        self.not_followed: tuple[str, ...] = ()
        self._sink = sink
        self._ignore = tuple(ignore)
        self._factory = observer_factory
        self._proc = proc
        self._clock = clock
        self._root = ""
        self._rules = IgnoreRules()
        self._observers: dict[Mode, Observer] = {}  # the folder's, and one for other targets
        self._targets: dict[tuple[str, bool], tuple[Mode, object]] = {}  # watched outside
        self._links = LinkMap(root="", dirs={})
        self._links_dirty = False
        self._retry_links_at = math.inf
        self._hard: dict[str, tuple[str, tuple[int, int, int, int] | None]] = {}
        self._hard_lock = threading.Lock()
        self._active = False
        self._handler = _Handler(self)

    def __repr__(self) -> str:
        return f"FolderWatcher({self.name!r}, mode={self.mode})"

    def start(self, *, follow_links: bool = True) -> Mode:
        """Start watching; return the mode. Raises OSError if the folder cannot be watched.

        Without `follow_links`, the targets of links are followed only once `follow_links`
        is given a map (the daemon's worker hands over each full scan's, which saves a
        second walk of the folder at start)."""
        self._root = os.path.realpath(self.folder)
        self._rules = self._load_rules()
        self._links = LinkMap(root=self._root, dirs={self._root: ("",)})
        mountinfo = read_proc("self/mountinfo", proc=self._proc)
        fs_type = fs_type_of(self._root, mountinfo) if mountinfo else None
        mode, reason = choose_mode(self.polling, fs_type)
        if reason and self.polling == "auto":
            log.warning("polling_fallback", mapping=self.name, reason=reason)
        # watchdog's inotify thread warns when a new directory is registered twice (by the
        # walk of its parent and by its own creation event, common in a rebuild). It is
        # harmless and would only put a long repr into the user's terminal.
        warnings.filterwarnings(
            "ignore", message="Callback with id .* already exists", category=RuntimeWarning
        )
        self._active = True
        if mode == "events":
            try:
                self._observers["events"] = self._start_observer("events")
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE) or self.polling == "never":
                    self._active = False
                    raise
                why, hint = limit_advice(exc.errno, proc=self._proc)
                log.warning("polling_fallback", mapping=self.name, reason=why, hint=hint)
                mode = "polling"
        if mode == "polling":
            try:
                self._observers["polling"] = self._start_observer("polling")
            except OSError:
                self._active = False
                raise
        else:
            _overflow_tap().add(self)
        self.mode = mode
        if follow_links:
            self._follow_links(announce=False)
        log.info("watch_started", mapping=self.name, folder=str(self.folder), mode=mode)
        return mode

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop the observers and wait (bounded) for their threads; idempotent."""
        self._active = False
        _overflow_tap().discard(self)
        observers, self._observers = list(self._observers.values()), {}
        self._targets.clear()
        for observer in observers:
            _halt(observer, timeout_s)

    def alive(self) -> bool:
        """Whether the observers (and their emitters) still run."""
        observers = list(self._observers.values())
        return bool(observers) and all(observer.is_alive() for observer in observers)

    def events_lost(self, reason: str) -> None:
        """The observer lost events (queue overflow): everything must be looked at."""
        if self._active:
            log.warning("watch_events_lost", mapping=self.name, reason=reason)
            self._links_dirty = True
            self._sink(Change("rescan"))

    def poll(self) -> None:
        """What no event tells, called by the worker every two seconds: follow links that
        were added, changed or removed, and re-check files with other names (a write through
        another name, even outside the folder, produces no event here); a change is a touch.
        """
        if not self._active:
            return
        if self._links_dirty or self._clock() >= self._retry_links_at:
            self._links_dirty = False
            self._follow_links(announce=True)
        with self._hard_lock:
            hard = list(self._hard.items())
        changed = []
        for rel, (path, before) in hard:
            now = signature(path)
            if now != before:
                changed.append(rel)
                with self._hard_lock:
                    if rel in self._hard:
                        self._hard[rel] = (path, now)
        for rel in changed:
            self._pass_on("touch", RelPath(rel), is_dir=False)

    def _start_observer(self, mode: Mode) -> Observer:
        observer = self._factory(mode, self.poll_interval_s)
        try:
            observer.schedule(self._handler, self._root, recursive=True, event_filter=EVENT_FILTER)
            observer.start()
        except BaseException:
            _halt(observer, 5.0)
            raise
        return observer

    def _observer_for(self, mode: Mode) -> Observer:
        observer = self._observers.get(mode)
        if observer is None:
            observer = self._factory(mode, self.poll_interval_s)
            try:
                observer.start()
            except BaseException:
                _halt(observer, 5.0)
                raise
            self._observers[mode] = observer
        return observer

    def follow_links(self, links: LinkMap) -> None:
        """Follow the links as a full scan found them (`LocalSnapshot.links`); each link
        not followed before is touched, so a pass looks at what arrived through it before
        its target was watched."""
        if self._active and links.root == self._root:
            self._follow_links(announce=True, links=links)

    def _follow_links(self, *, announce: bool, links: LinkMap | None = None) -> None:
        """Map the folder's links again (unless `links` is given), watch their targets
        outside the folder (each on a file system that needs polling, by polling), and stop
        watching the ones no longer linked. With `announce`, each newly followed link is
        touched, so a pass looks at what arrived through it before its target was watched."""
        links = links or map_links(self._root, self._rules)
        wanted = links.watch_roots()
        for key in [key for key in self._targets if key not in wanted.items()]:
            old_mode, old_watch = self._targets.pop(key)
            observer = self._observers.get(old_mode)
            if observer is not None:
                observer.unschedule(old_watch)
        mountinfo = read_proc("self/mountinfo", proc=self._proc) if wanted else None
        problems: list[str] = []
        for path, recursive in wanted.items():
            if (path, recursive) in self._targets:
                continue
            mode: Mode = "polling"
            if self.mode == "events":
                fs_type = fs_type_of(path, mountinfo) if mountinfo else None
                mode = choose_mode(self.polling, fs_type)[0]
            try:
                watch = self._observer_for(mode).schedule(
                    self._handler, path, recursive=recursive, event_filter=EVENT_FILTER
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
                for rel in links.leading_to(path):
                    problems.append(
                        f"{rel} -> {path}: cannot be watched ({reason}); its changes are "
                        "synced by the next full pass"
                    )
                continue
            self._targets[(path, recursive)] = (mode, watch)
        old = self._links
        self._links = links
        with self._hard_lock:
            known, self._hard = self._hard, {}
            for rel, path in links.hard.items():
                before = known.get(rel)
                same = before is not None and before[0] == path
                self._hard[rel] = before if same and before else (path, signature(path))
        if problems != list(self.not_followed):
            for problem in problems:
                log.warning("link_not_followed", mapping=self.name, problem=problem)
        self.not_followed = tuple(problems)
        self._retry_links_at = self._clock() + self.RETRY_NOT_FOLLOWED_S if problems else math.inf
        if announce:
            for rel in sorted(links.links - old.links):
                self._pass_on("touch", RelPath(rel), is_dir=True)

    def _load_rules(self) -> IgnoreRules:
        try:
            return IgnoreRules.for_folder(self.folder, self._ignore)
        except ConfigError:
            # The pass reports the broken .jatosignore; meanwhile filter only by the
            # built-ins. Passing more events than needed is always safe (level-triggered).
            return IgnoreRules()

    # ---------------------------------------------------------------- translation

    def on_event(self, event: FileSystemEvent) -> None:
        """Translate one watchdog event (called in an observer's thread)."""
        if not self._active:
            return
        try:
            self._translate(event)
        except Exception as exc:  # one odd event must not end the observer's thread
            log.warning("watch_event_failed", mapping=self.name, error=repr(exc))
            self._links_dirty = True
            self._sink(Change("rescan"))

    def _translate(self, event: FileSystemEvent) -> None:
        kind, is_dir = event.event_type, event.is_directory
        if kind == "moved":
            for src in self._relatives(event.src_path):
                if src.parts:
                    self._pass_on("gone", src, is_dir=is_dir)
                    self._forget(src)
            for dest in self._relatives(event.dest_path):
                if dest.parts:  # a file renamed into place is complete (an editor's save)
                    self._pass_on("touch" if is_dir else "done", dest, is_dir=is_dir)
            self._notice(event.dest_path, is_dir=is_dir)
            return
        for src in self._relatives(event.src_path):
            if not src.parts:
                if kind == "deleted":
                    self._sink(Change("folder_gone"))
            elif kind == "deleted":
                self._pass_on("gone", src, is_dir=is_dir)
                self._forget(src)
            elif kind == "closed" and not is_dir:  # closed after a write: complete
                self._pass_on("done", src, is_dir=False)
            elif kind == "created" or (not is_dir and kind in ("modified", "attrib")):
                self._pass_on("touch", src, is_dir=is_dir)
        if kind in ("created", "attrib"):
            self._notice(event.src_path, is_dir=is_dir)

    def _notice(self, raw: bytes | str, *, is_dir: bool) -> None:
        """A path appeared (or its metadata changed): a directory may hold links, a link is
        one; either makes `poll()` map the links again. A file with another name is
        re-checked from now on."""
        if is_dir:
            self._links_dirty = True
            return
        path = os.fsdecode(raw)
        try:
            st = os.lstat(path)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            self._links_dirty = True
        elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            for rel in self._relatives(path):
                if rel.parts and not self._rules.is_ignored(rel):
                    with self._hard_lock:
                        self._hard.setdefault(str(rel), (path, signature(path)))

    def _forget(self, rel: RelPath) -> None:
        """`rel` went away: a link there, or below it, no longer leads anywhere."""
        text = str(rel)
        below = text + "/"
        if any(link == text or link.startswith(below) for link in self._links.links):
            self._links_dirty = True
        with self._hard_lock:
            for known in [k for k in self._hard if k == text or k.startswith(below)]:
                del self._hard[known]

    def _pass_on(
        self, kind: Literal["touch", "done", "gone"], path: RelPath, *, is_dir: bool
    ) -> None:
        if self._rules.decides_rules(path):
            # `.jatosignore`, or a PsychoPy experiment at any depth: these decide the ignore
            # rules themselves (and may be ignored by them), so the pass must see them too.
            self._rules = self._load_rules()
            self._links_dirty = True  # links that were ignored may be followed now
        elif self._rules.is_ignored(path, is_dir=is_dir):
            return
        self._sink(Change(kind, path, is_dir=is_dir))

    def _relatives(self, raw: bytes | str) -> list[RelPath]:
        """The folder paths of the real path `raw` ("." for the folder itself); none for a
        path the scan does not reach."""
        if not raw:
            return []
        path = os.fsdecode(raw)
        rels = self._links.relatives(path)
        if os.sep != "/":
            rels = [rel.replace(os.sep, "/") for rel in rels]
        return [RelPath(rel) if rel else RelPath() for rel in rels]


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher.on_event(event)


def _halt(observer: Observer, timeout_s: float) -> None:
    observer.stop()
    with contextlib.suppress(RuntimeError):  # never started
        observer.join(timeout_s)
