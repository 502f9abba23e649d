"""One mapping followed by its own thread: watcher → debouncer → passes, paused and retried.

Every mapping runs in its own `MappingWorker` with its own MappingSync, Debouncer,
FolderWatcher and client, so a slow, locked or unreachable study never delays another. A
worker starts with a full reconcile, then turns file-system changes into quick passes that
send only the requests the changed paths need. It reconciles fully every
`watch.reconcile_interval` (not much more often: JATOS reads every file of the study to
answer a listing, docs/jatos-api.md §3.3), after lost events, when its folder comes back,
when its server comes back and on SIGHUP. A full pass also creates the study and brings
its definition in step when the mapping has `create:` or `definition:`; a quick pass never
touches the definition. Errors about the whole study or server pause that mapping, which is
retried with capped backoff (the daemon keeps running).

Owns `Timings` (the daemon's pacing), `backoff_s`, the `Inbox` from the watcher's thread
and the worker's loop. It must not decide what to sync (plan.py), parse HTTP (client.py),
import watchdog (watch.py), write the status file or talk to systemd (the supervisor does).
"""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from jatos_sync.client import JatosClient
from jatos_sync.config import MappingConfig, WatchConfig
from jatos_sync.daemon.status import MappingStatus
from jatos_sync.debounce import Batch, Change, Debouncer
from jatos_sync.errors import AuthError, ConfigError, InternalError, JatosSyncError, SafetyStop
from jatos_sync.ignore import IGNORE_FILE_NAME
from jatos_sync.model import RelPath
from jatos_sync.scan import check_folder
from jatos_sync.state import StateStore
from jatos_sync.sync import MappingResult, MappingSync
from jatos_sync.watch import FolderWatcher, Mode, ObserverFactory, default_observer_factory

log = structlog.get_logger("jatos_sync.daemon")


@dataclass(frozen=True)
class Timings:
    """How the daemon paces retries and checks. Production defaults; tests shorten them."""

    pause_base_s: float = 2.0  # first retry of a paused mapping; doubles each time
    pause_max_s: float = 300.0
    auth_recheck_s: float = 180.0  # a refused token is re-checked this often
    file_retry_base_s: float = 2.0  # a file that failed; doubles per failure
    file_retry_max_s: float = 300.0
    folder_check_s: float = 2.0  # is the folder still there, still the same one? (idle CPU)
    stop_timeout_s: float = 8.0  # SIGTERM: in-flight work is abandoned after this
    status_interval_s: float = 0.5  # the status file is written at most this often
    tick_s: float = 0.25  # the supervisor's loop
    # Before a quick pass replaces or deletes a server file not seen for this long, that
    # file is downloaded to check for a colleague's edit (one extra request; docs/safety.md,
    # rule 6).
    verify_after_s: float = 60.0
    # While every mapping is paused nothing syncs: said this often, loudly, until it changes.
    nothing_syncing_every_s: float = 60.0
    # Heap memory freed after full passes is handed back to the system when the daemon is
    # ready and then this often (glibc keeps it otherwise; RSS is what an admin sees).
    trim_every_s: float = 600.0


def backoff_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """`base_s`, doubled per earlier attempt (0, 1, 2, …), at most `max_s`."""
    return min(max_s, base_s * 2.0 ** min(attempt, 60))


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
        full_passes: threading.Semaphore | None = None,
    ) -> None:
        self.mapping = mapping
        # Shared by the daemon's workers: how many full passes run at once. Each reads a
        # whole listing and scans a whole folder; fifty at once only multiply the peak of
        # memory (which the process keeps) and contend for the same cores.
        self._full_passes = full_passes or threading.Semaphore(1)
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
        self._server_only = 0
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

    @property
    def died(self) -> bool:
        """Whether the thread ended without being asked to (the supervisor restarts it)."""
        started, stopping = self.thread.ident is not None, self._stop.is_set()
        return started and not stopping and not self.thread.is_alive()

    def _run(self) -> None:
        try:
            # The initial full pass is a rescan like any other: it waits until the folder
            # is quiet, so it does not run in the middle of a build.
            self._guarded(lambda: self._check_folder(self._clock()))
            while not self._stop.is_set():
                self._guarded(self._iteration)
        except BaseException as exc:  # e.g. SystemExit raised by a library
            # The thread ends; the supervisor notices and starts the mapping again.
            self._state = "stopped"
            self._last_error = f"the worker stopped: {InternalError.wrapping(exc)}"
            log.error("worker_stopped", mapping=self.mapping.name, error=self._last_error)
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

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step of the loop; an unexpected exception (a bug) pauses the mapping
        with "internal error: …" and it is retried with backoff, like any other pause
        (docs/safety.md, rule 13). The thread never ends because of it."""
        try:
            step()
        except Exception as exc:
            now = self._clock()
            error = InternalError.wrapping(exc)
            if self._last_error != str(error):
                log.error("worker_failed", mapping=self.mapping.name, error=str(error))
            log.debug("internal_error", mapping=self.mapping.name, exc_info=exc)
            self._debouncer.rescan(now)  # whatever was pending: a full look once it resumes
            self._pause(error, now)
            # A bug that strikes on every turn of the loop must not spin it.
            self._stop.wait(self._timings.folder_check_s)

    def _iteration(self) -> None:
        self._publish()
        changes = self._inbox.take(self._timeout_s(self._clock()))
        now = self._clock()
        for change in changes:
            self._note(change, now)
        if self._stop.is_set():
            return
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
        if change.kind in ("touch", "done") and change.path is not None:
            settled = change.kind == "done"  # a write that has ended: no quiet time to wait
            self._debouncer.touch(change.path, now, is_dir=change.is_dir, settled=settled)
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
                self._watcher.poll()  # new links, and files with other names
                return
            replaced = identity != self._watched
            self._watcher.stop()
            self._watched = None
            if identity is None:
                # Deleted, moved away or unmounted: never a reason to delete on the server
                # (docs/safety.md, rule 1). What was pending is moot; a full pass follows
                # its return.
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
            # Links are followed once the full pass that comes next has scanned them.
            mode = self._watcher.start(follow_links=False)
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

    def _take_full_pass_turn(self) -> bool:
        """Wait for a turn to run a full pass; False if the worker is stopped meanwhile."""
        while not self._full_passes.acquire(timeout=0.1):
            if self._stop.is_set():
                return False
        return True

    def _folder_missing(self) -> bool:
        return isinstance(self._paused, SafetyStop) and self._watched is None

    # --------------------------------------------------------------- passes

    def _pass(self, batch: Batch) -> None:
        self._state = "syncing"
        self._publish()
        started = self._clock()
        # A quick pass before the server's files are known is a full pass: it waits its turn.
        full = batch.full_local or not self._sync.remote_known
        if full:
            if not self._take_full_pass_turn():
                return  # stopping
            try:
                result = self._sync.full_pass(stop=self._stop)
            finally:
                self._full_passes.release()
        else:
            result = self._sync.quick_pass(batch.dirty, hold=batch.hold, stop=self._stop)
        done = self._clock()
        if result.error is not None:
            # Everything in the batch is looked at again by the full pass that ends the pause.
            self._debouncer.finish(batch, now=done, retry=dict.fromkeys(batch.dirty, done))
            self._pause(result.error, done)
            return
        self._debouncer.finish(batch, now=done, retry=self._retries(batch, result, done))
        if full:
            self._next_reconcile = done + self._watch.reconcile_interval_s
            links = self._sync.links
            if links is not None and self._watched is not None:
                self._watcher.follow_links(links)  # as the scan found them: no second walk
        if self._paused is not None:
            log.info("mapping_resumed", mapping=self.mapping.name)
            self._paused = None
            self._pause_attempts = 0
        self._state = "idle"
        self._last_sync = self._wall_clock()
        self._uploaded += len(result.uploaded)
        self._deleted += len(result.deleted)
        self._withheld = len(result.withheld) if result.withheld_reason else 0
        self._server_only = len(result.server_only)
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
            definition=len(result.definition),  # changes of the study itself (full passes)
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
            not_followed=self._watcher.not_followed if self._watched is not None else (),
            withheld=self._withheld,
            server_only=self._server_only,
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
    return result.definition_withheld or result.state_error


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
