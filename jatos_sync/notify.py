"""systemd's notify protocol (sd_notify) for the daemon: readiness, status, reload, stop, watchdog.

This module owns the datagrams sent to `$NOTIFY_SOCKET` and the watchdog ping thread, plus
`summary_line`, the one-line STATUS text. It must not decide *when* the daemon is ready,
healthy or reloading — `daemon/supervisor.py` does — and it must never raise into the
daemon: without a notify socket every call is a cheap no-op, and a send that fails (systemd
gone, socket removed) is logged once and otherwise ignored.

The protocol is small enough to speak directly (see sd_notify(3)): one AF_UNIX datagram of
newline-separated `KEY=value` assignments, sent to the path in `$NOTIFY_SOCKET`, or to a
Linux abstract-namespace address when it starts with `@`. PyPI's `sdnotify` (0.3.2, last
release 2017) was considered and not used: it swallows every error, programming errors
included, with a bare `except`; it encodes as Latin-1, so a STATUS with any other character
(a file name in Greek, an ellipsis) is silently lost; it has no type hints (mypy --strict
would need stubs) and no watchdog, reload or timeout helpers. An unmaintained dependency for
a few dozen lines is a poor trade. Here each message is a `sendto()` on one unconnected
socket, with a send timeout so that a stuck systemd cannot hang the daemon.

`$NOTIFY_SOCKET` is read but deliberately not removed from the environment (sd_notify's
`unset_environment`): the daemon starts no child processes that could inherit it, and
changing `os.environ` is a process-wide side effect this module should not have. Should the
daemon ever start children, it must drop NOTIFY_SOCKET from their environment itself.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

import structlog

log = structlog.get_logger("jatos_sync.notify")

# systemd reads at most PIPE_BUF (4096) bytes per datagram; a status line is for humans
# (`systemctl status`), so keep it well below that even in 4-byte UTF-8.
MAX_STATUS_CHARS = 512
# A send blocks while systemd's receive queue is full; never let that hang the daemon.
SEND_TIMEOUT_S = 2.0

Phase = Literal["starting", "ready", "reloading", "stopping"]


def _socket_address(raw: str) -> str | None:
    """`$NOTIFY_SOCKET` -> a `sendto()` address, or None for what we cannot speak.

    `/path` is a file-system socket, `@name` the abstract name `\\0name` (sd_notify(3)).
    Newer systemd also passes `vsock:CID:PORT` to virtual machines; not needed here.
    """
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    return None


def _printable(ch: str) -> str:
    if ch.isprintable():
        return ch
    return "\ufffd" if "\ud800" <= ch <= "\udfff" else " "


def _one_line(text: str) -> str:
    """STATUS= must be a single line of valid UTF-8 (systemd drops it otherwise): fold
    control characters and line breaks to spaces, and show the undecodable bytes of a file
    name (surrogate escapes) as U+FFFD."""
    cleaned = "".join(map(_printable, text))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_STATUS_CHARS:
        cleaned = cleaned[: MAX_STATUS_CHARS - 1] + "…"
    return cleaned


class Notifier:
    """Sends sd_notify messages to the socket named in `environ["NOTIFY_SOCKET"]`.

    Without that variable (not started by systemd, or not `Type=notify`) `enabled` is False
    and every method does nothing. Safe to call from several threads.
    """

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock  # must be CLOCK_MONOTONIC seconds: systemd compares MONOTONIC_USEC
        self._raw_socket = environ.get("NOTIFY_SOCKET", "")
        self._watchdog_usec = environ.get("WATCHDOG_USEC", "")
        self._watchdog_pid = environ.get("WATCHDOG_PID", "")
        self._lock = threading.Lock()
        self._warned = False
        self._phase: Phase = "starting"
        self._address: str | None = None
        self._sock: socket.socket | None = None
        if not self._raw_socket:
            return
        address = _socket_address(self._raw_socket)
        family = getattr(socket, "AF_UNIX", None)  # absent on some Windows builds
        if address is None or family is None:
            log.warning(
                "notify_socket_unsupported",
                notify_socket=self._raw_socket,
                hint="systemd notifications are off; the program runs unchanged",
            )
            return
        try:
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._sock.settimeout(SEND_TIMEOUT_S)
        except OSError as exc:
            log.warning("notify_socket_failed", notify_socket=self._raw_socket, error=str(exc))
            return
        self._address = address

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def phase(self) -> Phase:
        """What the last message told systemd: starting (nothing yet), ready, reloading,
        stopping. The watchdog pinger extends the start timeout only while starting or
        reloading."""
        return self._phase

    # ------------------------------------------------------------------ the messages

    def ready(self, status: str | None = None) -> None:
        """READY=1: the initial passes are done (or a reload is). Optionally with STATUS=."""
        self._phase = "ready"
        lines = ["READY=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        self._send(lines)

    def status(self, text: str) -> None:
        """STATUS=…: one line for `systemctl status`; newlines and control characters are
        folded to spaces and long text is cut at MAX_STATUS_CHARS."""
        self._send(["STATUS=" + _one_line(text)])

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC= (systemd >= 253 requires the timestamp for
        Type=notify-reload; older versions ignore it). Follow with ready() when done."""
        self._phase = "reloading"
        usec = int(self._clock() * 1_000_000)
        self._send(["RELOADING=1", f"MONOTONIC_USEC={usec}"])

    def stopping(self) -> None:
        """STOPPING=1: a clean stop has begun."""
        self._phase = "stopping"
        self._send(["STOPPING=1"])

    def watchdog(self) -> None:
        """WATCHDOG=1: the keep-alive ping. Send it only while the daemon is healthy."""
        self._send(["WATCHDOG=1"])

    def extend_timeout(self, timeout_s: float) -> None:
        """EXTEND_TIMEOUT_USEC=…: "still starting (or reloading or stopping), give me
        timeout_s more". Must be repeated before that time runs out."""
        usec = max(1, int(timeout_s * 1_000_000))
        self._send([f"EXTEND_TIMEOUT_USEC={usec}"])

    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, as systemd recommends.

        None when there is no notify socket, no (valid) `$WATCHDOG_USEC`, or
        `$WATCHDOG_PID` names another process (the variables were inherited, not meant
        for us).
        """
        if not self.enabled:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                pid = int(self._watchdog_pid)
            except ValueError:
                return None
            if pid != os.getpid():
                return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the socket; later calls are no-ops."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier(notify_socket={self._raw_socket!r}, enabled={self.enabled})"

    # ------------------------------------------------------------------ sending

    def _send(self, lines: list[str]) -> None:
        if self._sock is None or self._address is None:
            return
        # _one_line already removed surrogates; "replace" keeps any future caller that
        # skips it from raising here.
        data = "\n".join(lines).encode("utf-8", errors="replace")
        with self._lock:
            sock = self._sock
            if sock is None:
                return
            try:
                sock.sendto(data, self._address)
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "notify_send_failed",
                        notify_socket=self._raw_socket,
                        error=str(exc),
                        hint="systemd did not get a notification; further failures are not logged",
                    )


class WatchdogPinger:
    """A thread that sends WATCHDOG=1 every interval, but only while `healthy()` says the
    main loop is alive — so systemd restarts a daemon that hangs, and only one that hangs.

    The interval defaults to the notifier's `watchdog_interval_s()`; with no watchdog
    configured `start()` starts nothing. While the notifier's phase is "starting" or
    "reloading", each healthy tick also sends EXTEND_TIMEOUT_USEC (three intervals), so a
    long first sync that keeps making progress is not killed by TimeoutStartSec=, while a
    stuck one still is. A `healthy()` that raises counts as unhealthy (logged once).
    The thread ends when `stop` is set.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        healthy: Callable[[], bool],
        stop: threading.Event,
        interval_s: float | None = None,
    ) -> None:
        self._notifier = notifier
        self._healthy = healthy
        self._stop = stop
        self._interval_s = interval_s if interval_s is not None else notifier.watchdog_interval_s()
        if self._interval_s is not None and self._interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {self._interval_s}")
        self._thread: threading.Thread | None = None
        self._warned = False

    @property
    def interval_s(self) -> float | None:
        return self._interval_s

    def start(self) -> None:
        if self._interval_s is None or not self._notifier.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="jatos-sync-watchdog", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        assert self._interval_s is not None
        interval_s = self._interval_s
        while not self._stop.is_set():
            if self._is_healthy():
                if self._notifier.phase in ("starting", "reloading"):
                    self._notifier.extend_timeout(3 * interval_s)
                self._notifier.watchdog()
            if self._stop.wait(interval_s):
                break

    def _is_healthy(self) -> bool:
        try:
            return bool(self._healthy())
        except Exception as exc:  # a broken health check must not end the thread silently
            if not self._warned:
                self._warned = True
                log.warning("watchdog_health_check_failed", error=repr(exc))
            return False


class Heartbeat:
    """A ready-made health check: `beat()` from the main loop (and from long work such as an
    upload in progress); calling the object says whether the last beat is at most
    `max_age_s` old. Pass it as `WatchdogPinger(healthy=heartbeat)`."""

    def __init__(self, *, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age_s(self) -> float:
        return self._clock() - self._last

    def __call__(self) -> bool:
        return self.age_s() <= self._max_age_s


# ---------------------------------------------------------------------- the status line


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _age(seconds: float) -> str:
    """Human units, rounded down: 12 s, 5 min, 3 h, 4 d."""
    whole = int(max(0.0, seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 120 * 60:
        return f"{whole // 60} min"
    if whole < 48 * 3600:
        return f"{whole // 3600} h"
    return f"{whole // 86400} d"


def summary_line(
    *,
    mappings: int,
    pending: int,
    paused: int,
    last_sync_age_s: float | None,
    errors: int,
) -> str:
    """The STATUS= text: "3 mappings, 2 pending, last sync 12 s ago".

    pending: changed paths not yet synced; paused: mappings waiting for the server, a token or
    an unlocked study; errors: files that failed in the last passes; last_sync_age_s: since
    the last successful pass, None before the first.
    """
    for name, value in (("mappings", mappings), ("pending", pending), ("paused", paused)):
        if value < 0:
            raise ValueError(f"{name} must not be negative, not {value}")
    if errors < 0:
        raise ValueError(f"errors must not be negative, not {errors}")
    parts = [_plural(mappings, "mapping")]
    parts.append(f"{pending} pending" if pending else "nothing pending")
    if paused:
        parts.append(f"{paused} paused")
    if errors:
        parts.append(_plural(errors, "error"))
    if last_sync_age_s is None:
        parts.append("no sync yet")
    elif last_sync_age_s < 1:
        parts.append("last sync just now")
    else:
        parts.append(f"last sync {_age(last_sync_age_s)} ago")
    return ", ".join(parts)
