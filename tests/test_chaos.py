"""Chaos: one-shot `sync` against the stand-in while the network, the server, the token, the
study lock, the state directory or the local folder misbehave (issue 5, item 1).

Every scenario starts from a synced study with pending local changes (three edits, two new
files, two deletions), injects its faults into one or more runs, then lets a bounded number
of fault-free runs settle and checks the rules of docs/safety.md:

- the server holds exactly the folder's files (`world.remote() == world.local()`);
- the local folder is untouched (equal to the snapshot taken before the faults);
- the server lost nothing that was not deleted locally, and each local deletion was carried
  out once;
- every failed run said so: in its exit code, in its JSON document or human output (or the
  `jatos-sync:` line), and on stderr as a JSON log event.

Retries run without backoff sleeps (the client's `sleep` seam, passed in through
`cli.main(client_factory=…)`), and faults are seeded or triggered by the n-th upload with one
upload in flight at a time, so every run is the same and the file takes seconds.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from jatos_sync import apply
from jatos_sync.cli import main
from jatos_sync.client import JatosClient
from jatos_sync.config import Config
from jatos_sync.testing import StandInServer
from jatos_sync.testing.app import classify
from jatos_sync.testing.wire import Request, Response
from tests.conftest import Run, World, assert_no_token

FILES: dict[str, bytes] = {
    "index.html": b"<html><script src='js/main.js'></script></html>\n",
    "js/main.js": b"console.log('v1');\n",
    "js/lib.js": b"export const x = 1;\n",
    "css/style.css": b"body { color: black; }\n",
    "img/a b.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "stimuli/list 1.csv": b"word,colour\nred,blue\n",
    "stimuli/list 2.csv": b"word,colour\ngreen,red\n",
    "old/one.js": b"// one\n",
    "old/two.js": b"// two\n",
    "README.txt": b"Stroop task\n",
}
EDITED = {
    "js/main.js": b"console.log('v2');\n",
    "css/style.css": b"body { color: navy; }\n",
    "index.html": b"<html><script src='js/main.js'></script><p>v2</p></html>\n",
    "js/new.js": b"// new\n",
    "img/new.png": b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)),
}
DELETED = frozenset({"old/one.js", "old/two.js"})
PENDING_UPLOADS = len(EDITED)  # one at a time (concurrency: 1), index.html last

Handler = Callable[[Request], Response]


def _no_sleep(_seconds: float) -> None:
    """Backoff without waiting: the retries are what is tested, not their timing."""


def fast_client(
    sleep: Callable[[float], None] = _no_sleep,
) -> Callable[[Config, Any], JatosClient]:
    """The CLI's client factory with the backoff sleep replaced (everything else as built)."""

    def make(config: Config, token: Any) -> JatosClient:
        return JatosClient.for_server(config.server, token, sleep=sleep)

    return make


def configure(
    world: World, *, retries: int = 2, timeout_s: float = 5.0, concurrency: int = 1
) -> None:
    world.config_path.write_text(
        f"server:\n"
        f"  url: {world.server.url}\n"
        f"  retries: {retries}\n"
        f"  timeout: {timeout_s}\n"
        f"  concurrency: {concurrency}\n"
        f"state_dir: {world.state_dir}\n"
        f"mappings:\n"
        f"  - name: exp\n"
        f"    folder: {world.folder}\n"
        f"    study: {world.study_ref}\n",
        encoding="utf-8",
    )


def run(
    world: World,
    *args: str,
    env: dict[str, str] | None = None,
    sleep: Callable[[float], None] = _no_sleep,
) -> Run:
    """`jatos-sync -c CONFIG ARGS` in process, like `World.run`, with the fast client."""
    out, err = io.StringIO(), io.StringIO()
    environ = {"JATOS_TOKEN": world.token, **world.env, **(env or {})}
    code = main(
        ["-c", str(world.config_path), *args],
        environ=environ,
        stdout=out,
        stderr=err,
        client_factory=fast_client(sleep),
    )
    world.tokens_used.add(environ["JATOS_TOKEN"])
    assert_no_token(world.tokens_used, out.getvalue() + err.getvalue(), "CLI output")
    return Run(code, out.getvalue(), err.getvalue())


# ---------------------------------------------------------------- scenes and invariants


@dataclass
class Scene:
    """A synced study with pending local changes, and what must hold when the dust settles."""

    world: World
    before: dict[str, bytes]  # the folder as it must stay
    deleted: frozenset[str]  # deleted locally since the last sync
    root_inode: int = 0  # of the folder when the scene was made


def make_scene(world: World, **config: Any) -> Scene:
    configure(world)
    for rel, content in FILES.items():
        world.put(rel, content)
    first = run(world, "sync")
    assert first.code == 0, first.out + first.err
    for rel, content in EDITED.items():
        world.put(rel, content)
    for rel in DELETED:
        (world.folder / rel).unlink()
    configure(world, **config)
    world.server.clear_requests()
    return Scene(world, world.local(), DELETED, os.stat(world.folder).st_ino)


def settle(
    scene: Scene, *, attempts: int = 3, env: dict[str, str] | None = None, yes: bool = False
) -> Run:
    """Fault-free syncs until one succeeds (bounded), then check the invariants. `yes`: the
    folder was recreated (a new inode), so its deletions need `--yes` once."""
    world = scene.world
    world.server.faults.reset()
    args = ("sync", "--json", *(("--yes",) if yes else ()))
    last = run(world, *args, env=env)
    for _ in range(attempts - 1):
        if last.code == 0:
            break
        last = run(world, *args, env=env)
    assert last.code == 0, last.out + last.err
    assert_invariants(scene)
    return last


def assert_invariants(scene: Scene) -> None:
    world = scene.world
    assert world.local() == scene.before, "the local folder was changed"
    assert world.remote() == world.local(), "the server does not match the folder"
    deletes = deleted_on_server(world.server)
    assert set(deletes) <= scene.deleted, f"spurious deletion: {set(deletes) - scene.deleted}"
    assert deletes == Counter(scene.deleted), f"each local deletion once: {deletes}"


def asset_path(target: str) -> str:
    """The asset path of a recorded request target (`…/assets/a%20b.png?x` → `a b.png`)."""
    return unquote(target.split("/assets/", 1)[1].split("?", 1)[0])


def deleted_on_server(server: StandInServer) -> Counter[str]:
    """Asset paths that DELETE requests removed (a 2xx answer), with their count."""
    return Counter(
        asset_path(r.path) for r in server.requests if r.kind == "delete" and 200 <= r.status < 300
    )


def log_events(err: str) -> list[dict[str, Any]]:
    events = []
    for line in err.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def plain_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line and not line.startswith("{")]


def assert_failure_visible(r: Run, codes: set[int], mentions: str) -> None:
    """The run failed, and said so in its exit code, its report and its log."""
    assert r.code in codes, f"exit {r.code}, expected one of {codes}:\n{r.out}\n{r.err}"
    plain = plain_lines(r.err)
    if r.out.lstrip().startswith("{"):
        doc = r.json
        assert doc["ok"] is False and doc["exit_code"] == r.code
    reported = r.out + "\n" + "\n".join(plain)
    assert mentions.lower() in reported.lower(), f"{mentions!r} not said:\n{reported}"
    problems = [e for e in log_events(r.err) if e.get("level") in ("warning", "error")]
    stopped = [line for line in plain if line.startswith("jatos-sync: ")]
    assert problems or stopped, f"no warning or error on stderr:\n{r.err}"


# ---------------------------------------------------------------- request interception


class Intercept:
    """Stands between the stand-in's transport and its JATOS application.

    The stand-in has no request hook of its own, so this replaces the bound `handle` of its
    application object; `monkeypatch` puts the original back.
    """

    def __init__(self, server: StandInServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real: Handler = server._app.handle
        self._lock = threading.Lock()
        self.uploads = 0
        monkeypatch.setattr(server._app, "handle", self._handle)
        self.on_upload: Callable[[int, Request, Handler], Response] | None = None
        self.crashed = threading.Event()  # set: every request is cut without an answer

    def _handle(self, req: Request) -> Response:
        if self.crashed.is_set():
            raise ConnectionResetError("the stand-in crashed")
        if classify(req.method, req.path) == "upload" and self.on_upload is not None:
            with self._lock:
                self.uploads += 1
                number = self.uploads
            return self.on_upload(number, req, self._real)
        return self._real(req)


# ---------------------------------------------------------------- network faults


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_retries_ride_out_a_flaky_server(world_any: World, fault: str) -> None:
    scene = make_scene(world_any, retries=8)
    faults = world_any.server.faults
    faults.seed = 7
    if fault == "503":
        faults.error_rate = 0.3
    else:
        faults.drop_rate = 0.1
    result = run(world_any, "sync", "--json")
    assert result.code == 0, result.out + result.err
    retries = [e for e in log_events(result.err) if e["event"] == "http_retry"]
    assert retries, "the faults never hit a request"
    cut = {"remote end closed connection", "connection aborted", "connection reset"}
    assert {e["reason"] for e in retries} <= ({"HTTP 503"} if fault == "503" else cut)
    assert_invariants(scene)
    settle(scene)


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_without_retries_a_flaky_server_fails_visibly_then_heals(
    world_any: World, fault: str
) -> None:
    scene = make_scene(world_any, retries=0)
    faults = world_any.server.faults
    faults.seed = 3
    if fault == "503":
        faults.error_rate = 0.3
    else:
        faults.drop_rate = 0.3
    failed = 0
    for _ in range(3):
        result = run(world_any, "sync", "--json")
        if result.code != 0:
            failed += 1
            assert_failure_visible(result, {1, 5}, "503" if fault == "503" else "closed")
        assert world_any.local() == scene.before
        assert set(deleted_on_server(world_any.server)) <= scene.deleted
    assert failed, "the faults never made a run fail"
    settle(scene)


def test_latency_spikes_within_the_timeout_only_slow_the_pass(
    world310: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(world310, timeout_s=3.0)
    spike_over = threading.Event()
    intercept = Intercept(world310.server, monkeypatch)

    def slow_upload(number: int, req: Request, real: Handler) -> Response:
        if number in (1, 3):
            spike_over.wait(2.0)  # a 2 s latency spike, as JATOS under load
        return real(req)

    intercept.on_upload = slow_upload
    result = run(world310, "sync", "--json")
    assert result.code == 0, result.out + result.err
    assert not [e for e in log_events(result.err) if e["event"] == "http_retry"]
    assert world310.server.count(kind="upload") == PENDING_UPLOADS
    assert_invariants(scene)


def test_a_latency_spike_beyond_the_timeout_is_retried(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(world_any, timeout_s=1.0)
    spike_over = threading.Event()
    intercept = Intercept(world_any.server, monkeypatch)

    def slow_upload(number: int, req: Request, real: Handler) -> Response:
        if number == 2:
            spike_over.wait(2.0)  # longer than the client's 1 s read timeout
        return real(req)

    intercept.on_upload = slow_upload
    try:
        result = run(world_any, "sync", "--json")
    finally:
        spike_over.set()  # let the abandoned request finish now
    assert result.code == 0, result.out + result.err
    retries = [e for e in log_events(result.err) if e["event"] == "http_retry"]
    assert [e["reason"] for e in retries] == ["timed out"]
    assert_invariants(scene)
    settle(scene)


# ---------------------------------------------------------------- the server dies


class Killer:
    """A thread that kills the server as soon as the intercept reports the crash.

    The crashed handler cannot kill the server itself: `kill()` joins the connection threads,
    its own among them.
    """

    def __init__(self, server: StandInServer, intercept: Intercept) -> None:
        self.killed = threading.Event()

        def kill() -> None:
            intercept.crashed.wait(5.0)
            server.kill()
            self.killed.set()

        self._thread = threading.Thread(target=kill, name="chaos-killer")
        self._thread.start()

    def join(self) -> None:
        self._thread.join(10.0)
        assert not self._thread.is_alive()


def _crash_at(intercept: Intercept, at: int, *, after_handling: bool) -> None:
    def on_upload(number: int, req: Request, real: Handler) -> Response:
        if number == at:
            if after_handling:  # the upload is stored, but its answer is lost
                real(req)
            intercept.crashed.set()
            raise ConnectionResetError("the stand-in crashed")
        return real(req)

    intercept.on_upload = on_upload


@pytest.mark.parametrize("after_handling", [False, True], ids=["before-store", "after-store"])
def test_server_killed_mid_pass_stops_it_and_the_next_pass_heals(
    world_any: World, monkeypatch: pytest.MonkeyPatch, after_handling: bool
) -> None:
    scene = make_scene(world_any, retries=2)
    server = world_any.server
    intercept = Intercept(server, monkeypatch)
    _crash_at(intercept, 3, after_handling=after_handling)
    killer = Killer(server, intercept)
    try:
        result = run(world_any, "sync", "--json")
    finally:
        killer.join()
    assert_failure_visible(result, {5}, "Cannot reach JATOS")
    (mapping,) = result.json["mappings"]
    assert mapping["deleted"] == [] and "index.html" not in mapping["uploaded"]
    assert len(mapping["uploaded"]) == 2  # the two before the crash
    assert server.count(kind="delete") == 0, "deletions must wait for a pass without failures"

    down = run(world_any, "sync", "--json")  # still down: nothing changes, exit 5
    assert_failure_visible(down, {5}, "Cannot reach JATOS")

    intercept.crashed.clear()
    server.restart()
    settle(scene)


def test_server_restarted_during_the_backoff_lets_the_same_pass_finish(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(world_any, retries=2)
    server = world_any.server
    intercept = Intercept(server, monkeypatch)
    _crash_at(intercept, 2, after_handling=False)
    killer = Killer(server, intercept)
    restarts: list[float] = []

    def restart_in_backoff(_seconds: float) -> None:
        # Called by the client between attempts: bring the server back exactly once.
        if not restarts:
            assert killer.killed.wait(5.0)
            intercept.crashed.clear()
            server.restart()
        restarts.append(_seconds)

    try:
        result = run(world_any, "sync", "--json", sleep=restart_in_backoff)
    finally:
        killer.join()
    assert result.code == 0, result.out + result.err
    assert len(restarts) == 1
    assert_invariants(scene)


# ---------------------------------------------------------------- token and lock


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_token_lost_mid_run_stops_the_pass_and_a_new_token_completes_it(
    world_any: World, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    scene = make_scene(world_any)
    server = world_any.server
    intercept = Intercept(server, monkeypatch)

    def lose_token(number: int, req: Request, real: Handler) -> Response:
        if number == 2:
            if how == "revoked":
                server.revoke_token(world_any.token)
            else:
                server.expire_token(world_any.token)
        return real(req)

    intercept.on_upload = lose_token
    result = run(world_any, "sync", "--json")
    assert_failure_visible(result, {3}, "refused the token")
    assert server.count(kind="upload") == 2
    assert server.count(kind="delete") == 0

    again = run(world_any, "sync")  # human output this time
    assert_failure_visible(again, {3}, "refused the token")

    fresh = server.add_token("alice")
    settle(scene, env={"JATOS_TOKEN": fresh})


def test_study_locked_mid_run_stops_the_pass_until_it_is_unlocked(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(world_any)
    server = world_any.server
    intercept = Intercept(server, monkeypatch)

    def lock(number: int, req: Request, real: Handler) -> Response:
        if number == 2:
            server.set_locked(world_any.study, True)
        return real(req)

    intercept.on_upload = lock
    result = run(world_any, "sync", "--json")
    assert_failure_visible(result, {3}, "locked")
    assert server.count(kind="delete") == 0

    again = run(world_any, "sync")
    assert_failure_visible(again, {3}, "unlock it")
    checked = run(world_any, "check", "--json")
    assert checked.code == 3 and checked.json["mappings"][0]["locked"] is True

    server.set_locked(world_any.study, False)
    settle(scene)


# ---------------------------------------------------------------- the state directory


class StateDisk:
    """Fault switches for the state directory, at the `os` seams the state and backup writers
    use (root ignores permission bits, so a chmod would not stop these tests' writes)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self._root = root
        self._mp = monkeypatch
        self._real = {name: getattr(os, name) for name in ("open", "mkdir", "replace")}

    def _inside(self, path: Any) -> bool:
        text = os.path.abspath(os.fsdecode(path))
        return text == str(self._root) or text.startswith(str(self._root) + os.sep)

    def _refuse(self, code: int, path: Any) -> OSError:
        return OSError(code, os.strerror(code), os.fsdecode(path))

    def full(self) -> None:
        """Every rename into the state directory fails with ENOSPC (the last write step)."""
        real_replace = self._real["replace"]

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            if self._inside(dst):
                raise self._refuse(errno.ENOSPC, dst)
            real_replace(src, dst, **kwargs)

        self._mp.setattr(os, "replace", replace)

    def read_only(self) -> None:
        """Every write, mkdir and rename below the state directory fails with EROFS."""
        real_open, real_mkdir, real_replace = (self._real[n] for n in ("open", "mkdir", "replace"))
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def open_(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
            if flags & writing and self._inside(path):
                raise self._refuse(errno.EROFS, path)
            return int(real_open(path, flags, mode, **kwargs))

        def mkdir(path: Any, mode: int = 0o777, **kwargs: Any) -> None:
            if self._inside(path):
                raise self._refuse(errno.EROFS, path)
            real_mkdir(path, mode, **kwargs)

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            if self._inside(dst):
                raise self._refuse(errno.EROFS, dst)
            real_replace(src, dst, **kwargs)

        self._mp.setattr(os, "open", open_)
        self._mp.setattr(os, "mkdir", mkdir)
        self._mp.setattr(os, "replace", replace)

    def healthy(self) -> None:
        for name, real in self._real.items():
            self._mp.setattr(os, name, real)


def _leftover_temp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.is_file() and p.name.startswith(".")]


def test_disk_full_state_fails_the_run_visibly_and_loses_nothing(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(world_any)
    disk = StateDisk(world_any.state_dir, monkeypatch)
    # A colleague edited a file on the server that is also edited locally: its copy must be
    # saved before it is overwritten, and the disk is full.
    world_any.server.put_file(world_any.study, "css/style.css", b"/* colleague */\n")
    disk.full()
    result = run(world_any, "sync", "--json")
    assert_failure_visible(result, {1}, "could not save")
    (mapping,) = result.json["mappings"]
    assert [f["path"] for f in mapping["failed"]] == ["css/style.css"]
    assert world_any.remote()["css/style.css"] == b"/* colleague */\n", "overwritten unsaved"
    assert "Could not save the sync state" in mapping.get("state_error", "")
    # A failed CSS file holds back no unrelated deletion (docs/safety.md, rule 7): only the
    # files deleted locally are deleted.
    assert set(deleted_on_server(world_any.server)) <= scene.deleted
    assert _leftover_temp_files(world_any.state_dir) == []

    disk.healthy()
    settle(scene)
    backups = world_any.state_dir / "backups"
    saved = [p.read_bytes() for p in backups.rglob("style.css")]
    assert saved == [b"/* colleague */\n"], "the colleague's version must survive locally"


def test_read_only_state_fails_sync_visibly_but_status_still_reports(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(world_any)
    disk = StateDisk(world_any.state_dir, monkeypatch)
    disk.read_only()
    status = run(world_any, "status", "--json")
    assert status.code == 0, status.out + status.err
    assert sorted(status.json["mappings"][0]["uploaded"]) == sorted(EDITED)

    result = run(world_any, "sync", "--json")
    assert_failure_visible(result, {1}, "Could not save the sync state")
    assert world_any.remote() == world_any.local(), "the files themselves were synced"

    disk.healthy()
    settle(scene)


def test_two_backups_of_one_file_within_one_second_are_both_kept(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague edits a file twice and the tool overwrites it twice, within one second
    (quick passes of the daemon, or a script): both of the colleague's versions must survive.
    Backups go to `backups/<key>/<UTC second>/`, so the second copy replaces the first."""

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> FrozenClock:
            return cls(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    monkeypatch.setattr(apply, "datetime", FrozenClock)  # apply's default clock reads it
    configure(world_any)
    server = world_any.server
    for number in (1, 2):
        server.put_file(world_any.study, "stroop.js", f"// colleague v{number}\n".encode())
        world_any.put("stroop.js", f"// mine v{number}\n")
        # The first sync replaces a file this folder never synced: it needs --yes.
        result = run(world_any, "sync", "--json", *(["--yes"] if number == 1 else []))
        assert result.code == 0, result.err
        assert result.json["mappings"][0]["backed_up"] == ["stroop.js"]
    saved = sorted(p.read_bytes() for p in (world_any.state_dir / "backups").rglob("stroop.js"))
    assert saved == [b"// colleague v1\n", b"// colleague v2\n"]


# ---------------------------------------------------------------- the local folder


@pytest.mark.parametrize("how", ["deleted", "replaced-by-a-file", "emptied"])
def test_a_vanished_folder_changes_nothing_on_the_server(world_any: World, how: str) -> None:
    scene = make_scene(world_any)
    folder = world_any.folder
    on_server = world_any.remote()
    shutil.rmtree(folder)
    if how == "replaced-by-a-file":
        folder.write_bytes(b"not a folder\n")
    elif how == "emptied":
        folder.mkdir()
    said = {
        "deleted": "does not exist",
        "replaced-by-a-file": "is not a directory",
        "emptied": "no syncable files",
    }[how]
    for args in (("sync", "--json"), ("sync",), ("sync", "--yes", "--json")):
        result = run(world_any, *args)
        assert_failure_visible(result, {4}, said)
    assert world_any.server.count(kind="delete") == 0
    assert world_any.server.count(kind="upload") == 0
    assert world_any.remote() == on_server

    if folder.is_file():
        folder.unlink()
    for rel, content in scene.before.items():
        world_any.put(rel, content)
    # The folder is back, but it is a new folder at the same place (another inode): its
    # deletions wait for one `sync --yes` (docs/safety.md, rule 1), its uploads do not.
    if os.stat(folder).st_ino != scene.root_inode:
        again = run(world_any, "sync", "--json")
        assert again.code == 4 and "not the one synced before" in again.out
    settle(scene, yes=True)


# ---------------------------------------------------------------- gaps found by this suite


def test_a_failure_at_the_token_check_still_gives_a_json_document_and_a_log_event(
    world310: World,
) -> None:
    """`sync --json` promises one JSON document (README, "JSON output"), and JSON logs on stderr are
    how CI and journald see failures; a run stopped before any mapping has neither today."""
    configure(world310, retries=1)
    world310.server.faults.fail_next(5)
    result = run(world310, "sync", "--json")
    assert result.code == 5
    assert result.out.strip(), "no JSON document on stdout"
    doc = result.json
    assert doc["ok"] is False and doc["exit_code"] == 5
    assert [e for e in log_events(result.err) if e.get("level") == "error"], result.err
