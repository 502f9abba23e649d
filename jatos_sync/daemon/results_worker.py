"""One mapping's results, mirrored by a thread of their own every `results.every`.

Owns `ResultsWorker`: its own thread and its own client, so a slow or failing results pass
never delays the mapping's file sync, and the reverse. It runs a results pass
(`results.ResultsMirror`) when it starts and then every `every_s`; a pass that fails pauses
it with capped backoff (a refused token is re-checked every `auth_recheck_s`), and a bug in
a pass is an internal error that pauses it the same way: the thread never ends on its own
(docs/safety.md, rule 13). It publishes a `ResultsStatus` for the status file and systemd.

It must not decide what to fetch or write (jatos_sync/results/), write the status file or talk to
systemd (the supervisor does), or touch the mapping's `MappingWorker`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from jatos_sync.client import JatosClient
from jatos_sync.config import MappingConfig
from jatos_sync.daemon.status import ResultsStatus
from jatos_sync.daemon.worker import Timings, backoff_s
from jatos_sync.errors import AuthError, InternalError, JatosSyncError

log = structlog.get_logger("jatos_sync.daemon")


class ResultsWorker:
    """The results of one mapping with `results:`, fetched in their own thread."""

    def __init__(
        self,
        mapping: MappingConfig,
        *,
        client: JatosClient,
        synced: Sequence[tuple[str, Path]],
        state_root: Path,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        timings: Timings = Timings(),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        if mapping.results is None:
            raise ValueError(f"mapping {mapping.name!r} has no results: section")
        # Imported here: jatos_sync.results imports msgspec, which `--version` must not wait for.
        from jatos_sync.results import ResultsMirror

        self.mapping = mapping
        self.every_s = mapping.results.every_s
        self._stop = threading.Event()
        self._mirror = ResultsMirror(
            mapping,
            client=client,
            synced=synced,
            state_root=state_root,
            clock=clock,
            stop=self._stop,
        )
        self._clock = clock
        self._wall_clock = wall_clock
        self._timings = timings
        self._on_change = on_change
        self._wake = threading.Event()
        self._requests = threading.Lock()
        self._next_client: JatosClient | None = None
        self._now_requested = False
        self.thread = threading.Thread(
            target=self._run, name=f"jatos-sync-{mapping.name}-results", daemon=True
        )
        self._attempts = 0  # failed passes in a row
        self._next_at = 0.0  # the first pass runs at once
        self.status = ResultsStatus(folder=str(mapping.results.folder))

    def __repr__(self) -> str:
        return f"ResultsWorker({self.mapping.name!r})"

    # ------------------------------------------------------------ for the supervisor

    def start(self) -> None:
        self.thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float | None = None) -> None:
        self.thread.join(timeout_s)

    @property
    def died(self) -> bool:
        """Whether the thread ended without being asked to (the supervisor restarts it)."""
        started, stopping = self.thread.ident is not None, self._stop.is_set()
        return started and not stopping and not self.thread.is_alive()

    def use_client(self, client: JatosClient) -> None:
        """Switch to `client` (a new token) before the next pass; a paused worker tries
        again at once."""
        with self._requests:
            unused, self._next_client = self._next_client, client
            self._now_requested = True
        if unused is not None:
            unused.close()
        self._wake.set()

    def retry_now(self) -> None:
        """A paused worker tries again at once (SIGHUP); a working one keeps its pace."""
        with self._requests:
            self._now_requested = True
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._take_requests()
                now = self._clock()
                if now >= self._next_at:
                    self._pass()
                    continue
                self._wake.wait(min(self._next_at - now, 3600.0))
                self._wake.clear()
        except BaseException as exc:  # e.g. SystemExit from a library: the supervisor restarts
            error = f"the results worker stopped: {InternalError.wrapping(exc)}"
            log.error("results_worker_stopped", mapping=self.mapping.name, error=error)
            self._publish(state="stopped", last_error=error)
        finally:
            self._mirror.client.close()
            with self._requests:
                unused, self._next_client = self._next_client, None
            if unused is not None:
                unused.close()
            self._publish(state="stopped")

    def _take_requests(self) -> None:
        with self._requests:
            client, self._next_client = self._next_client, None
            now_requested, self._now_requested = self._now_requested, False
        if client is not None:
            self._mirror.client.close()
            self._mirror.client = client
        if now_requested and self._attempts:
            self._next_at = self._clock()  # paused: try again at once

    def _pass(self) -> None:
        self._publish(state="fetching")
        try:
            outcome = self._mirror.run()
        except Exception as exc:  # run() reports every failure; this is a bug
            from jatos_sync.results import ResultsOutcome

            log.debug("internal_error", mapping=self.mapping.name, exc_info=exc)
            outcome = ResultsOutcome(self.mapping.name, self.mapping.study, self._mirror.root)
            outcome.error = InternalError.wrapping(exc)
        done = self._clock()
        if self._stop.is_set():
            return  # stopping: the loop ends, and the thread publishes "stopped"
        counts = dict(outcome.counts)  # final, running, withdrawn, deleted_on_server
        if outcome.error is not None:
            if any(counts.values()):  # what the folder holds, even after a failed pass
                self._publish(state="fetching", **counts)
            self._pause(outcome.error, done)
            return
        self._attempts = 0
        self._next_at = done + self.every_s
        problem = outcome.failed[0] if outcome.failed else None
        self._publish(
            state="idle",
            last_pass=self._wall_clock(),
            last_error=None if problem is None else f"{problem.path}: {problem.reason}",
            failing=len(outcome.failed),
            **counts,
        )

    def _pause(self, error: JatosSyncError, now: float) -> None:
        if isinstance(error, AuthError):
            delay_s = self._timings.auth_recheck_s
        else:
            delay_s = backoff_s(
                self._attempts,
                base_s=self._timings.pause_base_s,
                max_s=min(self._timings.pause_max_s, self.every_s),
            )
        self._attempts += 1
        if self.status.last_error != str(error):
            log.warning(
                "results_paused",
                mapping=self.mapping.name,
                reason=str(error),
                retry_in_s=round(delay_s, 1),
            )
        self._next_at = now + delay_s
        self._publish(state="paused", last_error=str(error))

    def _publish(self, **changes: Any) -> None:
        status = dataclasses.replace(self.status, **changes)
        if status != self.status:
            self.status = status
            self._on_change()
