"""MappingSync: full passes list the server; quick passes for changed paths do not."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jatos_sync import plan, sync
from jatos_sync.client import JatosClient
from jatos_sync.config import load_config
from jatos_sync.credentials import Token
from jatos_sync.errors import InternalError
from jatos_sync.model import RelPath
from jatos_sync.state import StateStore
from jatos_sync.sync import MappingSync
from tests.conftest import World

P = RelPath


@pytest.fixture
def syncer(world310: World) -> Iterator[MappingSync]:
    config = load_config(world310.config_path)
    client = JatosClient(config.server.url, Token(world310.token), retries=0)
    try:
        yield MappingSync(config.mappings[0], client=client, store=StateStore(config.state_dir))
    finally:
        client.close()


@pytest.fixture
def synced(world310: World, syncer: MappingSync) -> World:
    world310.put("index.html", "<html></html>")
    world310.put("js/a.js", "a")
    world310.put("js/b.js", "b")
    assert syncer.full_pass().exit_code == 0
    world310.server.clear_requests()
    return world310


def test_quick_pass_without_a_known_remote_is_a_full_pass(
    world310: World, syncer: MappingSync
) -> None:
    world310.put("a.js", "a")
    assert not syncer.remote_known
    result = syncer.quick_pass([P("a.js")])
    assert result.uploaded == [P("a.js")]
    assert world310.server.count(kind="list") == 1
    assert syncer.remote_known


def test_an_edit_costs_exactly_one_request(synced: World, syncer: MappingSync) -> None:
    synced.put("js/a.js", "changed")
    result = syncer.quick_pass([P("js/a.js")])
    assert result.exit_code == 0
    assert result.uploaded == [P("js/a.js")]
    assert [r.kind for r in synced.server.requests] == ["upload"]
    assert synced.remote()["js/a.js"] == b"changed"


def test_an_unchanged_dirty_path_costs_nothing(synced: World, syncer: MappingSync) -> None:
    (synced.folder / "js/a.js").touch()
    assert syncer.quick_pass([P("js/a.js")]).uploaded == []
    assert synced.server.requests == []


def test_held_deletions_wait_and_then_happen(synced: World, syncer: MappingSync) -> None:
    (synced.folder / "js/b.js").unlink()
    held = syncer.quick_pass([P("js/b.js")], hold=[P("js/b.js")])
    assert held.deleted == [] and synced.server.requests == []
    done = syncer.quick_pass([P("js/b.js")])
    assert done.deleted == [P("js/b.js")]
    assert "js/b.js" not in synced.remote()


def test_a_dirty_directory_is_rescanned(synced: World, syncer: MappingSync) -> None:
    synced.put("img/x/1.png", "1")
    synced.put("img/x/2.png", "2")
    result = syncer.quick_pass([P("img")])
    assert sorted(result.uploaded) == [P("img/x/1.png"), P("img/x/2.png")]


def test_a_removed_directory_deletes_its_files_once_not_held(
    synced: World, syncer: MappingSync
) -> None:
    shutil.rmtree(synced.folder / "js")
    result = syncer.quick_pass([P("js")])
    assert sorted(result.deleted) == [P("js/a.js"), P("js/b.js")]
    assert synced.remote() == {"index.html": b"<html></html>"}


def test_quick_passes_keep_the_remote_picture_current(synced: World, syncer: MappingSync) -> None:
    synced.put("js/a.js", "v2")
    syncer.quick_pass([P("js/a.js")])
    synced.put("js/a.js", "a")  # back to the first version: must be uploaded again
    assert syncer.quick_pass([P("js/a.js")]).uploaded == [P("js/a.js")]
    assert synced.remote()["js/a.js"] == b"a"


def test_a_new_jatosignore_rebuilds_the_rules(synced: World, syncer: MappingSync) -> None:
    synced.put(".jatosignore", "*.js\n")
    result = syncer.quick_pass([P(".jatosignore")])
    assert result.deleted == []  # ignored remote files are never deleted
    synced.put("js/c.js", "c")
    assert syncer.quick_pass([P("js/c.js")]).uploaded == []


def test_the_folder_gone_stops_the_quick_pass(synced: World, syncer: MappingSync) -> None:
    shutil.rmtree(synced.folder)
    result = syncer.quick_pass([P("js/a.js")])
    assert result.exit_code == 4
    assert synced.server.requests == []


def test_forget_remote_makes_the_next_pass_list_again(synced: World, syncer: MappingSync) -> None:
    synced.server.put_file(synced.study, "gui.js", b"from the GUI")
    syncer.forget_remote()
    result = syncer.quick_pass([])
    assert synced.server.count(kind="list") == 1
    assert result.deleted == [] and result.server_only == [P("gui.js")]


def test_scan_under_a_single_file_keeps_other_cache_entries(tmp_path: Path) -> None:
    from jatos_sync.ignore import IgnoreRules
    from jatos_sync.scan import ChecksumCache, scan_folder

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("b")
    rules = IgnoreRules.for_folder(tmp_path)
    cache = ChecksumCache()
    scan_folder(tmp_path, rules, cache=cache, clock_ns=lambda: 2**62)
    one = scan_folder(tmp_path, rules, cache=cache, under=P("d/b.txt"), clock_ns=lambda: 2**62)
    assert list(one.files) == [P("d/b.txt")]
    assert len(cache) == 2
    assert scan_folder(tmp_path, rules, cache=cache, under=P("gone")).files == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifying_syncer(world: World, clock: FakeClock) -> MappingSync:
    config = load_config(world.config_path)
    client = JatosClient(config.server.url, Token(world.token), retries=0)
    return MappingSync(
        config.mappings[0],
        client=client,
        store=StateStore(config.state_dir),
        verify_after_s=60.0,
        clock=clock,
    )


def test_a_server_copy_not_seen_for_a_while_is_checked_before_it_is_replaced(
    world310: World,
) -> None:
    clock = FakeClock()
    world310.put("a.js", "a")
    world310.put("b.js", "b")
    syncer = verifying_syncer(world310, clock)
    try:
        assert syncer.full_pass().exit_code == 0
        world310.server.put_file(world310.study, "a.js", b"a colleague's fix")
        world310.server.clear_requests()

        clock.now += 10  # known for 10 s: trusted, one request
        world310.put("b.js", "b2")
        assert syncer.quick_pass([P("b.js")]).uploaded == [P("b.js")]
        assert [r.kind for r in world310.server.requests] == ["upload"]

        clock.now += 61  # a.js not seen for 71 s: looked at first, and the edit found
        world310.server.clear_requests()
        world310.put("a.js", "mine")
        result = syncer.quick_pass([P("a.js")])
        assert result.backed_up == [P("a.js")] and result.uploaded == [P("a.js")]
        assert world310.remote()["a.js"] == b"mine"
        copies = list((world310.state_dir / "backups").rglob("a.js"))
        assert [c.read_bytes() for c in copies] == [b"a colleague's fix"]

        clock.now += 10  # just uploaded by us: trusted again
        world310.server.clear_requests()
        world310.put("a.js", "mine 2")
        syncer.quick_pass([P("a.js")])
        assert [r.kind for r in world310.server.requests] == ["upload"]
    finally:
        syncer.client.close()


def test_a_server_copy_deleted_meanwhile_is_simply_uploaded_again(world310: World) -> None:
    clock = FakeClock()
    world310.put("a.js", "a")
    syncer = verifying_syncer(world310, clock)
    try:
        assert syncer.full_pass().exit_code == 0
        (world310.server.assets_root / world310.study.dir_name / "a.js").unlink()
        clock.now += 120
        world310.put("a.js", "a2")
        result = syncer.quick_pass([P("a.js")])
        assert result.uploaded == [P("a.js")] and result.backed_up == []
        assert world310.remote() == {"a.js": b"a2"}
    finally:
        syncer.client.close()


# --------------------------------------------------------------- no bug ends a pass silently


def add_mapping(world: World, tmp_path: Path) -> tuple[Path, Any]:
    """A second mapping, "other", beside the world's "exp": its folder and study."""
    other = tmp_path / "other"
    other.mkdir()
    study = world.server.add_study("Other", members=["alice"])
    text = world.config_path.read_text(encoding="utf-8")
    world.config_path.write_text(
        text + f"  - name: other\n    folder: {other}\n    study: {study.id}\n", encoding="utf-8"
    )
    return other, study


def test_a_bug_in_one_mapping_is_its_error_and_the_other_mappings_still_sync(
    world310: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, other_study = add_mapping(world310, tmp_path)
    (other / "b.js").write_text("b")
    world310.put("a.js", "a")
    real_plan = plan.make_plan

    def buggy_plan(local: Any, remote: Any, *args: Any, **kwargs: Any) -> Any:
        if RelPath("a.js") in local.files:
            raise RuntimeError("a bug")
        return real_plan(local, remote, *args, **kwargs)

    monkeypatch.setattr(sync, "make_plan", buggy_plan)
    result = world310.run("sync", "--json")
    assert result.code == 1
    exp, second = result.json["mappings"]
    assert exp["error"].startswith("internal error: RuntimeError: a bug")
    assert exp["exit_code"] == 1 and second["exit_code"] == 0
    assert world310.server.files(other_study) == {"b.js": b"b"}
    assert "Traceback" not in result.err
    verbose = world310.run("-v", "sync")
    assert "Traceback" in verbose.err and "RuntimeError: a bug" in verbose.err


def test_a_bug_in_a_quick_pass_is_its_error_and_the_next_pass_lists_again(
    synced: World, syncer: MappingSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "make_plan", lambda *a, **k: (_ for _ in ()).throw(KeyError("x")))
    synced.put("js/a.js", "a2")
    result = syncer.quick_pass([P("js/a.js")])
    assert isinstance(result.error, InternalError) and "KeyError" in str(result.error)
    assert not syncer.remote_known


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
def test_a_quick_pass_keeps_the_server_copy_of_a_file_that_became_unsyncable(
    synced: World, syncer: MappingSync, make: Callable[[Path], None]
) -> None:
    path = synced.folder / "js" / "a.js"
    path.unlink()
    make(path)
    result = syncer.quick_pass([P("js/a.js")])
    assert result.deleted == [] and synced.server.count(kind="delete") == 0
    assert [p.path for p in result.skipped] == [P("js/a.js")]
    assert "js/a.js" in synced.remote()


def test_a_quick_pass_under_a_folder_it_may_not_enter_fails_the_path_and_deletes_nothing(
    synced: World, syncer: MappingSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_stat = os.stat
    inside = str(synced.folder / "js") + os.sep

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(path).startswith(inside):  # "js" lost its x bit for this user
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    result = syncer.quick_pass([P("js/a.js"), P("js/b.js")])
    assert result.error is None
    assert [(str(p.path), p.reason) for p in result.failed] == [
        ("js/a.js", "could not read: permission denied; make it readable"),
        ("js/b.js", "could not read: permission denied; make it readable"),
    ]
    assert result.deleted == [] and {"js/a.js", "js/b.js"} <= set(synced.remote())


def test_a_file_deleted_just_before_its_upload_is_skipped_not_failed(
    synced: World, syncer: MappingSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An edit and a deletion in quick succession (a save, then a rebuild): by the time the
    # upload opens the file it is gone. That is no failure; the next pass deletes it.
    path = synced.put("js/new.js", "new")
    real = JatosClient.upload

    def upload(self: JatosClient, study: str, rel: P, source: Path, *, size: int) -> object:
        path.unlink()
        return real(self, study, rel, source, size=size)

    monkeypatch.setattr(JatosClient, "upload", upload)
    result = syncer.quick_pass([P("js/new.js")])
    assert result.failed == [] and result.exit_code == 0
    assert [s.path for s in result.skipped] == [P("js/new.js")]
