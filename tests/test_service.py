"""service.py: the daemon against the real stand-in server — start, pause and resume per
mapping, outages, reload, stop, exit codes and the status file. The editor save patterns with
real observers are in test_watch_real.py."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from structlog.testing import capture_logs
from watchdog.events import FileCreatedEvent

from jatos_sync import service
from jatos_sync.cli import main
from jatos_sync.client import JatosClient
from jatos_sync.config import Config, load_config
from jatos_sync.credentials import Token, load_token
from jatos_sync.service import Daemon, MappingWorker, Timings, backoff_s, read_status
from jatos_sync.state import StateStore
from jatos_sync.testing import StandInServer
from jatos_sync.watch import Mode, Observer, default_observer_factory
from tests.conftest import World, make_world
from tests.test_watch import FakeObserver

FAST = Timings(
    pause_base_s=0.2,
    pause_max_s=1.0,
    auth_recheck_s=0.5,
    file_retry_base_s=0.2,
    file_retry_max_s=1.0,
    folder_check_s=0.1,
    stop_timeout_s=5.0,
    status_interval_s=0.05,
    tick_s=0.02,
)
FAST_WATCH = "watch:\n  debounce: 0.05\n  delete_delay: 0.4\n"


# ------------------------------------------------------------------------------ helpers


def wait_for(what: str, condition: Callable[[], object], timeout_s: float = 15.0) -> None:
    """Poll `condition` until it is true; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def client_factory(config: Config, token: Token) -> JatosClient:
    return JatosClient.for_server(config.server, token, backoff_base_s=0.05)


def asset_requests(server: StandInServer, kind: str) -> Counter[str]:
    """How often each asset path was uploaded (or deleted, …)."""
    return Counter(
        unquote(r.path.split("/assets/", 1)[1].split("?", 1)[0])
        for r in list(server.requests)
        if r.kind == kind
    )


class Lab:
    """A World (server, token, study, folder) with room for more mappings and a daemon."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.server = world.server
        self.env = {"JATOS_TOKEN": world.token}
        self.folders: dict[str, Path] = {"exp": world.folder}
        self.studies: dict[str, Any] = {"exp": world.study}
        self.watch = FAST_WATCH

    def add_mapping(self, name: str, *, locked: bool = False) -> Path:
        folder = self.world.folder.parent / name
        folder.mkdir(exist_ok=True)
        self.folders[name] = folder
        self.studies[name] = self.server.add_study(name, members=["alice"], locked=locked)
        return folder

    def write_config(self, *names: str, header: str = "") -> None:
        names = names or tuple(self.folders)
        entries = "".join(
            f"  - name: {n}\n    folder: {self.folders[n]}\n    study: {self.studies[n].id}\n"
            for n in names
        )
        self.world.config_path.write_text(
            f"{header}server:\n  url: {self.server.url}\n  retries: 1\n  timeout: 5\n"
            f"state_dir: {self.world.state_dir}\n{self.watch}mappings:\n{entries}",
            encoding="utf-8",
        )

    def config(self) -> Config:
        return load_config(self.world.config_path)

    def daemon(
        self,
        *,
        observer_factory: Callable[[Mode, float], Observer] | None = None,
        timings: Timings = FAST,
    ) -> Daemon:
        config = self.config()
        token = load_token(config.server, environ=self.env)
        return Daemon(
            config,
            token=token,
            client_factory=client_factory,
            environ=self.env,
            observer_factory=observer_factory or default_observer_factory,
            timings=timings,
        )

    def files(self, name: str = "exp") -> dict[str, bytes]:
        return self.server.files(self.studies[name])

    def put(self, rel: str, content: str, name: str = "exp") -> None:
        path = self.folders[name] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def status(self) -> dict[str, Any]:
        data = json.loads((self.world.state_dir / "status.json").read_text())
        assert isinstance(data, dict)
        return data

    def mapping_status(self, name: str = "exp") -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            for m in self.status()["mappings"]:
                if m["name"] == name:
                    return dict(m)
        return {}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    for world in make_world(tmp_path):
        lab = Lab(world)
        lab.write_config()
        yield lab


@contextlib.contextmanager
def running(daemon: Daemon) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=daemon.run, name="test-daemon")
    thread.start()
    try:
        yield thread
    finally:
        daemon.request_stop()
        thread.join(15)
        assert not thread.is_alive(), "the daemon did not stop"


def idle(lab: Lab, name: str = "exp") -> Callable[[], bool]:
    def check() -> bool:
        m = lab.mapping_status(name)
        return m.get("state") == "idle" and m.get("pending") == 0

    return check


# --------------------------------------------------------------------------------- tests


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, base_s=2.0, max_s=300.0) for n in range(10)] == [
        2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0
    ]  # fmt: skip
    assert backoff_s(10_000, base_s=2.0, max_s=300.0) == 300.0


def test_start_reconciles_fully_then_follows_edits(lab: Lab) -> None:
    lab.put("index.html", "<html>1</html>")
    lab.put("img/a.png", "png")
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the initial pass", lambda: len(lab.files()) == 2 and idle(lab)())
        assert lab.server.count(kind="list") == 1
        status = lab.status()
        assert status["pid"] == os.getpid() and status["state"] == "running"
        assert read_status(StateStore(lab.world.state_dir)) is not None
        lab.server.clear_requests()
        lab.put("img/a.png", "png2")
        wait_for("the edit", lambda: lab.files().get("img/a.png") == b"png2")
        wait_for("the status", lambda: lab.mapping_status().get("uploaded") == 3)
        assert asset_requests(lab.server, "upload") == {"img/a.png": 1}
        assert lab.server.count(kind="list") == 0
        m = lab.mapping_status()
        assert (m["mode"], m["state"], m["pending"], m["last_error"]) == ("events", "idle", 0, None)
        assert m["last_sync"] is not None and m["oldest_pending_since"] is None
    assert lab.status()["state"] == "stopped"
    assert read_status(StateStore(lab.world.state_dir)) is None


def test_a_locked_study_pauses_only_its_mapping(lab: Lab) -> None:
    lab.add_mapping("locked", locked=True)
    lab.write_config()
    lab.put("a.js", "a")
    lab.put("b.js", "b", name="locked")
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the free mapping", lambda: lab.files() == {"a.js": b"a"})
        wait_for("the pause", lambda: lab.mapping_status("locked").get("state") == "paused")
        assert "locked" in lab.mapping_status("locked")["last_error"]
        lab.put("a.js", "a2")
        lab.put("b.js", "b2", name="locked")
        wait_for("the edit beside the paused mapping", lambda: lab.files() == {"a.js": b"a2"})
        wait_for("pending", lambda: lab.mapping_status("locked").get("pending") == 1)
        assert lab.files("locked") == {}
        lab.server.set_locked(lab.studies["locked"], False)
        wait_for("the unlocked study", lambda: lab.files("locked") == {"b.js": b"b2"})
        wait_for("resumed", idle(lab, "locked"))


def test_a_server_outage_in_the_middle_of_a_burst_loses_nothing(lab: Lab) -> None:
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", idle(lab))
        for i in range(15):
            lab.put(f"burst/f{i:02}.js", f"one {i}")
        lab.server.kill()
        for i in range(15, 30):
            lab.put(f"burst/f{i:02}.js", f"two {i}")
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        assert "Cannot reach JATOS" in lab.mapping_status()["last_error"]
        lab.put("burst/f00.js", "changed while the server was down")
        lab.server.restart()
        expected = {
            f"burst/f{i:02}.js": (f"one {i}" if i < 15 else f"two {i}").encode() for i in range(30)
        }
        expected["burst/f00.js"] = b"changed while the server was down"
        wait_for("everything", lambda: lab.files() == expected)
        wait_for("resumed", idle(lab))


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


def test_the_folder_deleted_pauses_without_deleting_and_resumes_when_back(lab: Lab) -> None:
    lab.put("a.js", "a")
    lab.put("sub/b.js", "b")
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", lambda: len(lab.files()) == 2 and idle(lab)())
        for path in sorted(lab.world.folder.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        lab.world.folder.rmdir()
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        assert "does not exist" in lab.mapping_status()["last_error"]
        assert lab.server.count(kind="delete") == 0
        lab.put("a.js", "a")
        lab.put("sub/b.js", "b2")
        wait_for("the return", lambda: lab.files() == {"a.js": b"a", "sub/b.js": b"b2"})
        wait_for("resumed", idle(lab))
        lab.put("c.js", "c")
        wait_for("watched again", lambda: lab.files().get("c.js") == b"c")
    assert lab.server.count(kind="delete") == 0


def test_a_lost_event_is_healed_by_the_rescan_after_an_overflow(lab: Lab) -> None:
    observers: list[FakeObserver] = []

    def factory(mode: Mode, interval_s: float) -> FakeObserver:
        observers.append(FakeObserver(mode, interval_s))
        return observers[-1]

    daemon = lab.daemon(observer_factory=factory)
    with running(daemon):
        wait_for("the start", idle(lab))
        lab.put("seen.js", "s")
        lab.put("missed.js", "m")  # its event is lost
        observers[-1].emit(FileCreatedEvent(str(lab.world.folder.resolve() / "seen.js")))
        wait_for("the seen file", lambda: "seen.js" in lab.files())
        assert "missed.js" not in lab.files() and lab.server.count(kind="list") == 1
        import logging

        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        wait_for("the rescan", lambda: lab.files().get("missed.js") == b"m")
        assert lab.server.count(kind="list") == 2


def test_a_periodic_full_reconcile_finds_what_no_event_reported(lab: Lab) -> None:
    lab.watch = FAST_WATCH + "  reconcile_interval: 1s\n"
    lab.write_config()
    daemon = lab.daemon(observer_factory=FakeObserver)  # it reports nothing at all
    with running(daemon):
        wait_for("the start", idle(lab))
        lab.put("quiet.js", "q")
        wait_for("the reconcile", lambda: lab.files() == {"quiet.js": b"q"}, timeout_s=5)
        assert lab.server.count(kind="list") == 2


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


def test_a_broken_jatosignore_pauses_until_an_edit_fixes_it(lab: Lab) -> None:
    # A long backoff: only the edit of the ignore file can resume the mapping in time.
    daemon = lab.daemon(timings=dataclasses.replace(FAST, pause_base_s=60.0))
    with running(daemon):
        wait_for("the start", idle(lab))
        lab.put(".jatosignore", "*.txt\n\\\n")
        lab.put("notes.txt", "n")
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        assert ".jatosignore" in lab.mapping_status()["last_error"]
        lab.put(".jatosignore", "*.txt\n")
        lab.put("a.js", "a")
        wait_for("the fix", lambda: lab.files() == {"a.js": b"a"})
        wait_for("resumed", idle(lab))


def test_a_folder_missing_at_start_is_synced_once_it_appears(lab: Lab) -> None:
    lab.world.folder.rmdir()
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        lab.put("a.js", "a")
        wait_for("the sync", lambda: lab.files() == {"a.js": b"a"})


# ------------------------------------------------------------------------- run()


def run_watch(lab: Lab, stop: threading.Event) -> int:
    return service.run(
        argparse.Namespace(mappings=[]),
        config_path=lab.world.config_path,
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


def test_read_status_needs_a_running_daemon(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert read_status(store) is None
    store.status_path().write_text("{not json")
    assert read_status(store) is None
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    document = {
        "pid": int(done.stdout),
        "state": "running",
        "mappings": [{"name": "exp", "last_sync": "2030-01-01T00:00:00.000+00:00"}],
    }
    store.status_path().write_text(json.dumps(document))
    assert read_status(store) is None  # that process is gone
    document["pid"] = os.getpid()
    store.status_path().write_text(json.dumps(document))
    status = read_status(store, now=lambda: 1893456010.0)
    assert status is not None
    assert status["mappings"][0]["last_sync_age_s"] == 10.0
    assert status["mappings"][0]["oldest_pending_age_s"] is None
    document["state"] = "stopped"
    store.status_path().write_text(json.dumps(document))
    assert read_status(store) is None


def test_a_worker_reports_pending_changes_while_paused(lab: Lab) -> None:
    lab.server.set_locked(lab.studies["exp"], True)
    lab.put("a.js", "a")  # a locked study is readable: only the upload fails
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        lab.put("b.js", "b")
        lab.put("c.js", "c")
        wait_for("two pending", lambda: lab.mapping_status().get("pending") == 2)
        m = lab.mapping_status()
        assert m["oldest_pending_since"] is not None and m["oldest_pending_age_s"] >= 0
        worker = daemon.workers["exp"]
        assert isinstance(worker, MappingWorker) and worker.status.state == "paused"


# ----------------------------------------------------------------------------- signals


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
