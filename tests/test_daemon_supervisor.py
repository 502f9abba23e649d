"""daemon/supervisor.py: the daemon of several mappings against the real stand-in server —
reload (SIGHUP), a new token, a bounded stop, `run` and its exit codes, signals and systemd."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from jatos_sync.cli import main
from jatos_sync.daemon import supervisor
from jatos_sync.sync import MappingSync
from tests.daemon_lab import FAST, Lab, client_factory, idle, make_lab, running, wait_for


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(tmp_path)


def test_a_reload_adds_and_removes_mappings_and_keeps_unchanged_ones_running(lab: Lab) -> None:
    lab.add_mapping("old")
    lab.add_mapping("new")
    lab.write_config("exp", "old")
    lab.put("a.js", "a")
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", lambda: idle(lab)() and idle(lab, "old")())
        kept, kept_thread = daemon.workers["exp"], daemon.workers["exp"].thread.ident
        old = daemon.workers["old"]
        lab.put("n.js", "n", name="new")
        # The unchanged mapping moves down a line: still the same mapping.
        lab.write_config("exp", "new", header="# reloaded\n")
        daemon.request_reload()
        wait_for("the new mapping", lambda: lab.files("new") == {"n.js": b"n"})
        assert set(daemon.workers) == {"exp", "new"}
        assert daemon.workers["exp"] is kept and kept.thread.ident == kept_thread
        assert kept.thread.is_alive() and not old.thread.is_alive()

        lab.world.config_path.write_text("mappings: [oops\n")
        with capture_logs() as logs:
            daemon.request_reload()
            wait_for(
                "the failed reload", lambda: any(e["event"] == "config_reload_failed" for e in logs)
            )
        failed = next(e for e in logs if e["event"] == "config_reload_failed")
        assert str(lab.world.config_path) in failed["message"]
        assert set(daemon.workers) == {"exp", "new"} and daemon.workers["exp"] is kept
        lab.put("a.js", "a2")
        wait_for("syncing goes on", lambda: lab.files() == {"a.js": b"a2"})


def test_a_replaced_token_is_used_after_a_reload(lab: Lab) -> None:
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", idle(lab))
        lab.server.revoke_token(lab.world.token)
        lab.put("a.js", "a")
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        assert lab.files() == {}
        lab.env["JATOS_TOKEN"] = lab.server.add_token("alice")
        daemon.request_reload()
        wait_for("the upload with the new token", lambda: lab.files() == {"a.js": b"a"})
        wait_for("resumed", idle(lab))


def test_stop_is_bounded_while_uploads_are_in_flight(lab: Lab) -> None:
    for i in range(40):
        lab.put(f"f{i:02}.bin", "x" * 100)
    lab.server.faults.latency_s = 0.3
    daemon = lab.daemon()
    with running(daemon) as thread:
        wait_for("uploads under way", lambda: lab.server.count(kind="upload") >= 1)
        started = time.monotonic()
        daemon.request_stop()
        thread.join(10)
        assert time.monotonic() - started < 10
    assert 1 <= len(lab.files()) < 40
    states = list((lab.world.state_dir / "mappings").glob("*.json"))
    assert len(states) == 1
    synced = json.loads(states[0].read_text())["synced"]
    assert set(synced) == set(lab.files())


def run_watch(lab: Lab, stop: threading.Event) -> int:
    return supervisor.run(
        argparse.Namespace(mappings=[]),
        config=lab.config(),
        environ=lab.env,
        client_factory=client_factory,
        stop=stop,
    )


def watch_cli(lab: Lab) -> tuple[int, str]:
    """`jatos-sync watch` through the CLI, for failures at start (it returns at once)."""
    err = io.StringIO()
    code = main(
        ["-c", str(lab.world.config_path), "watch"],
        environ=lab.env,
        stdout=io.StringIO(),
        stderr=err,
        client_factory=client_factory,
    )
    return code, err.getvalue()


def test_watch_exits_2_on_a_configuration_error(lab: Lab) -> None:
    lab.world.config_path.write_text("server:\n  url: 42\nmappings: []\n")
    code, err = watch_cli(lab)
    assert code == 2 and str(lab.world.config_path) in err and "server.url" in err
    del lab.env["JATOS_TOKEN"]
    lab.write_config()
    code, err = watch_cli(lab)
    assert code == 2 and "no JATOS API token" in err


def test_watch_exits_3_when_the_server_rejects_the_token_at_start(lab: Lab) -> None:
    lab.server.revoke_token(lab.world.token)
    code, err = watch_cli(lab)
    assert code == 3 and "jatos-sync: " in err
    assert lab.server.count(kind="list") == 0


def test_run_follows_until_stopped_and_exits_0(lab: Lab) -> None:
    lab.put("a.js", "a")
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_watch(lab, stop)))
    thread.start()
    try:
        wait_for("the sync", lambda: lab.files() == {"a.js": b"a"})
    finally:
        stop.set()
        thread.join(15)
    assert result == [0]


def test_sighup_reloads_and_sigterm_stops_cleanly_with_exit_0(lab: Lab, tmp_path: Path) -> None:
    lab.put("a.js", "a")
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jatos_sync", "-c", str(lab.world.config_path), "watch"],
            env={**os.environ, **lab.env},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for("the initial pass", lambda: lab.files() == {"a.js": b"a"})
            lab.add_mapping("second")
            lab.put("b.js", "b", name="second")
            lab.write_config()
            proc.send_signal(signal.SIGHUP)
            wait_for("the added mapping", lambda: lab.files("second") == {"b.js": b"b"})
            lab.put("a.js", "a2")
            wait_for("the edit", lambda: lab.files() == {"a.js": b"a2"})
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            assert time.monotonic() - started < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    events = [json.loads(line)["event"] for line in log_path.read_text().splitlines()]
    assert code == 0
    assert "config_reloaded" in events and events[-1] == "watch_stopped"
    status = lab.status()
    assert status["state"] == "stopped" and status["pid"] == proc.pid
    assert [m["name"] for m in status["mappings"]] == ["exp", "second"]


def test_systemd_hears_ready_after_the_first_pass_then_reload_watchdog_and_stop(
    lab: Lab,
) -> None:
    directory = tempfile.mkdtemp(prefix="js-", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(directory, "notify")
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)

        def until(line: str) -> None:
            while line not in received:
                received.extend(sock.recv(4096).decode().split("\n"))

        lab.env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
        lab.put("a.js", "a")
        daemon = lab.daemon()
        try:
            with running(daemon):
                until("READY=1")
                assert lab.files() == {"a.js": b"a"}  # the initial pass came first
                assert any(m.startswith("STATUS=1 mapping") for m in received)
                until("WATCHDOG=1")
                received.clear()
                daemon.request_reload()
                until("RELOADING=1")
                until("READY=1")
            until("STOPPING=1")
        finally:
            shutil.rmtree(directory)


# ------------------------------------------------------------- a worker that dies anyway


def test_a_worker_thread_that_dies_is_logged_restarted_and_starves_the_watchdog_meanwhile(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exceptions are caught in the worker; SystemExit (raised by a library) still ends its
    thread. The supervisor notices, says so, and starts the mapping again after a backoff;
    until then systemd's watchdog hears nothing (the daemon is not well)."""
    real = MappingSync.full_pass
    exits = [1]

    def dying_pass(self: MappingSync, **kwargs: Any) -> Any:
        if exits[0]:
            exits[0] -= 1
            raise SystemExit(3)
        return real(self, **kwargs)

    monkeypatch.setattr(MappingSync, "full_pass", dying_pass)
    directory = tempfile.mkdtemp(prefix="js-", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(directory, "notify")
    lab.env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="100000")  # a ping every 50 ms
    lab.put("a.js", "a")
    timings = dataclasses.replace(FAST, pause_base_s=1.0)  # the first restart after 1 s
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, capture_logs() as logs:
            sock.bind(path)
            sock.settimeout(0.05)
            daemon = lab.daemon(timings=timings)
            with running(daemon):
                wait_for("the death", lambda: any(e["event"] == "worker_died" for e in logs))
                assert not daemon.workers_alive()
                received_while(sock, lambda: True, timeout_s=0.2)  # what was sent before
                pings = received_while(sock, lambda: not daemon.workers_alive())
                assert pings.count("WATCHDOG=1") <= 1  # at most one sent just before
                wait_for("the restart", lambda: lab.files() == {"a.js": b"a"})
                wait_for("resumed", idle(lab))
                assert "WATCHDOG=1" in received_while(sock, lambda: True, timeout_s=0.5)
    finally:
        shutil.rmtree(directory)
    died = next(e for e in logs if e["event"] == "worker_died")
    assert died["mapping"] == "exp" and "SystemExit" in died["error"]
    assert any(e["event"] == "worker_restarted" for e in logs)


def received_while(
    sock: socket.socket, condition: Callable[[], bool], timeout_s: float = 10.0
) -> list[str]:
    """The notify lines that arrive while `condition()` holds, for at most `timeout_s`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while condition() and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            lines.extend(sock.recv(4096).decode().split("\n"))
    return lines


def test_a_bug_during_a_reload_keeps_the_old_configuration_running(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", idle(lab))

        def buggy(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(supervisor, "load_token", buggy)
        with capture_logs() as logs:
            daemon.request_reload()
            wait_for("the report", lambda: any(e["event"] == "config_reload_failed" for e in logs))
        failed = next(e for e in logs if e["event"] == "config_reload_failed")
        assert "internal error: RuntimeError: a bug" in failed["message"]
        lab.put("a.js", "a")
        wait_for("syncing goes on", lambda: lab.files() == {"a.js": b"a"})


def test_watch_refuses_one_study_in_two_mappings_by_id_and_uuid(lab: Lab) -> None:
    other = lab.world.folder.parent / "other"
    other.mkdir()
    study = lab.studies["exp"]
    lab.world.config_path.write_text(
        f"server:\n  url: {lab.server.url}\n  retries: 1\nstate_dir: {lab.world.state_dir}\n"
        f"mappings:\n  - name: one\n    folder: {lab.world.folder}\n    study: {study.id}\n"
        f"  - name: two\n    folder: {other}\n    study: {study.uuid}\n",
        encoding="utf-8",
    )
    code, err = watch_cli(lab)
    assert code == 2 and "same study" in err
    assert lab.server.count(kind="list") == 0


def test_a_second_watch_of_the_same_mappings_is_refused_naming_the_first(lab: Lab) -> None:
    lab.put("index.html", "<p>")
    with running(lab.daemon()):
        wait_for("the first daemon", idle(lab))
        code, err = watch_cli(lab)
    assert code == 2
    assert f"pid {os.getpid()}" in err and "'exp'" in err and "twice" in err
    assert lab.server.count(kind="upload") == 1  # the second one uploaded nothing


def test_a_second_watch_of_other_mappings_runs_and_both_show_in_status(lab: Lab) -> None:
    lab.add_mapping("other")
    lab.write_config()
    lab.put("index.html", "<p>")
    lab.put("other.html", "<p>", name="other")
    config = lab.config()
    first = supervisor.Daemon(
        config,
        token=lab.daemon()._token,
        client_factory=client_factory,
        names=("exp",),
        environ=lab.env,
        timings=FAST,
    )
    stop = threading.Event()
    with running(first):
        wait_for("the first daemon", idle(lab, "exp"))
        second = threading.Thread(
            target=supervisor.run,
            args=(argparse.Namespace(mappings=["other"]),),
            kwargs={
                "config": lab.config(),
                "environ": lab.env,
                "client_factory": client_factory,
                "stop": stop,
            },
        )
        second.start()
        try:
            wait_for("the second daemon", lambda: lab.files("other") == {"other.html": b"<p>"})

            def both_shown() -> bool:
                return "  other: idle" in lab.world.run("status").out

            wait_for("both daemons in the status", both_shown)
            assert "  exp: idle" in lab.world.run("status").out
        finally:
            stop.set()
            second.join(15)


def test_a_daemon_with_every_mapping_paused_says_so_loudly_and_again(
    lab: Lab, tmp_path: Path
) -> None:
    shutil.rmtree(lab.folders["exp"])  # a missing folder: the mapping can only wait
    timings = dataclasses.replace(FAST, nothing_syncing_every_s=0.3)
    with capture_logs() as logs, running(lab.daemon(timings=timings)):

        def said_twice() -> bool:
            return sum(1 for e in logs if e["event"] == "nothing_syncing") >= 2

        wait_for("the repeated warning", said_twice)
        shown = lab.world.run("status")
    said = [e for e in logs if e["event"] == "nothing_syncing"]
    assert said[0]["log_level"] == "error" and "does not exist" in said[0]["reasons"]
    assert "NOTHING IS BEING SYNCED" in shown.out and "does not exist" in shown.out


# ------------------------------------------------------------------ memory handed back


def test_freed_memory_is_handed_back_when_ready_and_then_every_trim_interval(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[float] = []
    monkeypatch.setattr(supervisor, "release_free_memory", lambda: trims.append(time.monotonic()))
    lab.put("a.js", "a")
    daemon = lab.daemon(timings=dataclasses.replace(FAST, trim_every_s=0.3))
    with capture_logs() as logs, running(daemon):
        wait_for("ready", lambda: any(e["event"] == "watch_ready" for e in logs))
        assert len(trims) == 1  # before systemd hears READY=1: the first passes' peak is over
        wait_for("a second trim", lambda: len(trims) >= 2)
    assert trims[1] - trims[0] >= 0.3


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_release_free_memory_calls_glibc_and_keeps_python_working() -> None:
    data = [bytes(1000) for _ in range(10_000)]  # malloc'ed blocks, then freed
    del data
    assert supervisor.release_free_memory() is True
    assert sum(len(bytes(10)) for _ in range(100)) == 1000
