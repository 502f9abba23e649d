"""`pull`: the study's files into the mapping's folder, verified, atomic, never clobbering.

End-to-end against the stand-in (3.9 and 3.10) through `cli.pull.run`, one test through the
real CLI, and the pure `plan_pull` / name rules by table."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import pytest

from jatos_sync import pull
from jatos_sync.cli import build_parser
from jatos_sync.cli import pull as pull_command
from jatos_sync.cli.human import print_pull
from jatos_sync.cli.parser import add_pull_arguments
from jatos_sync.client import JatosClient
from jatos_sync.config import load_config
from jatos_sync.credentials import Token
from jatos_sync.errors import AuthError, ConfigError, JatosSyncError
from jatos_sync.model import FileInfo, LocalFile, LocalSnapshot, PathProblem, RelPath
from jatos_sync.model import RemoteSnapshot as Remote
from jatos_sync.state import StateStore, mapping_key
from tests.conftest import World
from tests.daemon_lab import wait_for
from tests.test_chaos import StateDisk
from tests.test_e2e import NAMES, SAMPLE, as_bytes, fill

STAMP = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


@dataclass
class PullRun:
    code: int
    out: str
    error: JatosSyncError | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def client_for(world: World) -> JatosClient:
    config = load_config(world.config_path)
    return JatosClient(config.server.url, Token(world.token), retries=1, timeout_s=5)


def run_pull(world: World, *argv: str, client: Any = None, progress: Any = None) -> PullRun:
    """The `pull` command as the CLI calls it; JatosSyncError becomes its exit code."""
    parser = argparse.ArgumentParser()
    add_pull_arguments(parser)
    args = parser.parse_args(list(argv))
    config = load_config(world.config_path)
    own = client is None
    client = client or client_for(world)
    out = io.StringIO()
    try:
        code = pull_command.run(
            args,
            config=config,
            client=client,
            store=StateStore(config.state_dir),
            out=out,
            progress=progress,
            clock=lambda: STAMP,
        )
        return PullRun(code, out.getvalue())
    except JatosSyncError as exc:
        return PullRun(exc.exit_code, out.getvalue(), exc)
    finally:
        if own:
            client.close()


def into_fresh_folder(world: World, name: str = "fresh") -> Path:
    """Point the world's mapping at a folder that does not exist yet."""
    world.folder = world.folder.parent / name
    world.write_config()
    return world.folder


def synced_sample(world: World, files: dict[str, str | bytes] = SAMPLE) -> None:
    fill(world, files)
    result = world.run("sync")
    assert result.code == 0, result.out + result.err


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


# ---------------------------------------------------------------- the main promise


def test_sync_then_pull_into_an_empty_folder_gives_identical_bytes(world_any: World) -> None:
    files: dict[str, str | bytes] = {**SAMPLE, **{n: f"content of {n}\n" for n in NAMES}}
    synced_sample(world_any, files)
    fresh = into_fresh_folder(world_any)

    result = run_pull(world_any, "exp")

    assert result.code == 0, result.out
    assert world_any.local() == as_bytes(files) == world_any.remote()
    assert f"{len(files)} downloaded, 0 unchanged" in result.out
    assert "created the folder" in result.out
    assert no_temp_files(fresh)


def test_a_sync_after_a_pull_uploads_nothing(world_any: World) -> None:
    synced_sample(world_any)
    into_fresh_folder(world_any)
    assert run_pull(world_any).code == 0  # the only mapping: MAPPING may be left out
    world_any.server.clear_requests()

    after = world_any.run("sync", "--json")

    assert after.code == 0, after.err
    assert world_any.server.count(kind="upload") == 0
    assert world_any.server.count(kind="delete") == 0
    (mapping,) = after.json["mappings"]
    assert mapping["uploaded"] == [] and mapping["backed_up"] == []
    assert mapping["unchanged"] == len(SAMPLE)


def test_identical_local_files_are_not_downloaded_again(world310: World) -> None:
    synced_sample(world310)
    world310.server.clear_requests()

    result = run_pull(world310, "exp")

    assert result.code == 0
    assert f"0 downloaded, {len(SAMPLE)} unchanged" in result.out
    assert world310.server.count(kind="download") == 0


def test_downloaded_files_get_the_usual_permissions(world310: World, tmp_path: Path) -> None:
    synced_sample(world310, {"a.js": "a"})
    fresh = into_fresh_folder(world310)
    reference = tmp_path / "reference"
    reference.write_bytes(b"x")  # a file created the ordinary way, under this umask

    assert run_pull(world310, "exp").code == 0

    assert (fresh / "a.js").stat().st_mode == reference.stat().st_mode


# ---------------------------------------------------------------- never lose local work


def test_a_differing_local_file_survives_without_force(world_any: World) -> None:
    synced_sample(world_any)
    world_any.put("js/main.js", "my unsynced edit\n")
    (world_any.folder / "css/style.css").unlink()

    result = run_pull(world_any, "exp")

    assert result.code == 1
    assert world_any.local()["js/main.js"] == b"my unsynced edit\n"
    assert world_any.local()["css/style.css"] == as_bytes(SAMPLE)["css/style.css"]
    assert "kept js/main.js: differs from the server's copy" in result.out
    assert "--force" in result.out and "backup" in result.out


def test_force_replaces_a_differing_file_and_keeps_a_backup(world_any: World) -> None:
    synced_sample(world_any)
    world_any.put("js/main.js", "my unsynced edit\n")

    result = run_pull(world_any, "--force", "exp")

    assert result.code == 0, result.out
    assert world_any.local() == world_any.remote()
    key = mapping_key(world_any.server.url, world_any.study_ref, world_any.folder)
    (folder,) = (world_any.state_dir / "backups" / key).glob("pull-20240506T070809Z-*")
    backup = folder / "js" / "main.js"
    assert backup.read_bytes() == b"my unsynced edit\n"
    assert f"replaced js/main.js; your previous copy is saved as {backup}" in result.out

    world_any.server.clear_requests()
    assert world_any.run("sync").code == 0
    assert world_any.server.count(kind="upload") == 0


def test_force_keeps_the_permissions_of_the_replaced_file(world310: World) -> None:
    synced_sample(world310, {"run.sh": "echo hi\n"})
    script = world310.put("run.sh", "echo mine\n")
    script.chmod(0o750)

    assert run_pull(world310, "--force", "exp").code == 0

    assert script.read_bytes() == b"echo hi\n"
    assert script.stat().st_mode & 0o777 == 0o750


def test_local_files_missing_on_the_server_are_left_alone(world310: World) -> None:
    synced_sample(world310)
    world310.put("notes/draft.txt", "not yet synced")

    result = run_pull(world310, "--force", "exp")

    assert result.code == 0
    assert world310.local()["notes/draft.txt"] == b"not yet synced"
    assert "1 local file(s) are not on the server" in result.out


def test_ignored_server_files_are_not_downloaded(world310: World) -> None:
    synced_sample(world310, {"a.js": "a"})
    world310.server.put_file(world310.study, "art/cover.psd", b"psd")
    world310.server.put_file(world310.study, ".DS_Store", b"junk")
    world310.write_config(mapping_extra='    ignore: ["*.psd"]\n')

    result = run_pull(world310, "exp")

    assert result.code == 0
    assert set(world310.local()) == {"a.js"}
    assert "2 ignored" in result.out


def test_a_local_file_in_the_way_of_a_folder_fails_only_that_file(world310: World) -> None:
    synced_sample(world310)
    into_fresh_folder(world310)
    world310.put("img", "a file where the server has a folder")

    result = run_pull(world310, "exp")

    assert result.code == 1
    assert "failed img/a b.png: a local file is in the way" in result.out
    assert world310.local()["img"] == b"a file where the server has a folder"
    assert world310.local()["index.html"] == as_bytes(SAMPLE)["index.html"]


# ---------------------------------------------------------------- verification


class ChangesAfterListing:
    """A real client; right after the listing, a colleague changes a file on the server."""

    def __init__(self, world: World, path: str, content: bytes) -> None:
        self._client = client_for(world)
        self._world, self._path, self._content = world, path, content
        self.base_url = self._client.base_url

    def list_assets(self, study: str) -> Remote:
        listing = self._client.list_assets(study)
        self._world.server.put_file(self._world.study, self._path, self._content)
        return listing

    def download(self, study: str, path: RelPath, dest: IO[bytes]) -> FileInfo:
        return self._client.download(study, path, dest)

    def close(self) -> None:
        self._client.close()


def test_a_file_changed_between_listing_and_download_fails_after_one_retry(
    world_any: World,
) -> None:
    synced_sample(world_any)
    fresh = into_fresh_folder(world_any)
    client = ChangesAfterListing(world_any, "js/main.js", b"changed meanwhile\n")
    world_any.server.clear_requests()
    try:
        result = run_pull(world_any, "exp", client=client)
    finally:
        client.close()

    assert result.code == 1
    assert "failed js/main.js: the download did not match the server's listing" in result.out
    assert "pull` again" in result.out
    assert not (fresh / "js/main.js").exists()
    assert no_temp_files(fresh)
    downloads = [r for r in world_any.server.requests if r.kind == "download"]
    assert sum(r.path.endswith("/main.js") for r in downloads) == 2
    assert len(world_any.local()) == len(SAMPLE) - 1


class CorruptsFirstDownload:
    """A real client whose first download of `path` delivers damaged bytes."""

    def __init__(self, world: World, path: str) -> None:
        self._client = client_for(world)
        self._path = RelPath(path)
        self._corrupted = False
        self._lock = threading.Lock()
        self.base_url = self._client.base_url

    def list_assets(self, study: str) -> Remote:
        return self._client.list_assets(study)

    def download(self, study: str, path: RelPath, dest: IO[bytes]) -> FileInfo:
        info = self._client.download(study, path, dest)
        with self._lock:
            if path != self._path or self._corrupted:
                return info
            self._corrupted = True
        dest.seek(0)
        dest.write(b"\x00")  # one flipped byte, as a broken proxy might deliver
        return FileInfo(info.size, info.checksum ^ 1)

    def close(self) -> None:
        self._client.close()


def test_a_damaged_download_is_retried_and_then_succeeds(world310: World) -> None:
    synced_sample(world310)
    into_fresh_folder(world310)
    client = CorruptsFirstDownload(world310, "img/a b.png")
    try:
        result = run_pull(world310, "exp", client=client)
    finally:
        client.close()

    assert result.code == 0, result.out
    assert world310.local() == world310.remote()


class ScriptedClient:
    """A server as a dict: for listings with names no real server test can produce."""

    base_url = "http://127.0.0.1:9"

    def __init__(self, files: dict[str, bytes], *, fail_on: dict[str, JatosSyncError]) -> None:
        self.files = files
        self.fail_on = fail_on
        self.downloads: list[str] = []

    def list_assets(self, study: str) -> Remote:
        import zlib

        return Remote(
            {RelPath(k): FileInfo(len(v), zlib.adler32(v)) for k, v in self.files.items()}
        )

    def download(self, study: str, path: RelPath, dest: IO[bytes]) -> FileInfo:
        import zlib

        self.downloads.append(str(path))
        if str(path) in self.fail_on:
            raise self.fail_on[str(path)]
        data = self.files[str(path)]
        dest.write(data)
        return FileInfo(len(data), zlib.adler32(data))


def test_names_that_would_escape_the_folder_are_skipped(world310: World, tmp_path: Path) -> None:
    client = ScriptedClient({"../evil.txt": b"evil", "ok.txt": b"fine"}, fail_on={})

    result = run_pull(world310, "exp", client=client)

    assert result.code == 0
    assert "skipped ../evil.txt: not a safe local path" in result.out
    assert client.downloads == ["ok.txt"]
    assert not (tmp_path / "evil.txt").exists()
    assert world310.local() == {"ok.txt": b"fine"}


def test_a_study_wide_error_during_the_downloads_is_raised_after_saving_state(
    world310: World,
) -> None:
    client = ScriptedClient(
        {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"},
        fail_on={"b.txt": AuthError("JATOS refused the token")},
    )
    config = load_config(world310.config_path)
    store = StateStore(config.state_dir)
    (mapping,) = config.mappings

    result = pull.pull(mapping, client=client, store=store, concurrency=1)

    assert isinstance(result.fatal, AuthError)
    assert result.exit_code == 3
    assert client.downloads == ["a.txt", "b.txt"]  # c.txt is not started after the error
    state = store.load(mapping_key(client.base_url, mapping.study, mapping.folder))
    assert set(state.synced) == {RelPath("a.txt")}

    run = run_pull(world310, "--json", "exp", client=client)
    assert isinstance(run.error, AuthError) and run.code == 3
    assert run.json["mappings"][0]["error"] == "JATOS refused the token"


# ---------------------------------------------------------------- a read-only state directory


def test_a_read_only_state_folder_still_pulls_and_says_the_state_was_not_saved(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_sample(world_any)
    into_fresh_folder(world_any)
    StateDisk(world_any.state_dir, monkeypatch).read_only()

    result = world_any.run("pull", "--json", "exp")

    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    doc = result.json
    assert doc["ok"] is False and doc["exit_code"] == 1
    (mapping,) = doc["mappings"]
    assert sorted(mapping["downloaded"]) == sorted(SAMPLE)
    assert "Could not save the sync state" in mapping["state_error"]
    assert mapping["failed"] == []
    assert world_any.local() == world_any.remote() == as_bytes(SAMPLE)

    again = world_any.run("pull", "exp")  # the human summary says it too
    assert again.code == 1
    assert f"0 downloaded, {len(SAMPLE)} unchanged" in again.out
    assert "Could not save the sync state" in again.out


def test_force_with_a_read_only_state_folder_keeps_the_file_it_cannot_back_up(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_sample(world_any)
    world_any.put("js/main.js", "mine\n")
    (world_any.folder / "index.html").unlink()
    StateDisk(world_any.state_dir, monkeypatch).read_only()

    result = world_any.run("pull", "--force", "--json", "exp")

    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    (mapping,) = result.json["mappings"]
    assert mapping["downloaded"] == ["index.html"]
    assert [f["path"] for f in mapping["failed"]] == ["js/main.js"]
    assert "it was not replaced" in mapping["failed"][0]["error"]
    assert mapping["backed_up"] == []
    assert result.json["ok"] is False
    assert (world_any.folder / "js" / "main.js").read_text() == "mine\n"
    assert (world_any.folder / "index.html").read_bytes() == as_bytes(SAMPLE)["index.html"]


# ---------------------------------------------------------------- leftovers of a killed pull

HOUR_AGO = STAMP.timestamp() - 3600


def leftover(folder: Path, rel: str, *, mtime: float = HOUR_AGO) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a download")
    os.utime(path, (mtime, mtime))
    return path


def test_a_pull_removes_the_temporary_files_a_killed_pull_left(world_any: World) -> None:
    synced_sample(world_any)
    folder = world_any.folder
    left = [
        leftover(folder, ".index.html.0a1b2c3d.part"),
        leftover(folder, "stimuli/practice/.list 1.csv.deadbeef.part"),
    ]

    result = run_pull(world_any, "--json", "exp")

    assert result.code == 0, result.out
    assert not [p for p in left if p.exists()]
    (mapping,) = result.json["mappings"]
    assert mapping["removed_leftovers"] == [
        ".index.html.0a1b2c3d.part",
        "stimuli/practice/.list 1.csv.deadbeef.part",
    ]
    assert world_any.local() == as_bytes(SAMPLE)
    again = run_pull(world_any, "exp")
    assert "temporary file" not in again.out


def test_a_pull_leaves_every_other_file_alone(world310: World, tmp_path: Path) -> None:
    """Not pull's name, too young (a pull may be writing it), not a regular file, or not
    inside the folder: kept."""
    synced_sample(world310)
    folder, outside = world310.folder, tmp_path / "outside"
    kept = [
        leftover(folder, ".index.html.0a1b2c3d.part", mtime=STAMP.timestamp() - 60),
        leftover(folder, "video.mp4.part"),  # a browser's partial download
        leftover(folder, ".index.html.0A1B2C3D.part"),
        leftover(folder, ".index.html.0a1b2c3.part"),
        leftover(folder, "index.html.0a1b2c3d.part"),
        leftover(outside, ".shared.png.0a1b2c3d.part"),
        leftover(outside, "target.txt"),
    ]
    (folder / ".dir.0a1b2c3d.part").mkdir()
    os.symlink(outside / "target.txt", folder / ".link.0a1b2c3d.part")
    os.symlink(outside, folder / "linked")
    fifo = folder / ".fifo.0a1b2c3d.part"
    os.mkfifo(fifo)
    os.utime(fifo, (HOUR_AGO, HOUR_AGO))

    result = run_pull(world310, "--json", "exp")

    assert result.code == 0, result.out
    assert result.json["mappings"][0]["removed_leftovers"] == []
    assert [p for p in kept if not p.exists()] == []
    assert (folder / ".dir.0a1b2c3d.part").is_dir()
    assert (folder / ".link.0a1b2c3d.part").is_symlink()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_the_leftover_of_a_pull_killed_with_sigkill_is_removed_by_a_later_pull(
    world310: World,
) -> None:
    synced_sample(world310)
    fresh = into_fresh_folder(world310)
    world310.server.faults.latency_s = 1.0  # every request: time to catch the download
    env = {**os.environ, "JATOS_TOKEN": world310.token}
    argv = [sys.executable, "-m", "jatos_sync", "-c", str(world310.config_path), "pull"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("a download in progress", lambda: list(fresh.rglob("*.part")), timeout_s=30)
    finally:
        proc.kill()  # SIGKILL: no clean-up runs
        proc.wait(timeout=15)
    world310.server.faults.latency_s = 0.0
    left = [p.relative_to(fresh).as_posix() for p in fresh.rglob("*.part")]
    assert left

    config = load_config(world310.config_path)
    store = StateStore(config.state_dir)
    with client_for(world310) as client:
        # Right away, it could still be a running pull's file: kept.
        now = datetime.now(timezone.utc)
        soon = pull.pull(config.mappings[0], client=client, store=store, clock=lambda: now)
        assert soon.removed_leftovers == []
        later = now + timedelta(seconds=pull.LEFTOVER_AGE_S + 1)
        result = pull.pull(config.mappings[0], client=client, store=store, clock=lambda: later)

    assert [str(p) for p in result.removed_leftovers] == sorted(left)
    assert not list(fresh.rglob("*.part"))
    assert world310.local() == as_bytes(SAMPLE)


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX")
def test_a_leftover_that_a_running_pull_still_writes_is_kept(tmp_path: Path) -> None:
    import fcntl

    from jatos_sync.ignore import IgnoreRules

    path = leftover(tmp_path, ".big.bin.0a1b2c3d.part")
    with path.open("rb") as writing:  # another pull holds its lock while it writes
        fcntl.flock(writing.fileno(), fcntl.LOCK_EX)
        now = HOUR_AGO + 3600
        assert pull.remove_leftovers(tmp_path, IgnoreRules.for_folder(tmp_path), now_s=now) == []
        assert path.exists()
    assert pull.remove_leftovers(tmp_path, IgnoreRules.for_folder(tmp_path), now_s=now) == [
        RelPath(".big.bin.0a1b2c3d.part")
    ]
    assert not path.exists()


# ---------------------------------------------------------------- output and selection


def test_json_output_lists_what_happened(world310: World) -> None:
    synced_sample(world310)
    world310.put("js/main.js", "mine\n")
    (world310.folder / "index.html").unlink()

    result = run_pull(world310, "--json", "exp")

    assert result.code == 1
    doc = result.json
    assert doc["ok"] is False and doc["exit_code"] == 1
    (mapping,) = doc["mappings"]
    assert mapping["downloaded"] == ["index.html"]
    assert mapping["kept"] == [{"path": "js/main.js", "reason": "differs from the server's copy"}]
    assert mapping["unchanged"] == len(SAMPLE) - 2
    assert mapping["failed"] == [] and mapping["backed_up"] == []


def test_progress_sees_every_file_and_is_closed(world310: World) -> None:
    synced_sample(world310)
    into_fresh_folder(world310)

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any]] = []

        def start(self, *, files: int, total_bytes: int) -> None:
            self.calls.append(("start", (files, total_bytes)))

        def advance(self, path: RelPath, *, nbytes: int) -> None:
            self.calls.append(("advance", (str(path), nbytes)))

        def close(self) -> None:
            self.calls.append(("close", None))

    recorder = Recorder()
    assert run_pull(world310, "exp", progress=recorder).code == 0

    sizes = {k: len(v) for k, v in as_bytes(SAMPLE).items()}
    assert recorder.calls[0] == ("start", (len(SAMPLE), sum(sizes.values())))
    assert sorted(args for kind, args in recorder.calls if kind == "advance") == sorted(
        sizes.items()
    )
    assert recorder.calls[-1] == ("close", None)


def test_mapping_may_be_left_out_only_when_there_is_one(world310: World) -> None:
    second = world310.folder.parent / "second"
    world310.write_config()
    text = world310.config_path.read_text()
    world310.config_path.write_text(
        text + f"  - name: other\n    folder: {second}\n    study: 999\n", encoding="utf-8"
    )
    config = load_config(world310.config_path)

    with pytest.raises(ConfigError, match="name the mapping, one of: exp, other"):
        pull.select_mapping(config, None)
    with pytest.raises(ConfigError, match="no mapping named"):
        pull.select_mapping(config, "nope")
    assert pull.select_mapping(config, "other").folder == second


def _cli_commands() -> set[str]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


@pytest.mark.skipif("pull" not in _cli_commands(), reason="pull is not wired into the CLI yet")
def test_pull_through_the_cli(world_any: World) -> None:
    synced_sample(world_any)
    into_fresh_folder(world_any)
    result = world_any.run("pull", "exp")
    assert result.code == 0, result.err
    assert world_any.local() == world_any.remote()
    world_any.put("js/main.js", "mine\n")
    kept = world_any.run("pull", "exp")
    assert kept.code == 1
    assert "--force" in kept.out


# ---------------------------------------------------------------- the pure decision


def _local(files: dict[str, FileInfo], *problems: PathProblem) -> LocalSnapshot:
    return LocalSnapshot(
        {RelPath(k): LocalFile(v.size, v.checksum) for k, v in files.items()},
        errors=tuple(p for p in problems if p.reason == "permission denied"),
        unsyncable=tuple(p for p in problems if p.reason != "permission denied"),
    )


A, B = FileInfo(1, 11), FileInfo(2, 22)


@pytest.mark.parametrize(
    ("remote", "local", "force", "expected"),
    [
        ({"x": A}, {}, False, pull.PullPlan(download=(RelPath("x"),))),
        ({"x": A}, {"x": A}, False, pull.PullPlan(unchanged=(RelPath("x"),))),
        (
            {"x": A},
            {"x": B},
            False,
            pull.PullPlan(kept=(PathProblem(RelPath("x"), "differs from the server's copy"),)),
        ),
        ({"x": A}, {"x": B}, True, pull.PullPlan(replace=(RelPath("x"),))),
        ({}, {"y": B}, True, pull.PullPlan(local_only=(RelPath("y"),))),
        ({"skip.psd": A}, {}, True, pull.PullPlan(ignored=(RelPath("skip.psd"),))),
    ],
    ids=["absent", "identical", "differs", "differs-force", "local-only", "ignored"],
)
def test_plan_pull_decides_per_file(
    remote: dict[str, FileInfo], local: dict[str, FileInfo], force: bool, expected: pull.PullPlan
) -> None:
    plan = pull.plan_pull(
        Remote({RelPath(k): v for k, v in remote.items()}),
        _local(local),
        ignored=lambda p: p.suffix == ".psd",
        force=force,
    )
    assert plan == expected


def test_plan_pull_keeps_files_it_could_not_read_locally() -> None:
    remote = Remote({RelPath("private/a.txt"): A, RelPath("link.txt"): A})
    local = _local(
        {},
        PathProblem(RelPath("private"), "permission denied"),
        PathProblem(RelPath("link.txt"), "broken symbolic link"),
    )
    plan = pull.plan_pull(remote, local, ignored=lambda p: False, force=False)
    assert plan.download == ()
    assert [(str(p.path), p.reason) for p in plan.kept] == [
        ("link.txt", "the local copy could not be read (broken symbolic link)"),
        ("private/a.txt", "the local copy could not be read (permission denied)"),
    ]


@pytest.mark.parametrize(
    ("name", "windows", "problem"),
    [
        ("a/b c+d%e.txt", False, None),
        ("a/b c+d%e.txt", True, None),
        ("../x", False, "not a safe local path"),
        ("a/../../x", False, "not a safe local path"),
        ("/etc/passwd", False, "not a safe local path"),
        ("nul\x00byte", False, "NUL"),
        ("a:b.txt", False, None),
        ("a:b.txt", True, "Windows does not allow"),
        ("dir/what?.txt", True, "Windows does not allow"),
        ("CON", True, "reserved device name"),
        ("sub/lpt1.txt", True, "reserved device name"),
        ("console.txt", True, None),
        ("trailing.", True, "ends with a dot or a space"),
    ],
)
def test_local_name_problem(name: str, windows: bool, problem: str | None) -> None:
    found = pull.local_name_problem(RelPath(name), windows=windows)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_a_state_directory_inside_the_folder_is_refused(world310: World) -> None:
    world310.state_dir = world310.folder / ".state"
    world310.write_config()
    result = run_pull(world310, "exp")
    assert result.code == 2
    assert "inside the synced folder" in str(result.error)
    assert not os.path.exists(world310.state_dir)


def test_the_summary_shows_control_characters_in_server_names_escaped(tmp_path: Path) -> None:
    odd = RelPath("a\x1b[2Jb.txt")  # a name the server may send: an escape sequence
    result = pull.PullResult("exp", "1", tmp_path, kept=[PathProblem(odd, "differs")])
    out = io.StringIO()
    print_pull(result, out)
    assert "\x1b" not in out.getvalue() and "kept a\\x1b[2Jb.txt: differs" in out.getvalue()
