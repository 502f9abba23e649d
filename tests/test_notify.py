"""The sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jatos_sync.notify import (
    MAX_STATUS_CHARS,
    Heartbeat,
    Notifier,
    WatchdogPinger,
    summary_line,
)

WAIT_S = 5.0  # upper bound for anything a test waits for; normally milliseconds
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract socket names are Linux-only"
)


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # what goes into $NOTIFY_SOCKET

    @property
    def environ(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def recv(self, timeout_s: float = WAIT_S) -> str:
        self.sock.settimeout(timeout_s)
        return self.sock.recv(65536).decode("utf-8")

    def recv_until(self, done: Callable[[list[str]], bool]) -> list[str]:
        """Collect messages until `done(messages)` holds (bounded by WAIT_S)."""
        messages: list[str] = []
        deadline = time.monotonic() + WAIT_S
        while not done(messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met; got {messages!r}")
            try:
                messages.append(self.recv(remaining))
            except TimeoutError:
                continue
        return messages

    def drain(self) -> list[str]:
        """Everything already queued, without waiting."""
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                messages.append(self.sock.recv(65536).decode("utf-8"))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return messages


def _short_dir(tmp_path: Path) -> Iterator[Path]:
    # A socket path must fit in sun_path (108 bytes on Linux, 104 on macOS).
    if len(str(tmp_path / "notify.sock")) < 100:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="jsn", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    for directory in _short_dir(tmp_path):
        path = directory / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(path))
            yield FakeSystemd(sock, str(path))
        finally:
            sock.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    name = f"jatos-sync-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        yield FakeSystemd(sock, "@" + name)
    finally:
        sock.close()


# ---------------------------------------------------------------------- no socket


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "60000000"}])
def test_without_notify_socket_every_call_is_a_silent_no_op(environ: dict[str, str]) -> None:
    with capture_logs() as logs, Notifier(environ) as notifier:
        assert notifier.enabled is False
        notifier.ready("x")
        notifier.status("x")
        notifier.reloading()
        notifier.watchdog()
        notifier.extend_timeout(5)
        notifier.stopping()
        assert notifier.watchdog_interval_s() is None
    assert logs == []


@pytest.mark.parametrize("address", ["vsock:2:1234", "relative/notify.sock", "@"])
def test_an_address_we_cannot_speak_disables_notifications_with_a_warning(address: str) -> None:
    with capture_logs() as logs, Notifier({"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.enabled is False
        notifier.ready()
    assert [e["event"] for e in logs] == ["notify_socket_unsupported"]


# ---------------------------------------------------------------------- messages


def test_ready_sends_ready_1(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ) as notifier:
        assert notifier.enabled
        notifier.ready()
        assert systemd.recv() == "READY=1"
        assert notifier.phase == "ready"


def test_ready_with_status_sends_both_in_one_message(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ) as notifier:
        notifier.ready("2 mappings, nothing pending")
        assert systemd.recv() == "READY=1\nSTATUS=2 mappings, nothing pending"


def test_status_sends_one_line(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ) as notifier:
        notifier.status("paused:\nstudy 42\r\nis locked\t(stroop)\x00")
        assert systemd.recv() == "STATUS=paused: study 42 is locked (stroop)"


def test_long_status_is_cut_with_an_ellipsis(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ) as notifier:
        notifier.status("ä" * (MAX_STATUS_CHARS * 3))
        text = systemd.recv().removeprefix("STATUS=")
        assert len(text) == MAX_STATUS_CHARS
        assert text.endswith("…")


def test_status_with_an_undecodable_file_name_is_still_valid_utf8(systemd: FakeSystemd) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # a Latin-1 file name on a UTF-8 system
    with Notifier(systemd.environ) as notifier:
        notifier.status(f"uploading {name}")
        systemd.sock.settimeout(WAIT_S)
        raw = systemd.sock.recv(65536)
    text = raw.decode("utf-8")  # raises if systemd would have dropped it
    assert text == "STATUS=uploading caf\ufffd.png"


def test_reloading_sends_monotonic_usec_from_the_clock(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ, clock=lambda: 12.5) as notifier:
        notifier.reloading()
        assert systemd.recv() == "RELOADING=1\nMONOTONIC_USEC=12500000"
        assert notifier.phase == "reloading"


@pytest.mark.skipif(not hasattr(time, "CLOCK_MONOTONIC"), reason="needs CLOCK_MONOTONIC")
def test_reloading_timestamp_is_clock_monotonic_by_default(systemd: FakeSystemd) -> None:
    # systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC reading.
    with Notifier(systemd.environ) as notifier:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = systemd.recv().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before - 1 <= int(value) <= after + 1


def test_reload_ends_with_ready_again(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ, clock=lambda: 1.0) as notifier:
        notifier.ready()
        notifier.reloading()
        notifier.ready("1 mapping, nothing pending, last sync just now")
    assert systemd.recv() == "READY=1"
    assert systemd.recv().startswith("RELOADING=1\n")
    assert systemd.recv() == "READY=1\nSTATUS=1 mapping, nothing pending, last sync just now"


def test_stopping_watchdog_and_extend_timeout(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ) as notifier:
        notifier.watchdog()
        notifier.extend_timeout(90)
        notifier.stopping()
        assert notifier.phase == "stopping"
    assert systemd.recv() == "WATCHDOG=1"
    assert systemd.recv() == "EXTEND_TIMEOUT_USEC=90000000"
    assert systemd.recv() == "STOPPING=1"


@linux_only
def test_abstract_namespace_socket(abstract_systemd: FakeSystemd) -> None:
    with Notifier(abstract_systemd.environ) as notifier:
        assert notifier.enabled
        notifier.ready("ok")
    assert abstract_systemd.recv() == "READY=1\nSTATUS=ok"


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    for directory in _short_dir(tmp_path):
        path = directory / "gone.sock"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(path))
        with capture_logs() as logs, Notifier({"NOTIFY_SOCKET": str(path)}) as notifier:
            receiver.close()
            path.unlink()
            notifier.ready()
            notifier.status("still here")
            notifier.watchdog()
    assert [e["event"] for e in logs] == ["notify_send_failed"]
    assert logs[0]["log_level"] == "warning"


def test_after_close_calls_are_no_ops(systemd: FakeSystemd) -> None:
    notifier = Notifier(systemd.environ)
    notifier.close()
    notifier.close()
    assert notifier.enabled is False
    notifier.ready()
    assert systemd.drain() == []


def test_repr_names_the_socket(systemd: FakeSystemd) -> None:
    with Notifier(systemd.environ) as notifier:
        assert systemd.address in repr(notifier)


# ---------------------------------------------------------------------- watchdog interval


OWN_PID = str(os.getpid())
OTHER_PID = str(os.getpid() + 1)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("60000000", None, 30.0),
        ("60000000", OWN_PID, 30.0),
        ("100000", None, 0.05),
        ("60000000", OTHER_PID, None),  # inherited from a parent: not ours
        ("60000000", "not-a-pid", None),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    systemd: FakeSystemd, usec: str | None, pid: str | None, expected: float | None
) -> None:
    environ = systemd.environ
    if usec is not None:
        environ["WATCHDOG_USEC"] = usec
    if pid is not None:
        environ["WATCHDOG_PID"] = pid
    with Notifier(environ) as notifier:
        assert notifier.watchdog_interval_s() == expected


# ---------------------------------------------------------------------- the pinger


class RecordingEvent(threading.Event):
    """A stop event that remembers how long each wait() was asked to take."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(timeout)


def _run_pinger(pinger: WatchdogPinger, stop: threading.Event) -> Iterator[None]:
    pinger.start()
    try:
        yield
    finally:
        stop.set()
        pinger.join(WAIT_S)


def _pings(messages: list[str]) -> int:
    return messages.count("WATCHDOG=1")


def test_pinger_pings_at_the_configured_interval(systemd: FakeSystemd) -> None:
    stop = RecordingEvent()
    with Notifier(systemd.environ) as notifier:
        notifier.ready()
        assert systemd.recv() == "READY=1"
        pinger = WatchdogPinger(notifier, healthy=lambda: True, stop=stop, interval_s=0.05)
        for _ in _run_pinger(pinger, stop):
            messages = systemd.recv_until(lambda m: _pings(m) >= 3)
    assert set(messages) == {"WATCHDOG=1"}
    assert stop.waits, "the pinger never waited"
    assert set(stop.waits) == {0.05}


def test_pinger_interval_defaults_to_half_the_watchdog_usec(systemd: FakeSystemd) -> None:
    stop = RecordingEvent()
    environ = {**systemd.environ, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": OWN_PID}
    with Notifier(environ) as notifier:
        notifier.ready()
        pinger = WatchdogPinger(notifier, healthy=lambda: True, stop=stop)
        assert pinger.interval_s == 0.05
        for _ in _run_pinger(pinger, stop):
            systemd.recv_until(lambda m: _pings(m) >= 2)
    assert set(stop.waits) == {0.05}


def test_pinger_stops_pinging_while_unhealthy_and_resumes_after(systemd: FakeSystemd) -> None:
    lock = threading.Lock()
    state = {"healthy": True, "yes": 0, "no": 0}

    def healthy() -> bool:
        with lock:
            key = "yes" if state["healthy"] else "no"
            state[key] += 1
            return bool(state["healthy"])

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.005)

    stop = threading.Event()
    with Notifier(systemd.environ) as notifier:
        notifier.ready()
        assert systemd.recv() == "READY=1"
        pinger = WatchdogPinger(notifier, healthy=healthy, stop=stop, interval_s=0.02)
        for _ in _run_pinger(pinger, stop):
            seen = _pings(systemd.recv_until(lambda m: _pings(m) >= 2))
            with lock:
                state["healthy"] = False
            # Two checks that said "stuck" prove every ping that will come has been sent:
            # each ping is sent right after a healthy check, before the next check.
            wait_for(lambda: state["no"] >= 2)
            seen += _pings(systemd.drain())
            with lock:
                assert seen == state["yes"]
                state["healthy"] = True
            systemd.recv_until(lambda m: _pings(m) >= 1)


@pytest.mark.parametrize(
    ("phase", "extends"),
    [("starting", True), ("reloading", True), ("ready", False), ("stopping", False)],
)
def test_pinger_extends_the_start_timeout_only_while_starting_or_reloading(
    systemd: FakeSystemd, phase: str, extends: bool
) -> None:
    stop = threading.Event()
    with Notifier(systemd.environ) as notifier:
        enter: dict[str, Callable[[], None]] = {
            "starting": lambda: None,  # a new notifier has sent nothing yet
            "reloading": notifier.reloading,
            "ready": notifier.ready,
            "stopping": notifier.stopping,
        }
        enter[phase]()
        assert notifier.phase == phase
        systemd.drain()
        pinger = WatchdogPinger(notifier, healthy=lambda: True, stop=stop, interval_s=0.05)
        for _ in _run_pinger(pinger, stop):
            messages = systemd.recv_until(lambda m: _pings(m) >= 2)
    extensions = [m for m in messages if m.startswith("EXTEND_TIMEOUT_USEC=")]
    if extends:
        assert extensions
        assert set(extensions) == {"EXTEND_TIMEOUT_USEC=150000"}  # three intervals
    else:
        assert extensions == []


def test_pinger_treats_a_failing_health_check_as_unhealthy(systemd: FakeSystemd) -> None:
    calls = {"n": 0}

    def healthy() -> bool:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("loop state unreadable")
        return True

    stop = threading.Event()
    with capture_logs() as logs, Notifier(systemd.environ) as notifier:
        notifier.ready()
        assert systemd.recv() == "READY=1"
        pinger = WatchdogPinger(notifier, healthy=healthy, stop=stop, interval_s=0.02)
        for _ in _run_pinger(pinger, stop):
            systemd.recv_until(lambda m: _pings(m) >= 1)
            assert calls["n"] >= 4  # the first ping came only after the check recovered
    assert [e["event"] for e in logs] == ["watchdog_health_check_failed"]


def test_pinger_without_a_watchdog_starts_no_thread(systemd: FakeSystemd) -> None:
    stop = threading.Event()
    with Notifier(systemd.environ) as notifier:
        pinger = WatchdogPinger(notifier, healthy=lambda: True, stop=stop)
        assert pinger.interval_s is None
        before = threading.active_count()
        pinger.start()
        assert threading.active_count() == before
        pinger.join(0)
    assert systemd.drain() == []


def test_pinger_without_a_notify_socket_starts_no_thread() -> None:
    stop = threading.Event()
    with Notifier({}) as notifier:
        pinger = WatchdogPinger(notifier, healthy=lambda: True, stop=stop, interval_s=0.01)
        before = threading.active_count()
        pinger.start()
        assert threading.active_count() == before


def test_pinger_rejects_a_non_positive_interval() -> None:
    with Notifier({}) as notifier, pytest.raises(ValueError, match="positive"):
        WatchdogPinger(notifier, healthy=lambda: True, stop=threading.Event(), interval_s=0)


def test_heartbeat_is_healthy_until_max_age_passes() -> None:
    now = [100.0]
    beat = Heartbeat(max_age_s=10, clock=lambda: now[0])
    assert beat()
    now[0] = 110.0
    assert beat()
    now[0] = 110.5
    assert not beat()
    beat.beat()
    assert beat()
    assert beat.age_s() == 0


# ---------------------------------------------------------------------- summary line


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"mappings": 3, "pending": 2, "paused": 0, "last_sync_age_s": 12.7, "errors": 0},
            "3 mappings, 2 pending, last sync 12 s ago",
        ),
        (
            {"mappings": 1, "pending": 0, "paused": 0, "last_sync_age_s": None, "errors": 0},
            "1 mapping, nothing pending, no sync yet",
        ),
        (
            {"mappings": 2, "pending": 0, "paused": 0, "last_sync_age_s": 0.3, "errors": 0},
            "2 mappings, nothing pending, last sync just now",
        ),
        (
            {"mappings": 4, "pending": 5, "paused": 1, "last_sync_age_s": 119, "errors": 1},
            "4 mappings, 5 pending, 1 paused, 1 error, last sync 119 s ago",
        ),
        (
            {"mappings": 4, "pending": 0, "paused": 2, "last_sync_age_s": 120, "errors": 3},
            "4 mappings, nothing pending, 2 paused, 3 errors, last sync 2 min ago",
        ),
        (
            {"mappings": 0, "pending": 0, "paused": 0, "last_sync_age_s": None, "errors": 0},
            "0 mappings, nothing pending, no sync yet",
        ),
        (
            {"mappings": 1, "pending": 0, "paused": 0, "last_sync_age_s": 7199, "errors": 0},
            "1 mapping, nothing pending, last sync 119 min ago",
        ),
        (
            {"mappings": 1, "pending": 0, "paused": 0, "last_sync_age_s": 7200, "errors": 0},
            "1 mapping, nothing pending, last sync 2 h ago",
        ),
        (
            {"mappings": 1, "pending": 0, "paused": 1, "last_sync_age_s": 47.9 * 3600, "errors": 0},
            "1 mapping, nothing pending, 1 paused, last sync 47 h ago",
        ),
        (
            {"mappings": 1, "pending": 0, "paused": 1, "last_sync_age_s": 3 * 86400, "errors": 0},
            "1 mapping, nothing pending, 1 paused, last sync 3 d ago",
        ),
        (
            # A clock step backwards must not print a negative age.
            {"mappings": 1, "pending": 1, "paused": 0, "last_sync_age_s": -4.0, "errors": 0},
            "1 mapping, 1 pending, last sync just now",
        ),
    ],
)
def test_summary_line(kwargs: dict[str, int | float | None], expected: str) -> None:
    assert summary_line(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["mappings", "pending", "paused", "errors"])
def test_summary_line_rejects_negative_counts(key: str) -> None:
    kwargs: dict[str, int | float | None] = {
        "mappings": 1,
        "pending": 0,
        "paused": 0,
        "last_sync_age_s": None,
        "errors": 0,
    }
    kwargs[key] = -1
    with pytest.raises(ValueError, match=key):
        summary_line(**kwargs)  # type: ignore[arg-type]
