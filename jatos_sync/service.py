"""`jatos-sync watch`: the daemon's lifecycle — mappings, signals, sd_notify, reload, status.

Every mapping runs in its own worker thread with its own MappingSync, Debouncer,
FolderWatcher and client, so a slow, locked or unreachable study never delays another. A
worker starts with a full reconcile, then turns file-system changes into quick passes that
send only the requests the changed paths need. It reconciles fully every
`watch.reconcile_interval` (not much more often: JATOS reads every file of the study to
answer a listing, JATOS_ASSETS_API.md §2.2), after lost events, when its folder comes back,
when its server comes back and on SIGHUP. Errors about the whole study or server pause
that mapping, which is retried with capped backoff (PRODUCT.md §5: the daemon keeps
running). The main thread supervises: it reloads the configuration, writes the status file,
talks to systemd and stops everything on SIGTERM/SIGINT within a bounded time.

It must not decide what to sync (plan.py), parse HTTP (client.py) or import watchdog
(watch.py). Signal handlers only set flags; all work happens in the loops.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from jatos_sync.check import warn_about_token, warn_before_connecting
from jatos_sync.client import JatosClient
from jatos_sync.config import Config, MappingConfig, Token, WatchConfig, load_config, load_token
from jatos_sync.errors import (
    EXIT_OK,
    AuthError,
    ConfigError,
    JatosSyncError,
    SafetyStop,
    ServerUnavailableError,
)
from jatos_sync.ignore import IGNORE_FILE_NAME
from jatos_sync.logs import redact
from jatos_sync.model import RelPath
from jatos_sync.notify import Heartbeat, Notifier, WatchdogPinger, summary_line
from jatos_sync.scan import check_folder
from jatos_sync.state import StateStore
from jatos_sync.sync import MappingResult, MappingSync
from jatos_sync.watch import (
    Batch,
    Change,
    Debouncer,
    FolderWatcher,
    Mode,
    ObserverFactory,
    default_observer_factory,
)

log = structlog.get_logger("jatos_sync.service")

ClientFactory = Callable[[Config, Token], JatosClient]


@dataclass(frozen=True)
class Timings:
    """How the daemon paces retries and checks. Production defaults; tests shorten them."""

    pause_base_s: float = 2.0  # first retry of a paused mapping; doubles each time
    pause_max_s: float = 300.0
    auth_recheck_s: float = 180.0  # a refused token is re-checked this often
    file_retry_base_s: float = 2.0  # a file that failed; doubles per failure
    file_retry_max_s: float = 300.0
    folder_check_s: float = 1.0  # is the folder still there, and still the same one?
    stop_timeout_s: float = 8.0  # SIGTERM: in-flight work is abandoned after this
    status_interval_s: float = 0.5  # the status file is written at most this often
    tick_s: float = 0.25  # the supervisor's loop
    # Before a quick pass replaces or deletes a server file not seen for this long, that
    # file is downloaded to check for a colleague's edit (one extra request; PRODUCT §7).
    verify_after_s: float = 60.0


def backoff_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """`base_s`, doubled per earlier attempt (0, 1, 2, …), at most `max_s`."""
    return min(max_s, base_s * 2.0 ** min(attempt, 60))


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class MappingStatus:
    """One mapping as the status file and `systemctl status` show it."""

    name: str
    study: str
    folder: str
    state: str = "starting"  # starting | syncing | idle | paused | stopped
    mode: Mode | None = None
    pending: int = 0
    oldest_pending_since: float | None = None  # on the daemon's clock
    last_sync: float | None = None  # wall-clock time of the last successful pass
    last_error: str | None = None
    failing: int = 0  # files that failed and wait for a retry
    withheld: int = 0  # deletions the deletion guard withheld
    uploaded: int = 0  # since the daemon started
    deleted: int = 0


# ----------------------------------------------------------------------------- worker


class Inbox:
    """Changes from the watcher's thread to the worker, and wake-ups from the supervisor."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Change] = []
        self._woken = False

    def put(self, change: Change) -> None:
        with self._cond:
            self._items.append(change)
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify()

    def take(self, timeout_s: float | None) -> list[Change]:
        """What arrived, waiting up to `timeout_s` (None: forever) for the first item."""
        with self._cond:
            if not self._items and not self._woken:
                self._cond.wait(timeout_s)
            items, self._items = self._items, []
            self._woken = False
        return items


class MappingWorker:
    """One mapping, followed in its own thread: watcher → debouncer → passes.

    The worker owns its client (its own keep-alive connections, so a slow study cannot
    hold up another's uploads) and closes it when it ends or is given a new one.
    """

    def __init__(
        self,
        mapping: MappingConfig,
        *,
        client: JatosClient,
        store: StateStore,
        watch: WatchConfig,
        concurrency: int = 4,
        observer_factory: ObserverFactory = default_observer_factory,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        timings: Timings = Timings(),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.mapping = mapping
        self._sync = MappingSync(
            mapping,
            client=client,
            store=store,
            concurrency=concurrency,
            verify_after_s=timings.verify_after_s,
            clock=clock,
        )
        self._watch = watch
        self._clock = clock
        self._wall_clock = wall_clock
        self._timings = timings
        self._on_change = on_change
        self._inbox = Inbox()
        self._debouncer = Debouncer(
            debounce_s=watch.debounce_s, delete_delay_s=watch.delete_delay_s
        )
        self._watcher = FolderWatcher(
            mapping.folder,
            name=mapping.name,
            sink=self._inbox.put,
            ignore=mapping.ignore,
            polling=watch.polling,
            poll_interval_s=watch.poll_interval_s,
            observer_factory=observer_factory,
        )
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"jatos-sync-{mapping.name}", daemon=True
        )
        self.first_pass_done = threading.Event()  # the initial pass ran, or the mapping paused
        # Requests from other threads, taken by the worker between passes.
        self._requests = threading.Lock()
        self._next_client: JatosClient | None = None
        self._rescan_requested = False
        # The worker thread's own state.
        self._watched: tuple[int, int] | None = None  # (device, inode) of the watched folder
        self._watch_failures = 0
        self._paused: JatosSyncError | None = None
        self._pause_attempts = 0
        self._retry_at = 0.0
        self._next_reconcile = math.inf
        self._next_check = 0.0
        self._file_failures: dict[RelPath, int] = {}
        self._state = "starting"
        self._last_sync: float | None = None
        self._last_error: str | None = None
        self._withheld = 0
        self._uploaded = 0
        self._deleted = 0
        self.status = MappingStatus(mapping.name, mapping.study, str(mapping.folder))

    def __repr__(self) -> str:
        return f"MappingWorker({self.mapping.name!r})"

    # ------------------------------------------------------------ for the supervisor

    def start(self) -> None:
        self.thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._inbox.wake()

    def join(self, timeout_s: float | None = None) -> None:
        self.thread.join(timeout_s)

    def request_rescan(self) -> None:
        """Reconcile fully soon (SIGHUP); a paused mapping is retried at once."""
        with self._requests:
            self._rescan_requested = True
        self._inbox.wake()

    def use_client(self, client: JatosClient) -> None:
        """Switch to `client` (a new token) before the next pass."""
        with self._requests:
            unused, self._next_client = self._next_client, client
        if unused is not None:
            unused.close()
        self._inbox.wake()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must not end this mapping's syncing silently
            log.exception("worker_failed", mapping=self.mapping.name)
            self._last_error = f"internal error: {exc!r}"
        finally:
            self._watcher.stop()
            self._sync.client.close()
            with self._requests:
                unused, self._next_client = self._next_client, None
            if unused is not None:
                unused.close()
            self._state = "stopped"
            self.first_pass_done.set()
            self._publish()

    def _loop(self) -> None:
        # The initial full pass is a rescan like any other: it waits until the folder is
        # quiet, so it does not run in the middle of a build.
        self._check_folder(self._clock())
        while not self._stop.is_set():
            self._publish()
            changes = self._inbox.take(self._timeout_s(self._clock()))
            now = self._clock()
            for change in changes:
                self._note(change, now)
            if self._stop.is_set():
                break
            self._take_requests(now)
            if now >= self._next_check:
                self._check_folder(now)
            self._step(now)

    def _timeout_s(self, now: float) -> float:
        deadlines = [self._next_check]
        if self._paused is None:
            deadlines += [self._next_reconcile, self._debouncer.next_deadline() or math.inf]
        elif now < self._retry_at:
            deadlines.append(self._retry_at)
        else:
            deadlines.append(self._debouncer.next_deadline(full_only=True) or math.inf)
        return max(0.0, min(deadlines) - now)

    def _note(self, change: Change, now: float) -> None:
        if change.kind == "touch" and change.path is not None:
            self._debouncer.touch(change.path, now, is_dir=change.is_dir)
        elif change.kind == "gone" and change.path is not None:
            self._debouncer.gone(change.path, now)
        elif change.kind == "rescan":
            self._debouncer.rescan(now)
        elif change.kind == "folder_gone":
            self._next_check = now
        if (
            isinstance(self._paused, ConfigError)
            and change.path is not None
            and change.path.name == IGNORE_FILE_NAME
        ):
            # Paused by a broken .jatosignore: this edit may be the fix, try again.
            self._retry_at = min(self._retry_at, now)

    def _take_requests(self, now: float) -> None:
        with self._requests:
            client, self._next_client = self._next_client, None
            rescan, self._rescan_requested = self._rescan_requested, False
        if client is not None:
            self._sync.client.close()
            self._sync.client = client
        if rescan or client is not None:
            self._debouncer.rescan(now)
            if self._paused is not None and not self._folder_missing():
                self._retry_at = now

    def _step(self, now: float) -> None:
        if self._paused is not None:
            if now < self._retry_at:
                return
            self._debouncer.rescan(now)
            batch = self._debouncer.due(now, full_only=True)
        else:
            if now >= self._next_reconcile:
                self._next_reconcile = math.inf
                self._debouncer.rescan(now)
            batch = self._debouncer.due(now)
        if batch:
            self._pass(batch)

    # ------------------------------------------------------------- the folder

    def _check_folder(self, now: float) -> None:
        """Start, keep or restart the watcher, following the folder itself."""
        self._next_check = now + self._timings.folder_check_s
        identity = _identity(self.mapping.folder)
        if self._watched is not None:
            if identity == self._watched and self._watcher.alive():
                return
            replaced = identity != self._watched
            self._watcher.stop()
            self._watched = None
            if identity is None:
                # Deleted, moved away or unmounted: never a reason to delete on the server
                # (PRODUCT.md §7). What was pending is moot; a full pass follows its return.
                self._debouncer.reset()
                self._pause(_folder_problem(self.mapping.folder), now)
                return
            reason = "the folder was replaced" if replaced else "the watcher stopped"
            log.warning("watch_restarting", mapping=self.mapping.name, reason=reason)
        if identity is None:
            if not self._folder_missing():
                self._pause(_folder_problem(self.mapping.folder), now)
            return
        if self._folder_missing():
            self._retry_at = now  # it is back
        try:
            mode = self._watcher.start()
        except OSError as exc:
            delay_s = backoff_s(
                self._watch_failures,
                base_s=self._timings.pause_base_s,
                max_s=self._timings.pause_max_s,
            )
            self._watch_failures += 1
            self._next_check = now + delay_s
            log.error("watch_failed", mapping=self.mapping.name, error=str(exc), retry_in_s=delay_s)
            self._last_error = f"cannot watch {self.mapping.folder}: {exc}"
            self._debouncer.rescan(now)  # without events, sync by full passes meanwhile
            return
        self._watch_failures = 0
        self._watched = identity
        self._use_mode(mode)
        self._debouncer.rescan(now)

    def _use_mode(self, mode: Mode) -> None:
        # A poll sees a change only at its next interval, and a file is settled only when
        # the poll after that shows nothing new: both delays grow by one interval.
        extra_s = self._watch.poll_interval_s if mode == "polling" else 0.0
        self._debouncer.debounce_s = self._watch.debounce_s + extra_s
        self._debouncer.delete_delay_s = self._watch.delete_delay_s + extra_s

    def _folder_missing(self) -> bool:
        return isinstance(self._paused, SafetyStop) and self._watched is None

    # --------------------------------------------------------------- passes

    def _pass(self, batch: Batch) -> None:
        self._state = "syncing"
        self._publish()
        started = self._clock()
        if batch.full_local:
            result = self._sync.full_pass(stop=self._stop)
        else:
            result = self._sync.quick_pass(batch.dirty, hold=batch.hold, stop=self._stop)
        done = self._clock()
        if result.error is not None:
            # Everything in the batch is looked at again by the full pass that ends the pause.
            self._debouncer.finish(batch, now=done, retry=dict.fromkeys(batch.dirty, done))
            self._pause(result.error, done)
            return
        self._debouncer.finish(batch, now=done, retry=self._retries(batch, result, done))
        if batch.full_local:
            self._next_reconcile = done + self._watch.reconcile_interval_s
        if self._paused is not None:
            log.info("mapping_resumed", mapping=self.mapping.name)
            self._paused = None
            self._pause_attempts = 0
        self._state = "idle"
        self._last_sync = self._wall_clock()
        self._uploaded += len(result.uploaded)
        self._deleted += len(result.deleted)
        self._withheld = len(result.withheld) if result.withheld_reason else 0
        self._last_error = _problem(result)
        self.first_pass_done.set()
        busy = result.uploaded or result.deleted or result.failed or batch.full_local
        (log.info if busy else log.debug)(
            "pass_done",
            mapping=self.mapping.name,
            full=batch.full_local,
            uploaded=len(result.uploaded),
            deleted=len(result.deleted),
            failed=len(result.failed),
            elapsed_s=round(done - started, 3),
        )

    def _retries(self, batch: Batch, result: MappingResult, now: float) -> dict[RelPath, float]:
        """Failed files, and deletions held back because an upload failed: try again later,
        each with its own growing delay."""
        again = [p.path for p in result.failed]
        if not result.withheld_reason:
            again += result.withheld
        retry: dict[RelPath, float] = {}
        for path in again:
            attempt = self._file_failures.get(path, 0)
            self._file_failures[path] = attempt + 1
            retry[path] = now + backoff_s(
                attempt,
                base_s=self._timings.file_retry_base_s,
                max_s=self._timings.file_retry_max_s,
            )
        for path in batch.dirty | set(result.uploaded) | set(result.deleted):
            if path not in retry:
                self._file_failures.pop(path, None)
        return retry

    def _pause(self, error: JatosSyncError, now: float) -> None:
        reason = str(error)
        if isinstance(error, SafetyStop) and self._watched is None:
            delay_s = math.inf  # the folder check resumes the mapping once the folder is back
        elif isinstance(error, AuthError):
            delay_s = self._timings.auth_recheck_s
        else:
            delay_s = backoff_s(
                self._pause_attempts,
                base_s=self._timings.pause_base_s,
                max_s=self._timings.pause_max_s,
            )
            self._pause_attempts += 1
        if self._paused is None or str(self._paused) != reason:
            log.warning(
                "mapping_paused",
                mapping=self.mapping.name,
                reason=reason,
                retry_in_s=None if math.isinf(delay_s) else round(delay_s, 1),
            )
        self._paused = error
        self._retry_at = now + delay_s
        self._state = "paused"
        self._last_error = reason
        self.first_pass_done.set()

    def _publish(self) -> None:
        status = MappingStatus(
            name=self.mapping.name,
            study=self.mapping.study,
            folder=str(self.mapping.folder),
            state=self._state,
            mode=self._watcher.mode if self._watched is not None else None,
            pending=self._debouncer.pending(),
            oldest_pending_since=self._debouncer.oldest_pending_since(),
            last_sync=self._last_sync,
            last_error=self._last_error,
            failing=len(self._file_failures),
            withheld=self._withheld,
            uploaded=self._uploaded,
            deleted=self._deleted,
        )
        if status != self.status:
            self.status = status
            self._on_change()


def _problem(result: MappingResult) -> str | None:
    """What the status shows as the last error of a pass that ran."""
    if result.failed:
        first = result.failed[0]
        reason = (
            first.reason
            if first.reason.startswith(str(first.path))
            else (f"{first.path}: {first.reason}")
        )
        more = f" (and {len(result.failed) - 1} more files)" if len(result.failed) > 1 else ""
        return reason + more
    if result.withheld_reason:
        return f"{len(result.withheld)} deletions withheld: {result.withheld_reason}"
    return result.state_error


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _folder_problem(folder: Path) -> SafetyStop:
    try:
        check_folder(folder)
    except SafetyStop as exc:
        return exc
    return SafetyStop(f"The mapping folder {folder} is not there; nothing was changed.")


# ------------------------------------------------------------------------- the daemon


class Daemon:
    """All mappings of one configuration, supervised from the thread that calls `run()`.

    `request_stop()` and `request_reload()` only set flags, so signal handlers may call
    them; the supervisor loop acts on them within one tick.
    """

    def __init__(
        self,
        config: Config,
        *,
        token: Token,
        client_factory: ClientFactory,
        names: Sequence[str] = (),
        environ: Mapping[str, str] = os.environ,
        observer_factory: ObserverFactory = default_observer_factory,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        timings: Timings = Timings(),
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self._names = tuple(names)
        self._token = token
        self._client_factory = client_factory
        self._environ = environ
        self._observer_factory = observer_factory
        self._clock = clock
        self._wall_clock = wall_clock
        self._timings = timings
        self._notifier = notifier if notifier is not None else Notifier(environ, clock=clock)
        self._store = StateStore(config.state_dir)
        self.workers: dict[str, MappingWorker] = {}
        self._stop_requested = False
        self._reload_requested = False
        self._ready = False  # systemd was told READY=1 (after every mapping's first pass)
        self._changed = threading.Event()
        self._started_at = wall_clock()
        self._last_status_write = -math.inf
        self._status_warned = False

    def request_stop(self) -> None:
        self._stop_requested = True

    def request_reload(self) -> None:
        self._reload_requested = True

    def run(self, stop: threading.Event | None = None) -> None:
        """Start every mapping and supervise until a stop is requested (or `stop` is set)."""
        stop = stop or threading.Event()
        heartbeat = Heartbeat(
            max_age_s=self._notifier.watchdog_interval_s() or 30.0, clock=self._clock
        )
        pinger_stop = threading.Event()
        pinger = WatchdogPinger(self._notifier, healthy=heartbeat, stop=pinger_stop)
        previous = read_status(self._store)
        if previous is not None and previous.get("pid") != os.getpid():
            log.warning(
                "another_daemon_running",
                pid=previous.get("pid"),
                hint="two daemons for the same mappings upload everything twice; stop one",
            )
        for mapping in self.config.select(self._names):
            self._start_worker(mapping)
        log.info("watch_running", mappings=len(self.workers), pid=os.getpid())
        pinger.start()
        try:
            while not (self._stop_requested or stop.is_set()):
                heartbeat.beat()
                if self._reload_requested:
                    self._reload_requested = False
                    self._reload()
                if not self._ready and all(
                    w.first_pass_done.is_set() for w in self.workers.values()
                ):
                    self._ready = True
                    self._notifier.ready(self._summary())
                    log.info("watch_ready", mappings=len(self.workers))
                self._write_status()
                stop.wait(self._timings.tick_s)
        finally:
            self._notifier.stopping()
            log.info("watch_stopping", mappings=len(self.workers))
            self._stop_workers(list(self.workers.values()))
            self._write_status(final=True)
            pinger_stop.set()
            pinger.join(self._timings.stop_timeout_s)
            self._notifier.close()
            log.info("watch_stopped")

    # -------------------------------------------------------------- workers

    def _start_worker(self, mapping: MappingConfig) -> None:
        worker = MappingWorker(
            mapping,
            client=self._client_factory(self.config, self._token),
            store=self._store,
            watch=self.config.watch,
            concurrency=self.config.server.concurrency,
            observer_factory=self._observer_factory,
            clock=self._clock,
            wall_clock=self._wall_clock,
            timings=self._timings,
            on_change=self._changed.set,
        )
        self.workers[mapping.name] = worker
        worker.start()

    def _stop_workers(self, workers: list[MappingWorker]) -> None:
        """Stop `workers` together; wait at most `stop_timeout_s` for all of them."""
        for worker in workers:
            worker.request_stop()
        deadline = self._clock() + self._timings.stop_timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - self._clock()))
            if worker.thread.is_alive():
                log.warning("worker_abandoned", mapping=worker.mapping.name)

    def _reload(self) -> None:
        """SIGHUP: read the configuration again; keep what did not change."""
        if self._ready:  # before the first READY=1, systemd still waits for that one
            self._notifier.reloading()
        try:
            config = load_config(self.config.path)
            mappings = config.select(self._names)
            token = load_token(config.server, environ=self._environ)
        except ConfigError as exc:
            log.error("config_reload_failed", message=str(exc), hint="the old one stays in use")
        else:
            self._apply(config, mappings, token)
        if self._ready:
            self._notifier.ready(self._summary())

    def _apply(self, config: Config, mappings: Sequence[MappingConfig], token: Token) -> None:
        """Switch to a new, valid configuration."""
        old = self.config
        restart_all = (
            config.server != old.server
            or config.state_dir != old.state_dir
            or config.watch != old.watch
        )
        new_token = token != self._token
        self._token = token
        if config.state_dir != old.state_dir:
            self._write_status(final=True)  # no daemon runs on the old state directory
            self._store = StateStore(config.state_dir)
        wanted = {m.name: m for m in mappings}
        leaving = [
            worker
            for name, worker in self.workers.items()
            if restart_all or name not in wanted or not _same(worker.mapping, wanted[name])
        ]
        self._stop_workers(leaving)
        for worker in leaving:
            del self.workers[worker.mapping.name]
        kept = list(self.workers)
        for worker in self.workers.values():
            if new_token:
                worker.use_client(self._client_factory(config, token))
            worker.request_rescan()
        self.config = config
        starting = [m for m in mappings if m.name not in self.workers]
        for mapping in starting:
            self._start_worker(mapping)
        log.info(
            "config_reloaded",
            kept=kept,
            restarted=[w.mapping.name for w in leaving if w.mapping.name in wanted],
            started=[m.name for m in starting if m.name not in {w.mapping.name for w in leaving}],
            stopped=[w.mapping.name for w in leaving if w.mapping.name not in wanted],
            new_token=new_token,
        )
        self._changed.set()

    # -------------------------------------------------------------- status

    def _write_status(self, *, final: bool = False) -> None:
        now = self._clock()
        if not final and (
            not self._changed.is_set()
            or now - self._last_status_write < self._timings.status_interval_s
        ):
            return
        self._changed.clear()
        self._last_status_write = now
        document = self._status_document(final=final)
        try:
            _write_json(self._store.status_path(), document)
        except OSError as exc:
            if not self._status_warned:
                self._status_warned = True
                log.warning(
                    "status_not_written", path=str(self._store.status_path()), error=str(exc)
                )
        if not final:
            self._notifier.status(self._summary())

    def _status_document(self, *, final: bool = False) -> dict[str, Any]:
        """What the status file holds (ages as of now; `read_status` refreshes them)."""
        now, wall = self._clock(), self._wall_clock()
        mappings = []
        for worker in self.workers.values():
            s = worker.status
            since = (
                None if s.oldest_pending_since is None else wall - (now - s.oldest_pending_since)
            )
            mappings.append(
                {
                    "name": s.name,
                    "study": s.study,
                    "folder": s.folder,
                    "state": "stopped" if final else s.state,
                    "mode": s.mode,
                    "pending": s.pending,
                    "oldest_pending_since": _iso(since),
                    "oldest_pending_age_s": None if since is None else round(wall - since, 3),
                    "last_sync": _iso(s.last_sync),
                    "last_sync_age_s": None
                    if s.last_sync is None
                    else round(wall - s.last_sync, 3),
                    "last_error": None if s.last_error is None else redact(s.last_error),
                    "failing": s.failing,
                    "withheld": s.withheld,
                    "uploaded": s.uploaded,
                    "deleted": s.deleted,
                }
            )
        return {
            "pid": os.getpid(),
            "state": "stopped" if final else "running",
            "config": str(self.config.path),
            "started_at": _iso(self._started_at),
            "updated_at": _iso(wall),
            "mappings": mappings,
        }

    def _summary(self) -> str:
        statuses = [w.status for w in self.workers.values()]
        syncs = [s.last_sync for s in statuses if s.last_sync is not None]
        return summary_line(
            mappings=len(statuses),
            pending=sum(s.pending for s in statuses),
            paused=sum(s.state == "paused" for s in statuses),
            last_sync_age_s=self._wall_clock() - max(syncs) if syncs else None,
            errors=sum(s.failing for s in statuses),
        )


def _same(a: MappingConfig, b: MappingConfig) -> bool:
    """The same mapping, wherever it stands in the file."""
    return dataclasses.replace(a, line=0) == dataclasses.replace(b, line=0)


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")


def _write_json(path: Path, document: dict[str, Any]) -> None:
    # Atomic (rename), not durable: a status file lost in a crash is simply rewritten, and
    # an fsync twice a second would wear an SD card for nothing.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(document, stream, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_status(
    store: StateStore, *, now: Callable[[], float] = time.time
) -> dict[str, Any] | None:
    """The status a running daemon keeps in `store`, with ages as of `now`; None when no
    daemon is running (no file, a damaged one, a clean stop, or its process is gone)."""
    try:
        data = json.loads(store.status_path().read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("state") != "running":
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not _pid_alive(pid):
        return None
    wall = now()
    for mapping in data.get("mappings") or []:
        if isinstance(mapping, dict):
            mapping["oldest_pending_age_s"] = _age_s(mapping.get("oldest_pending_since"), wall)
            mapping["last_sync_age_s"] = _age_s(mapping.get("last_sync"), wall)
    return data


def _age_s(stamp: object, wall: float) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return round(wall - datetime.fromisoformat(stamp).timestamp(), 3)
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name != "posix":
        return True  # no cheap, safe check on Windows (os.kill would signal the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, run by another user
    return True


# ---------------------------------------------------------------------------- entry point


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`watch [MAPPING ...]`."""
    parser.add_argument(
        "mappings", nargs="*", metavar="MAPPING", help="mappings to follow (default: all)"
    )


def run(
    args: argparse.Namespace,
    *,
    config_path: Path,
    environ: Mapping[str, str],
    client_factory: ClientFactory,
    stop: threading.Event | None = None,
    observer_factory: ObserverFactory = default_observer_factory,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """`jatos-sync watch`: run until SIGTERM/SIGINT (or `stop`); return the exit code.

    Raises `ConfigError` (exit 2) when the configuration or token source is unusable, and the
    client's error (exit 3 for a rejected token) when the server refuses the token before
    anything ran. Later problems pause mappings instead.
    """
    config = load_config(config_path.absolute())
    names = tuple(args.mappings)
    config.select(names)
    token = load_token(config.server, environ=environ)
    warn_before_connecting(config.server.url)
    with client_factory(config, token) as client:
        try:
            warn_about_token(client.token_info())
        except ServerUnavailableError as exc:
            # A server down at boot is normal for a service: the mappings wait for it.
            log.warning("server_unreachable", error=str(exc), hint="mappings are retried")
    daemon = Daemon(
        config,
        token=token,
        client_factory=client_factory,
        names=names,
        environ=environ,
        observer_factory=observer_factory,
        clock=clock,
    )
    with _signal_handlers(daemon):
        daemon.run(stop)
    return EXIT_OK


@contextlib.contextmanager
def _signal_handlers(daemon: Daemon) -> Iterator[None]:
    """SIGTERM/SIGINT stop, SIGHUP reloads — only in the main thread (Python allows
    handlers nowhere else); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: FrameType | None) -> None:
        daemon.request_stop()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        daemon.request_reload()

    wanted = {signal.SIGTERM: stop, signal.SIGINT: stop}
    if hasattr(signal, "SIGHUP"):
        wanted[signal.SIGHUP] = reload
    previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
