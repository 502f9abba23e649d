"""`jatos-sync watch`: the supervisor of the mapping workers, and the command's entry.

The main thread runs `Daemon.run`: it starts one `MappingWorker` per mapping (and a
`ResultsWorker` beside it for a mapping with `results:`), reloads the configuration on
SIGHUP (unchanged mappings keep running), writes the status file, talks to systemd (READY,
STATUS, RELOADING, STOPPING and the watchdog) and stops everything on SIGTERM/SIGINT within
a bounded time. `run` is the entry used by the CLI: it loads the configuration and token,
checks the token once, and then supervises until stopped.

It must not decide what to sync (plan.py), parse HTTP (client.py) or import watchdog
(watch.py). Signal handlers only set flags; all work happens in the loops.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

import structlog

from jatos_sync.check import warn_about_token, warn_before_connecting
from jatos_sync.client import JatosClient
from jatos_sync.config import Config, MappingConfig, load_config
from jatos_sync.credentials import Token, load_token
from jatos_sync.daemon.locks import MappingLocks
from jatos_sync.daemon.results_worker import ResultsWorker
from jatos_sync.daemon.status import remove_stale_status, status_document, summary, write_status
from jatos_sync.daemon.worker import MappingWorker, Timings, backoff_s
from jatos_sync.errors import EXIT_OK, ConfigError, InternalError, ServerUnavailableError
from jatos_sync.logs import redact
from jatos_sync.notify import Heartbeat, Notifier, WatchdogPinger
from jatos_sync.state import StateStore, mapping_key
from jatos_sync.sync import check_distinct_studies
from jatos_sync.watch import ObserverFactory, default_observer_factory

log = structlog.get_logger("jatos_sync.daemon")

ClientFactory = Callable[[Config, Token], JatosClient]


# Full passes of different mappings that run at once (the rest wait their turn). Each lists
# a study and scans a folder: with a few at once the server and the disk are kept busy,
# while fifty at once would only raise the peak of memory, which the process then keeps.
FULL_PASSES_AT_ONCE = 4


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
        self._locks = MappingLocks(self._store.root)
        # This daemon's status file: its pid, and a tag for daemons sharing a process (tests).
        self._status_name = f"{os.getpid()}-{os.urandom(3).hex()}"
        self._nothing_said_at: float | None = None  # when "nothing is syncing" was said
        self.workers: dict[str, MappingWorker] = {}
        self._full_passes = threading.Semaphore(FULL_PASSES_AT_ONCE)
        # The results mirror of each mapping with `results:`: a thread of its own, started
        # and stopped with its mapping, never pausing or paused by the file sync.
        self.results_workers: dict[str, ResultsWorker] = {}
        self._stop_requested = False
        self._reload_requested = False
        self._ready = False  # systemd was told READY=1 (after every mapping's first pass)
        self._trimmed_at = -math.inf  # when freed memory was last handed back
        self._changed = threading.Event()
        self._started_at = wall_clock()
        self._last_status_write = -math.inf
        self._status_warned = False
        # Workers whose thread ended on its own, by (kind, mapping name): when each is started
        # again, and how often it was (for the backoff; forgotten once it is idle again).
        self._restart_at: dict[tuple[str, str], float] = {}
        self._restarts: dict[tuple[str, str], int] = {}

    def request_stop(self) -> None:
        self._stop_requested = True

    def request_reload(self) -> None:
        self._reload_requested = True

    def workers_alive(self) -> bool:
        """Whether every mapping's worker thread runs (none died and awaits a restart)."""
        return not any(worker.died for worker in list(self.workers.values())) and not any(
            worker.died for worker in list(self.results_workers.values())
        )

    def run(self, stop: threading.Event | None = None) -> None:
        """Start every mapping and supervise until a stop is requested (or `stop` is set)."""
        stop = stop or threading.Event()
        heartbeat = Heartbeat(
            max_age_s=self._notifier.watchdog_interval_s() or 30.0, clock=self._clock
        )
        pinger_stop = threading.Event()
        # systemd hears WATCHDOG=1 only while this loop turns and every worker thread runs.
        pinger = WatchdogPinger(
            self._notifier,
            healthy=lambda: heartbeat() and self.workers_alive(),
            stop=pinger_stop,
        )
        selected = self.config.select(self._names)
        try:  # a second daemon on these mappings is refused (exit 2)
            for mapping in selected:
                self._locks.claim(self._key(mapping), name=mapping.name)
        except BaseException:
            self._locks.release_all()
            raise
        remove_stale_status(self._store)
        for mapping in selected:
            self._start_worker(mapping)
        log.info("watch_running", mappings=len(self.workers), pid=os.getpid())
        pinger.start()
        try:
            while not (self._stop_requested or stop.is_set()):
                heartbeat.beat()
                if self._reload_requested:
                    self._reload_requested = False
                    self._reload()
                self._tend_workers()
                self._say_if_nothing_syncs()
                if not self._ready and all(
                    w.first_pass_done.is_set() for w in self.workers.values()
                ):
                    self._ready = True
                    self._trim_memory()  # the first passes' peak is over
                    self._notifier.ready(self._summary())
                    log.info("watch_ready", mappings=len(self.workers))
                elif self._ready and self._clock() - self._trimmed_at >= self._timings.trim_every_s:
                    self._trim_memory()
                self._write_status()
                stop.wait(self._timings.tick_s)
        finally:
            self._notifier.stopping()
            log.info("watch_stopping", mappings=len(self.workers))
            self._stop_workers(list(self.workers.values()))
            self._write_status(final=True)
            self._locks.release_all()
            pinger_stop.set()
            pinger.join(self._timings.stop_timeout_s)
            self._notifier.close()
            log.info("watch_stopped")

    def _trim_memory(self) -> None:
        self._trimmed_at = self._clock()
        release_free_memory()

    def _say_if_nothing_syncs(self) -> None:
        """Every mapping paused (a missing folder, a refused token …): the daemon runs but
        does nothing. Say so, with each reason and how to fix it, now and then again every
        `nothing_syncing_every_s`, until one mapping syncs (docs/safety.md, rule 13)."""
        statuses = [w.status for w in self.workers.values()]
        if not statuses or any(s.state != "paused" for s in statuses):
            self._nothing_said_at = None
            return
        now = self._clock()
        if self._nothing_said_at is not None and (
            now - self._nothing_said_at < self._timings.nothing_syncing_every_s
        ):
            return
        self._nothing_said_at = now
        reasons = "; ".join(f"{s.name}: {s.last_error}" for s in statuses)
        log.error(
            "nothing_syncing",
            reasons=redact(reasons),
            hint="fix what each mapping says; the daemon retries by itself",
        )
        self._changed.set()

    # -------------------------------------------------------------- workers

    def _key(self, mapping: MappingConfig) -> str:
        return mapping_key(self.config.server.url, mapping.study, mapping.folder)

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
            full_passes=self._full_passes,
        )
        self.workers[mapping.name] = worker
        worker.start()
        # A mapping worker restarted after its thread died keeps its results worker.
        if mapping.results is not None and mapping.name not in self.results_workers:
            self._start_results(mapping)

    def _start_results(self, mapping: MappingConfig) -> None:
        results = ResultsWorker(
            mapping,
            client=self._client_factory(self.config, self._token),
            synced=[(m.name, m.folder) for m in self.config.mappings],
            state_root=self._store.root,
            clock=self._clock,
            wall_clock=self._wall_clock,
            timings=self._timings,
            on_change=self._changed.set,
        )
        self.results_workers[mapping.name] = results
        results.start()

    def _tend_workers(self) -> None:
        """Notice a worker thread (a mapping's, or its results worker's) that ended without
        being asked to, say so, and start it again after a backoff (docs/safety.md, rule 13)."""
        for key in [k for k in self._restart_at if k[1] not in self.workers]:
            del self._restart_at[key]  # the mapping left with a reload
        self._tend("", self.workers, self._start_worker)
        self._tend("results_", self.results_workers, self._start_results)

    def _tend(
        self,
        kind: str,
        workers: Mapping[str, MappingWorker | ResultsWorker],
        start: Callable[[MappingConfig], None],
    ) -> None:
        """`kind` tells the two apart in the restart counts and prefixes the events."""
        now = self._clock()
        for name, worker in list(workers.items()):
            key = (kind, name)
            if not worker.died:
                if worker.status.state == "idle":
                    self._restarts.pop(key, None)
                continue
            if key not in self._restart_at:
                delay_s = backoff_s(
                    self._restarts.get(key, 0),
                    base_s=self._timings.pause_base_s,
                    max_s=self._timings.pause_max_s,
                )
                self._restart_at[key] = now + delay_s
                log.error(
                    f"{kind}worker_died",
                    mapping=name,
                    error=worker.status.last_error,
                    restart_in_s=round(delay_s, 1),
                )
                self._changed.set()
            elif now >= self._restart_at[key]:
                del self._restart_at[key]
                self._restarts[key] = self._restarts.get(key, 0) + 1
                try:
                    start(worker.mapping)
                except Exception as exc:  # tried again after a longer backoff
                    error = InternalError.wrapping(exc)
                    log.error(f"{kind}worker_restart_failed", mapping=name, error=str(error))
                else:
                    log.warning(f"{kind}worker_restarted", mapping=name)

    def _stop_workers(self, workers: list[MappingWorker]) -> None:
        """Stop `workers`, and their results workers, together; wait at most
        `stop_timeout_s` for all of them."""
        results = [
            self.results_workers[w.mapping.name]
            for w in workers
            if w.mapping.name in self.results_workers
        ]
        for worker in workers:
            worker.request_stop()
        for result in results:
            result.request_stop()
        deadline = self._clock() + self._timings.stop_timeout_s
        for result in results:
            result.join(max(0.0, deadline - self._clock()))
            if result.thread.is_alive():
                log.warning("results_worker_abandoned", mapping=result.mapping.name)
        for worker in workers:
            worker.join(max(0.0, deadline - self._clock()))
            if worker.thread.is_alive():
                log.warning("worker_abandoned", mapping=worker.mapping.name)
            self._locks.release(self._key(worker.mapping))

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
        except Exception as exc:  # a bug must not end the daemon
            message = str(InternalError.wrapping(exc))
            log.error("config_reload_failed", message=message, hint="the old one stays in use")
        else:
            try:
                self._apply(config, mappings, token)
            except Exception as exc:  # the supervisor goes on; dead workers are restarted
                log.error("config_reload_failed", message=str(InternalError.wrapping(exc)))
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
            self.results_workers.pop(worker.mapping.name, None)
        if config.state_dir != old.state_dir:
            self._locks = MappingLocks(self._store.root)
        kept = list(self.workers)
        for worker in self.workers.values():
            if new_token:
                worker.use_client(self._client_factory(config, token))
            worker.request_rescan()
        for results in self.results_workers.values():
            if new_token:
                results.use_client(self._client_factory(config, token))
            results.retry_now()
        self.config = config
        starting = [m for m in mappings if m.name not in self.workers]
        for mapping in starting:
            try:
                self._locks.claim(self._key(mapping), name=mapping.name)
            except ConfigError as exc:  # another daemon follows it: the others go on
                log.error("mapping_not_started", mapping=mapping.name, reason=str(exc))
                continue
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
            write_status(self._store.status_path(self._status_name), document)
        except OSError as exc:
            if not self._status_warned:
                self._status_warned = True
                log.warning(
                    "status_not_written",
                    path=str(self._store.status_path(self._status_name)),
                    error=str(exc),
                )
        if not final:
            self._notifier.status(self._summary())

    def _status_document(self, *, final: bool = False) -> dict[str, Any]:
        return status_document(
            (w.status for w in self.workers.values()),
            config_path=self.config.path,
            started_at=self._started_at,
            now=self._clock(),
            wall=self._wall_clock(),
            final=final,
            results={name: w.status for name, w in self.results_workers.items()},
        )

    def _summary(self) -> str:
        return summary(
            (w.status for w in self.workers.values()),
            wall=self._wall_clock(),
            results=[w.status for w in self.results_workers.values()],
        )


def release_free_memory() -> bool:
    """Hand heap pages that are free back to the system (glibc's `malloc_trim`). Full passes
    over large folders free tens of MB (listings, tables being rebuilt) that glibc would
    otherwise keep, and the daemon's RSS is what a lab server's admin sees: with 50 mappings
    of 5,000 files it is 18 MB less (benchmarks/bench_scale.py). Dask's workers do the same.
    Elsewhere than on glibc it does nothing and says False."""
    import ctypes  # only the daemon needs it, and only when ready

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl, Windows)
        return False
    trim(0)
    return True


def _same(a: MappingConfig, b: MappingConfig) -> bool:
    """The same mapping, wherever it stands in the file."""
    return dataclasses.replace(a, line=0) == dataclasses.replace(b, line=0)


# ---------------------------------------------------------------------------- entry point


def run(
    args: argparse.Namespace,
    *,
    config: Config,
    environ: Mapping[str, str],
    client_factory: ClientFactory,
    stop: threading.Event | None = None,
    observer_factory: ObserverFactory = default_observer_factory,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """`jatos-sync watch`: run until SIGTERM/SIGINT (or `stop`); return the exit code.

    Raises `ConfigError` (exit 2) when a mapping named in `args` or the token source is
    unusable, and the client's error (exit 3 for a rejected token) when the server refuses
    the token before anything ran. Later problems pause mappings instead.
    """
    names = tuple(args.mappings)
    config.select(names)
    token = load_token(config.server, environ=environ)
    warn_before_connecting(config.server.url)
    with client_factory(config, token) as client:
        try:
            warn_about_token(client.token_info())
            # One study in two mappings (by ID and by UUID) would have two workers replace
            # each other's files: refused at start, like `sync` does (exit 2).
            check_distinct_studies(config.mappings, client)
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
