"""Chaos with a watching daemon (issue 5, item 1; the one-shot half is test_chaos.py).

An in-process `Daemon` (short `Timings`, so retries and backoff take fractions of a second)
follows a folder while the stand-in answers 503s, drops connections, stalls for 2 s, dies and
comes back, refuses a revoked token, locks the study, while the state directory is full or
read-only, and while the local folder is deleted, replaced by a file or "unmounted". One
subprocess test does the token swap with a real SIGHUP.

When the faults stop, every test checks the rules of docs/safety.md (`assert_settled`):

- the server holds exactly the folder's syncable files, plus the ignored files only it had;
- the folder holds exactly what the test wrote (the daemon never changes it);
- each file deleted locally was deleted on the server exactly once, and nothing else was;

and, while the faults last, that each failure was visible: as a JSON log event (structlog
configured to a StringIO) and in the status (`read_status`, or the worker's own status when
the state directory itself is broken) with its state, `last_error` and `withheld` count.

Faults are seeded or triggered by the n-th request (`Intercept`), and every wait is a bounded
poll of an observable condition.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import structlog

from jatos_sync.daemon.status import MappingStatus, read_status
from jatos_sync.logs import configure_logging
from jatos_sync.state import StateStore
from jatos_sync.testing.wire import Request, Response
from tests.conftest import World, assert_no_token, make_world
from tests.daemon_lab import FAST, Lab, running, wait_for
from tests.test_chaos import Handler, Intercept, Killer, StateDisk, _crash_at

IGNORE_FILE = "*.tmp\n"
START: dict[str, str] = {
    "index.html": "<html><script src='js/main.js'></script></html>\n",
    "js/main.js": "console.log('v1');\n",
    "js/lib.js": "export const x = 1;\n",
    "css/style.css": "body { color: black; }\n",
    "img/a b.png": "PNG one\n",
    "stimuli/list 1.csv": "word,colour\nred,blue\n",
    "stimuli/list 2.csv": "word,colour\ngreen,red\n",
    "old/one.js": "// one\n",
    "old/two.js": "// two\n",
    "scratch.tmp": "ignored: never uploaded\n",
    ".jatosignore": IGNORE_FILE,
}
SERVER_ONLY = {"notes.tmp": b"a colleague's ignored notes: never deleted\n"}


def is_ignored(rel: str) -> bool:
    """What this suite's `.jatosignore` (plus the built-in rule for the file itself) skips."""
    return rel.endswith(".tmp") or rel.rsplit("/", 1)[-1] == ".jatosignore"


# ------------------------------------------------------------------------------ the log


class Log:
    """The program's structlog output as JSON lines, as journald or a CI log would see it."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def events(self, name: str | None = None, **fields: str) -> list[dict[str, Any]]:
        found = []
        for line in self.stream.getvalue().splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if name is not None and event.get("event") != name:
                continue
            if all(text in str(event.get(key, "")) for key, text in fields.items()):
                found.append(event)
        return found

    def has(self, name: str, **fields: str) -> bool:
        return bool(self.events(name, **fields))


@pytest.fixture
def log() -> Iterator[Log]:
    saved = structlog.get_config()
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, environ={})
    try:
        yield Log(stream)
    finally:
        structlog.configure(**saved)
        print(stream.getvalue())  # shown by pytest for a failing test only


# ------------------------------------------------------------------------------ the lab


class ChaosLab(Lab):
    """daemon_lab's Lab with server settings to vary, and a model of every folder: what
    it must hold, what was really deleted in it, and what only the server has (ignored)."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.retries = 1
        self.timeout_s = 5.0
        self.concurrency = 2
        self.token_file: Path | None = None
        self.model: dict[str, dict[str, bytes]] = {"exp": {}}
        self.deleted: dict[str, set[str]] = {"exp": set()}
        self.server_only: dict[str, dict[str, bytes]] = {"exp": {}}

    def add_mapping(self, name: str, *, locked: bool = False) -> Path:
        folder = super().add_mapping(name, locked=locked)
        self.model[name], self.deleted[name], self.server_only[name] = {}, set(), {}
        return folder

    def write_config(self, *names: str, header: str = "") -> None:
        names = names or tuple(self.folders)
        token = f"  token_file: {self.token_file}\n" if self.token_file else ""
        entries = "".join(
            f"  - name: {n}\n    folder: {self.folders[n]}\n    study: {self.studies[n].id}\n"
            for n in names
        )
        self.world.config_path.write_text(
            f"{header}server:\n  url: {self.server.url}\n  retries: {self.retries}\n"
            f"  timeout: {self.timeout_s}\n  concurrency: {self.concurrency}\n{token}"
            f"state_dir: {self.world.state_dir}\n{self.watch}mappings:\n{entries}",
            encoding="utf-8",
        )

    def use_token_file(self, token: str) -> None:
        self.token_file = self.world.config_path.parent / "jatos-token"
        self.replace_token(token)

    def replace_token(self, token: str) -> None:
        assert self.token_file is not None
        tmp = self.token_file.with_name(".jatos-token.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(token + "\n")
        os.replace(tmp, self.token_file)

    # -------------------------------------------------------------- the folders

    def edit(self, rel: str, content: str, name: str = "exp") -> None:
        self.put(rel, content, name=name)
        self.model[name][rel] = content.encode()

    def remove(self, rel: str, name: str = "exp") -> None:
        (self.folders[name] / rel).unlink()
        del self.model[name][rel]
        self.deleted[name].add(rel)

    def seed(self, name: str = "exp") -> None:
        """The starting files, and an ignored file only the server has."""
        for rel, content in START.items():
            self.edit(rel, content, name)
        for rel, data in SERVER_ONLY.items():
            self.server.put_file(self.studies[name], rel, data)
            self.server_only[name][rel] = data

    def local(self, name: str = "exp") -> dict[str, bytes]:
        folder = self.folders[name]
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    def expected_remote(self, name: str = "exp") -> dict[str, bytes]:
        synced = {rel: data for rel, data in self.model[name].items() if not is_ignored(rel)}
        return {**synced, **self.server_only[name]}

    def build_copy(self, at: Path, name: str = "exp") -> None:
        """The folder's model written to `at` (moved into place in one rename later)."""
        for rel, data in self.model[name].items():
            path = at / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    # -------------------------------------------------------------- the server

    def deletions(self, name: str = "exp") -> Counter[str]:
        """Asset paths of this study that DELETE requests removed (2xx), with their count."""
        marker = f"/studies/{self.studies[name].id}/assets/"
        return Counter(
            unquote(r.path.split(marker, 1)[1].split("?", 1)[0])
            for r in list(self.server.requests)
            if r.kind == "delete" and marker in r.path and 200 <= r.status < 300
        )

    # -------------------------------------------------------------- the status

    def running_status(self, name: str = "exp") -> dict[str, Any]:
        """The mapping as `read_status` shows it (empty before the first status write)."""
        status = read_status(StateStore(self.world.state_dir))
        for mapping in (status or {}).get("mappings") or []:
            if mapping.get("name") == name:
                return dict(mapping)
        return {}


@pytest.fixture
def lab(tmp_path: Path, log: Log) -> Iterator[ChaosLab]:
    for world in make_world(tmp_path):
        lab = ChaosLab(world)
        lab.write_config()
        yield lab


# --------------------------------------------------------------------------- checks


def settled(lab: ChaosLab, name: str = "exp") -> Callable[[], bool]:
    def check() -> bool:
        m = lab.running_status(name)
        return (
            m.get("state") == "idle"
            and m.get("pending") == 0
            and m.get("failing") == 0
            and m.get("withheld") == 0
            and m.get("last_error") is None
            and lab.files(name) == lab.expected_remote(name)
        )

    return check


def assert_settled(lab: ChaosLab, name: str = "exp", *, timeout_s: float = 15.0) -> None:
    """The faults are over: the daemon catches up and every rule of docs/safety.md holds."""
    wait_for(f"{name} to settle", settled(lab, name), timeout_s)
    assert lab.local(name) == lab.model[name], "the daemon changed the local folder"
    assert lab.files(name) == lab.expected_remote(name), "the server does not match the folder"
    # With the server equal to the folder, every local deletion was carried out; a file
    # deleted before its upload needed none.
    deletions = lab.deletions(name)
    assert set(deletions) <= lab.deleted[name], f"spurious: {set(deletions) - lab.deleted[name]}"
    assert set(deletions.values()) <= {1}, f"each local deletion once: {deletions}"


def wait_started(lab: ChaosLab, name: str = "exp") -> None:
    wait_for(f"{name}: the initial pass", settled(lab, name))


def paused(lab: ChaosLab, name: str = "exp", *, says: str) -> Callable[[], bool]:
    def check() -> bool:
        m = lab.running_status(name)
        return m.get("state") == "paused" and says in (m.get("last_error") or "")

    return check


def assert_no_token_in(log: Log, tokens: set[str]) -> None:
    assert_no_token(tokens, log.stream.getvalue(), "the log")


def burst(lab: ChaosLab, tag: str, *, new: int, name: str = "exp") -> None:
    """Edits of the starting files, `new` new files, ignored scratch files."""
    for rel in ("js/main.js", "css/style.css", "index.html"):
        lab.edit(rel, f"/* {tag} */\n", name)
    for i in range(new):
        lab.edit(f"{tag}/f{i:02}.js", f"// {tag} {i}\n", name)
    lab.edit(f"{tag}/build.tmp", "ignored\n", name)


# ---------------------------------------------------------------------- network faults


def test_503s_and_dropped_connections_during_a_burst_lose_nothing(lab: ChaosLab, log: Log) -> None:
    # One request at a time: then each injected fault is exactly one log event (a retry, or
    # the failure of a file or of a pass), and the count below can be exact.
    lab.concurrency = 1
    lab.write_config()
    lab.seed()
    daemon = lab.daemon()
    with running(daemon):
        wait_started(lab)
        faults = lab.server.faults
        faults.seed = 11
        faults.error_rate, faults.drop_rate = 0.3, 0.1
        burst(lab, "burst", new=12)
        lab.remove("old/one.js")
        lab.remove("img/a b.png")
        seen: list[dict[str, Any]] = []
        edits = iter(range(200))

        def injected() -> int:
            return sum(r.status in (0, 503) for r in list(lab.server.requests))

        def enough_chaos() -> bool:
            """A failure the retries could not hide reached the status, and the faults went
            on for a while; edits keep coming whenever the daemon has caught up."""
            m = lab.running_status()
            if not seen and (m.get("state") == "paused" or m.get("failing")):
                seen.append(m)
            if seen and injected() >= 25:
                return True
            if m.get("state") == "idle" and m.get("pending") == 0:
                n = next(edits)
                lab.edit(f"more/m{n:03}.js", f"// edit {n}\n")
                if n % 5 == 4:
                    lab.remove(f"more/m{n - 1:03}.js")
            return False

        wait_for("failures in the status, and 25 faults", enough_chaos, timeout_s=20)
        faults.reset()
        assert_settled(lab)

    # Every fault the server injected was logged by the client: as a retry, or, for the last
    # attempt of a request, as a failed file or a failed pass.
    faulted = [r for r in list(lab.server.requests) if r.status in (0, 503)]
    retries = log.events("http_retry")
    assert {e["reason"] for e in retries} >= {"HTTP 503"}
    assert {e["reason"] for e in retries} - {"HTTP 503"}, "no dropped connection was retried"
    gave_up = log.events("file_failed") + log.events("mapping_failed")
    assert len(retries) + len(gave_up) == len(faulted), (
        f"{len(faulted)} faults, {len(retries)} retries, {len(gave_up)} failures logged"
    )
    # What the status showed was logged too.
    (shown,) = seen
    said = [e.get("error") or e.get("reason") or "" for e in log.events()]
    assert any(text and text in shown["last_error"] for text in said), shown
    assert_no_token_in(log, {lab.world.token})


@pytest.mark.parametrize("beyond_timeout", [False, True], ids=["within-timeout", "beyond"])
def test_a_2s_latency_spike_delays_or_pauses_but_loses_nothing(
    lab: ChaosLab, log: Log, beyond_timeout: bool
) -> None:
    lab.timeout_s = 1.0 if beyond_timeout else 5.0
    lab.write_config()
    lab.seed()
    daemon = lab.daemon()
    with running(daemon):
        wait_started(lab)
        faults = lab.server.faults
        uploads_before = lab.server.count(kind="upload")
        states: set[str] = set()
        faults.latency_s = 2.0
        lab.edit("js/main.js", "console.log('during the spike');\n")
        lab.edit("js/new.js", "// new during the spike\n")
        lab.remove("old/two.js")
        if beyond_timeout:
            wait_for(
                "the pause",
                paused(lab, says="timed out"),
                timeout_s=10,
            )
        else:

            def spike_answered() -> bool:
                states.add(lab.running_status().get("state", ""))
                return lab.server.count(kind="upload") > uploads_before

            wait_for("an upload answered through the spike", spike_answered, timeout_s=10)
        faults.latency_s = 0.0
        assert_settled(lab, timeout_s=20)

    timeouts = log.events("http_retry", reason="timed out")
    if beyond_timeout:
        assert timeouts
        assert log.has("mapping_paused", reason="timed out")
        assert log.has("mapping_resumed", mapping="exp")
    else:
        assert not timeouts and not log.has("mapping_paused")
        assert "paused" not in states


# ---------------------------------------------------------------------- the server dies


def test_the_server_killed_mid_burst_and_restarted_loses_nothing(
    lab: ChaosLab, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.seed()
    daemon = lab.daemon()
    with running(daemon):
        wait_started(lab)
        intercept = Intercept(lab.server, monkeypatch)
        _crash_at(intercept, 4, after_handling=True)  # stored, but the answer is lost
        killer = Killer(lab.server, intercept)
        try:
            burst(lab, "burst", new=10)
            lab.remove("old/one.js")
            wait_for("the pause", paused(lab, says="Cannot reach JATOS"))
        finally:
            killer.join()
        # The server stays down while the user goes on working.
        lab.edit("burst/f00.js", "// changed while the server was down\n")
        lab.edit("down.js", "// new while the server was down\n")
        lab.remove("old/two.js")
        wait_for("pending changes", lambda: lab.running_status().get("pending", 0) >= 3)
        assert lab.running_status()["state"] == "paused"
        intercept.crashed.clear()
        lab.server.restart()
        assert_settled(lab)
    assert log.has("mapping_paused", reason="Cannot reach JATOS")
    assert log.has("mapping_resumed", mapping="exp")


# ---------------------------------------------------------------------- token and lock


def test_a_token_revoked_mid_burst_pauses_until_a_new_one_is_reloaded(
    lab: ChaosLab, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.use_token_file(lab.world.token)
    lab.write_config()
    lab.seed()
    # Only the reload may resume the mapping in time, not the periodic re-check.
    daemon = lab.daemon(timings=dataclasses.replace(FAST, auth_recheck_s=60.0))
    with running(daemon):
        wait_started(lab)
        intercept = Intercept(lab.server, monkeypatch)

        def revoke_at_the_third(number: int, req: Request, real: Handler) -> Response:
            if number == 3:
                lab.server.revoke_token(lab.world.token)
            return real(req)

        intercept.on_upload = revoke_at_the_third
        burst(lab, "burst", new=8)
        lab.remove("old/one.js")
        wait_for("the pause", paused(lab, says="refused the token"))
        lab.edit("while-paused.js", "// waits for the new token\n")
        wait_for("pending", lambda: lab.running_status().get("pending", 0) >= 1)
        assert lab.deletions() == Counter(), "deletions wait for a pass without failures"

        fresh = lab.server.add_token("alice")
        lab.replace_token(fresh)
        daemon.request_reload()
        assert_settled(lab)
    assert log.has("mapping_paused", reason="refused the token")
    (reloaded,) = log.events("config_reloaded")
    assert reloaded["new_token"] is True and reloaded["kept"] == ["exp"]
    assert log.has("mapping_resumed", mapping="exp")
    assert_no_token_in(log, {lab.world.token, fresh})


def test_a_locked_study_pauses_its_mapping_while_the_others_sync_and_resumes_in_place(
    lab: ChaosLab, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.add_mapping("other")
    lab.write_config()
    lab.seed()
    lab.edit("o.js", "// other 1\n", name="other")
    daemon = lab.daemon()
    with running(daemon):
        wait_started(lab)
        wait_started(lab, "other")
        worker, thread = daemon.workers["exp"], daemon.workers["exp"].thread
        intercept = Intercept(lab.server, monkeypatch)
        exp_assets = f"/studies/{lab.studies['exp'].id}/assets/"
        exp_uploads = Counter[str]()
        counting = threading.Lock()

        def lock_at_the_second(_number: int, req: Request, real: Handler) -> Response:
            if exp_assets in req.path:
                with counting:
                    exp_uploads["n"] += 1
                    if exp_uploads["n"] == 2:
                        lab.server.set_locked(lab.studies["exp"], True)
            return real(req)

        intercept.on_upload = lock_at_the_second
        burst(lab, "burst", new=6)
        lab.remove("old/one.js")
        wait_for("the pause", paused(lab, says="locked"))

        # The other mapping keeps syncing meanwhile, more than once.
        for n in (2, 3):
            lab.edit("o.js", f"// other {n}\n", name="other")
            lab.edit(f"o{n}.js", f"// other new {n}\n", name="other")
            assert_settled(lab, "other")
        lab.edit("while-locked.js", "// waits for the unlock\n")
        wait_for("pending", lambda: lab.running_status().get("pending", 0) >= 1)
        assert lab.running_status()["state"] == "paused"
        assert lab.deletions() == Counter()

        lab.server.set_locked(lab.studies["exp"], False)
        assert_settled(lab)
        assert daemon.workers["exp"] is worker and worker.thread is thread
        assert thread.is_alive(), "resumed in place, not restarted"
    assert log.has("mapping_paused", mapping="exp", reason="locked")
    assert not log.has("mapping_paused", mapping="other")
    assert log.has("mapping_resumed", mapping="exp")


# ---------------------------------------------------------------------- the state directory


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_broken_state_directory_is_reported_and_syncing_goes_on(
    lab: ChaosLab, log: Log, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    lab.seed()
    disk = StateDisk(lab.world.state_dir, monkeypatch)
    daemon = lab.daemon()
    with running(daemon):
        wait_started(lab)
        worker = daemon.workers["exp"]
        disk.full() if how == "full" else disk.read_only()

        def worker_says(text: str) -> Callable[[], bool]:
            # The status file lives in the broken directory: the worker's own status is
            # what systemd's STATUS= line and the next status write show.
            def check() -> bool:
                status: MappingStatus = worker.status
                return text in (status.last_error or "")

            return check

        lab.edit("js/main.js", "console.log('disk trouble 1');\n")
        lab.edit("js/fresh.js", "// new while the disk is broken\n")
        lab.remove("old/one.js")
        wait_for("the problem in the status", worker_says("Could not save the sync state"))
        wait_for(
            "the edits on the server while the disk is still broken",
            lambda: lab.files() == lab.expected_remote(),
        )
        # The same files edited again: the daemon must still know they are its own uploads.
        lab.edit("js/main.js", "console.log('disk trouble 2');\n")
        lab.edit("js/fresh.js", "// edited again while the disk is broken\n")
        wait_for(
            "the second edits on the server while the disk is still broken",
            lambda: lab.files() == lab.expected_remote(),
            timeout_s=5,  # passes take milliseconds; the pause backoff is at most 1 s
        )
        disk.healthy()
        assert_settled(lab)
    assert log.has("state_not_saved", error="Could not save the sync state")
    assert log.has("status_not_written", path=f"{os.getpid()}-")


def test_a_backup_that_does_not_fit_holds_the_overwrite_back_and_says_why(
    lab: ChaosLab, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nearly full disk: the small state file still fits, the copy of a colleague's
    version does not. The colleague's file must stay, and the log and status say why."""
    lab.seed()
    first = lab.world.run("sync")  # the folder's first sync, before the colleague's edit
    assert first.code == 0, first.err
    configure_logging(fmt="json", stream=log.stream, environ={})  # `run` configured its own
    colleague = b"body { color: red; } /* a colleague, in the JATOS GUI */\n"
    lab.server.put_file(lab.studies["exp"], "css/style.css", colleague)
    lab.edit("css/style.css", "body { color: blue; } /* mine */\n")
    backups = lab.world.state_dir / "backups"
    real_replace = os.replace
    full = threading.Event()
    full.set()

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if full.is_set() and Path(os.fsdecode(dst)).is_relative_to(backups):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(dst))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    daemon = lab.daemon()
    with running(daemon):

        def refused_in_status() -> bool:
            m = lab.running_status()
            return m.get("failing") == 1 and "css/style.css" in (m.get("last_error") or "")

        wait_for("the refused overwrite in the status", refused_in_status)
        assert lab.files()["css/style.css"] == colleague, "overwritten without a copy"
        assert lab.files()["js/main.js"] == START["js/main.js"].encode(), "the rest goes on"
        full.clear()
        assert_settled(lab)
    saved = [p.read_bytes() for p in backups.rglob("style.css")]
    assert saved == [colleague], "the colleague's version must survive locally"
    refusal = [
        e
        for e in log.events()
        if e.get("level") in ("warning", "error") and "css/style.css" in json.dumps(e)
    ]
    assert refusal, "the refused overwrite of css/style.css is not in the log"


def test_a_colleagues_edit_between_full_passes_is_backed_up_before_it_is_overwritten(
    lab: ChaosLab, log: Log
) -> None:
    """docs/safety.md, rule 6: server content this tool did not write is saved before it is
    replaced, also when the daemon replaces it in a pass that lists nothing."""
    lab.seed()
    # Check every server copy before replacing it (production: those not seen for 60 s).
    daemon = lab.daemon(timings=dataclasses.replace(FAST, verify_after_s=0.0))
    with running(daemon):
        wait_started(lab)
        colleague = b"body { color: red; } /* a colleague, in the JATOS GUI */\n"
        lab.server.put_file(lab.studies["exp"], "css/style.css", colleague)
        lab.edit("css/style.css", "body { color: navy; }\n")
        assert_settled(lab)
    saved = [p.read_bytes() for p in (lab.world.state_dir / "backups").rglob("style.css")]
    assert saved == [colleague], "the colleague's version was overwritten without a copy"
    assert log.has("backup_saved", path="css/style.css")


# ---------------------------------------------------------------------- the local folder


@pytest.mark.parametrize("how", ["deleted", "replaced-by-a-file", "unmounted"])
def test_a_vanished_folder_deletes_nothing_and_syncing_resumes_when_it_is_back(
    lab: ChaosLab, log: Log, how: str
) -> None:
    lab.seed()
    daemon = lab.daemon()
    folder = lab.folders["exp"]
    with running(daemon):
        wait_started(lab)
        lab.edit("js/main.js", "console.log('just before');\n")
        lab.remove("old/one.js")  # a real deletion, just before the folder goes
        wait_for("the last edits", settled(lab))
        on_server = lab.files()
        away = folder.with_name("experiment-away")
        if how == "unmounted":
            folder.rename(away)  # the drive goes; its mount point stays, empty
            folder.mkdir()
            # The folder's `.jatosignore` went with it, but the server's ignored notes were
            # never synced from here: the guard holds back every file synced before.
            guarded = len(on_server) - len(SERVER_ONLY)

            def withheld() -> bool:
                m = lab.running_status()
                return m.get("withheld") == guarded and "withheld" in (m.get("last_error") or "")

            wait_for("the withheld deletions in the status", withheld)
            assert log.has("deletions_withheld", mapping="exp", reason="no syncable files")
        else:
            shutil.rmtree(folder)
            if how == "replaced-by-a-file":
                folder.write_text("not a folder\n")
            says = "does not exist" if how == "deleted" else "is not a directory"
            wait_for("the pause", paused(lab, says=says))
            assert log.has("mapping_paused", mapping="exp", reason=says)
        assert lab.server.count(kind="delete") == 1  # old/one.js, before the folder went
        assert lab.files() == on_server

        # Back: remounted, or recreated in one rename (a restored backup, a fresh clone).
        if how == "unmounted":
            folder.rmdir()
            away.rename(folder)
        else:
            if folder.is_file():
                folder.unlink()
            lab.build_copy(away)
            away.rename(folder)
        lab.edit("js/main.js", "console.log('after its return');\n")
        lab.edit("back.js", "// new after the return\n")
        assert_settled(lab)
    if how != "unmounted":
        assert log.has("mapping_resumed", mapping="exp")


# ---------------------------------------------------------------------- a real SIGHUP


def test_the_watch_process_resumes_with_a_new_token_file_on_sighup(
    lab: ChaosLab, tmp_path: Path
) -> None:
    """The whole program: `jatos-sync watch` in its own process, JSON logs on stderr."""
    lab.use_token_file(lab.world.token)
    lab.write_config()
    lab.seed()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JATOS_TOKEN", "JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC")
    }
    log_path = tmp_path / "watch.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jatos_sync", "-c", str(lab.world.config_path), "watch"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for("the initial pass", settled(lab), timeout_s=20)
            assert read_status(StateStore(lab.world.state_dir)) is not None
            lab.server.revoke_token(lab.world.token)
            lab.edit("a.js", "// after the revocation\n")
            lab.remove("old/one.js")
            wait_for("the pause", paused(lab, says="refused the token"))
            fresh = lab.server.add_token("alice")
            lab.replace_token(fresh)
            proc.send_signal(signal.SIGHUP)
            assert_settled(lab, timeout_s=20)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert_no_token({lab.world.token, fresh}, text, "the daemon's log")
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert code == 0 and names[-1] == "watch_stopped"
    paused_at = names.index("mapping_paused")
    assert "refused the token" in events[paused_at]["reason"]
    assert paused_at < names.index("config_reloaded") < names.index("mapping_resumed")
    assert read_status(StateStore(lab.world.state_dir)) is None  # stopped cleanly
