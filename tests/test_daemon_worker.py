"""daemon/worker.py: one mapping followed against the real stand-in server — the initial
pass, edits, pause and resume (locked study, outage, broken ignore file, vanished folder),
lost events and periodic reconciles. The editor save patterns with real observers are in
test_watch_real.py; faults in depth in test_chaos_daemon.py."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileCreatedEvent

from jatos_sync import sync
from jatos_sync.credentials import load_token
from jatos_sync.daemon.status import read_status
from jatos_sync.daemon.worker import MappingWorker, backoff_s
from jatos_sync.debounce import Batch
from jatos_sync.model import RelPath
from jatos_sync.state import StateStore
from jatos_sync.testing import StandInServer
from jatos_sync.testing.app import classify
from jatos_sync.testing.wire import Request, Response
from jatos_sync.watch import FolderWatcher, Mode
from tests.daemon_lab import (
    FAST,
    FAST_WATCH,
    Lab,
    asset_requests,
    client_factory,
    idle,
    make_lab,
    running,
    wait_for,
)
from tests.test_watch import FakeObserver


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(tmp_path)


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


# ------------------------------------------------------- no exception ends a worker silently


def test_a_generated_jatosignore_of_10000_lines_keeps_the_mapping_syncing(lab: Lab) -> None:
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", idle(lab))
        lines = [f"build/chunk{i}/asset-{i:05}.js" for i in range(10_000)]
        lab.put(".jatosignore", "\n".join(lines) + "\n")
        lab.put("build/chunk7/asset-00007.js", "generated")
        lab.put("index.html", "<html></html>")
        wait_for("the upload", lambda: lab.files() == {"index.html": b"<html></html>"})
        wait_for("idle again", idle(lab))
        assert lab.mapping_status()["last_error"] is None
        lab.put("build/chunk7/kept.js", "kept")
        wait_for("the next edit", lambda: lab.files().get("build/chunk7/kept.js") == b"kept")
        assert "build/chunk7/asset-00007.js" not in lab.files()
        assert daemon.workers["exp"].thread.is_alive()


@contextlib.contextmanager
def broken(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> Iterator[list[bool]]:
    """Make `owner.name` raise RuntimeError("a bug") while the yielded flag is [True]."""
    real = getattr(owner, name)
    flag = [True]

    def buggy(*args: Any, **kwargs: Any) -> Any:
        if flag[0]:
            raise RuntimeError("a bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, buggy)
    yield flag


def paused_by_a_bug(lab: Lab) -> Callable[[], bool]:
    def check() -> bool:
        m = lab.mapping_status()
        return m.get("state") == "paused" and "internal error: RuntimeError: a bug" in (
            m.get("last_error") or ""
        )

    return check


def test_a_bug_in_a_pass_pauses_the_mapping_which_is_retried_until_it_works(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", idle(lab))
        with broken(monkeypatch, sync, "make_plan") as bug:
            lab.put("a.js", "a")
            wait_for("the pause", paused_by_a_bug(lab))
            calls = lab.server.count(kind="list")
            wait_for("a retry (a full pass)", lambda: lab.server.count(kind="list") > calls)
            assert daemon.workers["exp"].thread.is_alive()
            bug[0] = False
        wait_for("the upload", lambda: lab.files() == {"a.js": b"a"})
        wait_for("resumed", idle(lab))
        assert lab.mapping_status()["last_error"] is None


def test_a_bug_outside_a_pass_pauses_the_mapping_too(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    with broken(monkeypatch, FolderWatcher, "start") as bug:
        daemon = lab.daemon()
        with running(daemon):
            wait_for("the pause", paused_by_a_bug(lab))
            assert daemon.workers["exp"].thread.is_alive()
            bug[0] = False
            lab.put("a.js", "a")
            wait_for("the upload", lambda: lab.files() == {"a.js": b"a"})
            wait_for("resumed", idle(lab))
            lab.put("a.js", "a2")  # followed by events again
            wait_for("the edit", lambda: lab.files() == {"a.js": b"a2"})


# ------------------------------------------------- a connection cut while a body is read


class CutDownloads:
    """Downloads from the stand-in end halfway through the announced length (the
    connection closes): `remaining` times, or every time while it is negative."""

    def __init__(self, server: StandInServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real = server._app.handle
        self.remaining = 0
        self.cut = 0
        monkeypatch.setattr(server._app, "handle", self._handle)

    def _handle(self, req: Request) -> Response:
        answer = self._real(req)
        if classify(req.method, req.path) != "download" or answer.status != 200:
            return answer
        if self.remaining == 0:
            return answer
        self.remaining -= 1 if self.remaining > 0 else 0
        self.cut += 1
        data = answer.stream.read() if answer.stream is not None else answer.body
        if answer.stream is not None:
            answer.stream.close()
        assert len(data) > 1, "too short to cut"
        cut = io.BytesIO(data[: len(data) // 2])
        return Response(200, answer.headers, stream=cut, stream_len=len(data), close=True)


# Every upload over a file the server already has first checks the server's copy.
CHECK_EVERY_COPY = dataclasses.replace(FAST, verify_after_s=0.0)


def test_a_connection_cut_while_a_stale_server_copy_is_checked_is_retried(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts = CutDownloads(lab.server, monkeypatch)
    lab.put("a.js", "// version 1\n")
    daemon = lab.daemon(timings=CHECK_EVERY_COPY)
    with running(daemon):
        wait_for("the start", lambda: lab.files() == {"a.js": b"// version 1\n"} and idle(lab)())
        cuts.remaining = 1
        lab.put("a.js", "// version 2\n")
        wait_for("the edit", lambda: lab.files() == {"a.js": b"// version 2\n"})
        wait_for("idle", idle(lab))
        assert cuts.cut == 1 and lab.mapping_status()["last_error"] is None
        assert daemon.workers["exp"].thread.is_alive()


def test_a_server_that_keeps_cutting_downloads_pauses_the_mapping_until_it_stops(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts = CutDownloads(lab.server, monkeypatch)
    lab.put("a.js", "// version 1\n")
    daemon = lab.daemon(timings=CHECK_EVERY_COPY)
    with running(daemon):
        wait_for("the start", lambda: lab.files() == {"a.js": b"// version 1\n"} and idle(lab)())
        cuts.remaining = -1
        lab.put("a.js", "// version 2\n")
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        assert "Cannot reach JATOS" in lab.mapping_status()["last_error"]
        assert lab.files() == {"a.js": b"// version 1\n"}
        cuts.remaining = 0
        wait_for("the edit", lambda: lab.files() == {"a.js": b"// version 2\n"})
        wait_for("resumed", idle(lab))


# ------------------------------------------------ "cannot read it" is never "it is gone"


@pytest.mark.parametrize(
    "make",
    [
        lambda p: os.mkfifo(p),
        lambda p: os.symlink("a.jss", p),  # a typo in the link's target
        lambda p: os.symlink(p.name, p),  # a link to itself
    ],
    ids=["fifo", "dangling-link", "link-loop"],
)
def test_watch_keeps_the_server_copy_of_a_file_replaced_by_something_it_cannot_sync(
    lab: Lab, make: Callable[[Path], None]
) -> None:
    lab.put("a.js", "a")
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", lambda: lab.files() == {"a.js": b"a"} and idle(lab)())
        path = lab.world.folder / "a.js"
        path.unlink()
        make(path)
        lab.put("zz.js", "after")  # its pass comes after the one for a.js
        wait_for("the later edit", lambda: "zz.js" in lab.files())
        wait_for("idle", idle(lab))
        assert lab.files() == {"a.js": b"a", "zz.js": b"after"}
        listed = lab.server.count(kind="list")
        daemon.workers["exp"].request_rescan()  # and a full pass agrees
        wait_for("the full pass", lambda: lab.server.count(kind="list") > listed and idle(lab)())
        assert lab.files() == {"a.js": b"a", "zz.js": b"after"}
    assert lab.server.count(kind="delete") == 0


def test_a_subfolder_the_daemon_may_not_enter_fails_its_files_and_deletes_nothing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.put("sub/a.js", "a")
    daemon = lab.daemon()
    with running(daemon):
        wait_for("the start", lambda: lab.files() == {"sub/a.js": b"a"} and idle(lab)())
        real_stat = os.stat
        inside = str(lab.world.folder / "sub") + os.sep
        blocked = [True]

        def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if blocked[0] and os.fspath(path).startswith(inside):  # "sub" lost its x bit
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)
        lab.put("sub/a.js", "a2")
        wait_for("the failure", lambda: lab.mapping_status().get("failing") == 1)
        m = lab.mapping_status()
        assert m["state"] == "idle" and "sub/a.js" in m["last_error"]
        assert "permission denied" in m["last_error"]
        assert lab.files() == {"sub/a.js": b"a"}
        blocked[0] = False  # the folder is enterable again: the retry uploads
        wait_for("the retry", lambda: lab.files() == {"sub/a.js": b"a2"})
        wait_for("idle", idle(lab))
    assert lab.server.count(kind="delete") == 0


# ------------------------------------------------------------- what cannot be followed


def test_a_linked_folder_that_cannot_be_watched_is_named_by_status(
    lab: Lab, tmp_path: Path
) -> None:
    shared = (tmp_path / "shared").resolve()
    shared.mkdir()
    (shared / "words.csv").write_text("red\n")
    os.symlink(shared, lab.world.folder / "stimuli")

    def factory(mode: Mode, interval_s: float) -> FakeObserver:
        denied = PermissionError(13, "Permission denied")
        return FakeObserver(mode, interval_s, fail_paths={str(shared): denied})

    daemon = lab.daemon(observer_factory=factory)
    with running(daemon):
        wait_for("the start", lambda: "stimuli/words.csv" in lab.files() and idle(lab)())
        wait_for("the status", lambda: lab.mapping_status().get("not_followed"))
        (problem,) = lab.mapping_status()["not_followed"]
        assert problem.startswith(f"stimuli -> {shared}: cannot be watched (Permission denied)")
        shown = lab.world.run("status")
        assert f"not followed: stimuli -> {shared}: cannot be watched" in shown.out


def test_a_quick_pass_before_the_server_is_known_waits_for_a_full_pass_turn(lab: Lab) -> None:
    """A quick pass falls back to a full pass until the server's files are known; it then
    takes a turn among the daemon's full passes like any other."""
    lab.put("index.html", "<html>1</html>")
    config = lab.config()
    turns = threading.Semaphore(1)
    worker = MappingWorker(
        config.mappings[0],
        client=client_factory(config, load_token(config.server, environ=lab.env)),
        store=StateStore(config.state_dir),
        watch=config.watch,
        full_passes=turns,
    )
    assert turns.acquire(blocking=False)  # another mapping's full pass is running
    edit = Batch(dirty=frozenset({RelPath("index.html")}))
    passing = threading.Thread(target=worker._pass, args=(edit,))
    passing.start()
    passing.join(0.5)
    assert passing.is_alive() and lab.files() == {}  # waiting for its turn
    turns.release()
    passing.join(10)
    assert not passing.is_alive() and lab.files() == {"index.html": b"<html>1</html>"}
