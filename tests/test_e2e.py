"""End-to-end: the real CLI against the stand-in server, in the 3.9 and 3.10 personalities,
with path prefixes and study UUIDs. Assertions are on the server's files, the exit code,
the message and the number of requests — not on call sequences."""

from __future__ import annotations

import os
import shutil
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.conftest import World

SAMPLE: dict[str, str | bytes] = {
    "index.html": "<html><script src='js/main.js'></script></html>\n",
    "js/main.js": "console.log('hi');\n",
    "css/style.css": "body { color: black; }\n",
    "img/a b.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "stimuli/practice/list 1.csv": "word,colour\nred,blue\n",
}


def fill(world: World, files: Mapping[str, str | bytes] = SAMPLE) -> None:
    for rel, content in files.items():
        world.put(rel, content)


def as_bytes(files: Mapping[str, str | bytes]) -> dict[str, bytes]:
    return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}


def test_first_sync_uploads_everything_and_second_sends_nothing(world: World) -> None:
    fill(world)
    first = world.run("sync")
    assert first.code == 0, first.err
    assert world.remote() == as_bytes(SAMPLE)
    assert world.server.count(kind="upload") == len(SAMPLE)
    assert "5 uploaded, 0 deleted, 0 unchanged" in first.out

    world.server.clear_requests()
    second = world.run("sync", "--json")
    assert second.code == 0
    assert world.server.count(kind="upload") == 0
    assert world.server.count(kind="delete") == 0
    assert world.server.count(kind="list") == 1
    assert len(world.server.requests) == 2  # the token check and one listing
    doc = second.json
    assert doc["ok"] is True and doc["dry_run"] is False
    (mapping,) = doc["mappings"]
    assert mapping["uploaded"] == [] and mapping["deleted"] == []
    assert mapping["unchanged"] == len(SAMPLE)


def test_html_is_published_after_the_assets_it_references(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    uploads = [r.path for r in world.server.requests if r.method == "POST"]
    assert uploads[-1].endswith("/index.html")


def test_modify_add_delete_and_rename_each_send_the_minimal_requests(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0

    cases: list[tuple[str, Callable[[], object], int, int]] = [
        ("modify", lambda: world.put("js/main.js", "console.log('changed');\n"), 1, 0),
        ("add", lambda: world.put("js/new.js", "new\n"), 1, 0),
        ("delete", lambda: (world.folder / "js/new.js").unlink(), 0, 1),
        (
            "rename",
            lambda: (world.folder / "css/style.css").rename(world.folder / "css/main.css"),
            1,
            1,
        ),
    ]
    for label, change, uploads, deletes in cases:
        change()
        world.server.clear_requests()
        result = world.run("sync")
        assert result.code == 0, (label, result.err)
        assert world.server.count(kind="upload") == uploads, label
        assert world.server.count(kind="delete") == deletes, label
        assert world.remote() == world.local(), label


def test_dry_run_changes_nothing(world: World) -> None:
    fill(world)
    world.server.put_file(world.study, "old.js", b"old")
    result = world.run("sync", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert world.remote() == {"old.js": b"old"}
    assert world.server.count(kind="upload") == 0 and world.server.count(kind="delete") == 0
    doc = result.json
    assert doc["dry_run"] is True
    (mapping,) = doc["mappings"]
    assert sorted(mapping["uploaded"]) == sorted(SAMPLE)
    assert mapping["deleted"] == []  # never synced from here: kept (docs/safety.md, rule 5)
    assert mapping["server_only"] == ["old.js"]
    pruning = world.run("sync", "--dry-run", "--prune", "--json").json["mappings"][0]
    assert pruning["deleted"] == ["old.js"] and pruning["server_only"] == []
    assert pruning["backed_up"] == ["old.js"]  # would be saved first: we never wrote it


def test_status_reports_pending_work_and_changes_nothing(world: World) -> None:
    fill(world)
    result = world.run("status", "--json")
    assert result.code == 0
    assert world.remote() == {}
    assert len(result.json["mappings"][0]["uploaded"]) == len(SAMPLE)


NAMES = [
    "with space.txt",
    "plus+sign.txt",
    "per%cent.txt",
    "hash#tag.txt",
    "and&amp.txt",
    "quest=ion;semi.txt",
    "dir with space/ünïcödé.txt",
    unicodedata.normalize("NFC", "café.txt"),
    unicodedata.normalize("NFD", "café.txt"),
    "日本語/データ.txt",
]


def test_awkward_names_arrive_intact(world: World) -> None:
    files = {name: f"content of {name}\n" for name in NAMES}
    fill(world, files)
    result = world.run("sync")
    assert result.code == 0, result.out + result.err
    assert world.remote() == as_bytes(files)
    world.server.clear_requests()
    assert world.run("sync").code == 0
    assert world.server.count(kind="upload") == 0


def test_empty_files_are_skipped_with_a_reason_and_exit_zero(world: World) -> None:
    fill(world, {"a.js": "a", "empty.txt": ""})
    result = world.run("sync", "--json")
    assert result.code == 0
    (mapping,) = result.json["mappings"]
    assert mapping["skipped"] == [
        {"path": "empty.txt", "reason": "empty file: JATOS refuses to store 0-byte files"}
    ]
    assert world.remote() == {"a.js": b"a"}


# ---------------------------------------------------------------- docs/safety.md


def test_folder_removed_stops_the_mapping_and_keeps_the_study(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    shutil.rmtree(world.folder)
    result = world.run("sync")
    assert result.code == 4
    assert "does not exist" in result.out and "nothing was changed" in result.out
    assert world.remote() == as_bytes(SAMPLE)


def test_folder_replaced_by_a_file_stops_the_mapping(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    shutil.rmtree(world.folder)
    world.folder.write_text("oops")
    assert world.run("sync").code == 4
    assert world.remote() == as_bytes(SAMPLE)


def test_folder_emptied_withholds_all_deletions(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    for child in world.folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    result = world.run("sync", "--yes", "--json")
    assert result.code == 4
    (mapping,) = result.json["mappings"]
    assert sorted(mapping["withheld"]) == sorted(SAMPLE)
    assert world.remote() == as_bytes(SAMPLE)


def test_mass_deletion_is_withheld_until_yes(world: World) -> None:
    many = {f"stim/{i:03}.txt": f"{i}\n" for i in range(20)}
    fill(world, many)
    assert world.run("sync").code == 0
    for i in range(15):
        (world.folder / f"stim/{i:03}.txt").unlink()
    held = world.run("sync")
    assert held.code == 4
    assert "withheld 15 deletion(s)" in held.out
    assert len(world.remote()) == 20
    done = world.run("sync", "--yes")
    assert done.code == 0
    assert world.remote() == world.local()


def test_scan_error_deletes_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(world)
    assert world.run("sync").code == 0
    (world.folder / "js/main.js").unlink()
    secret = world.put("private/notes.txt", "x")
    # Root ignores permission bits, so simulate an unreadable directory at the OS seam.
    real_scandir = os.scandir

    def failing_scandir(path: Any = ".") -> Any:
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", failing_scandir)
    result = world.run("sync", "--json")
    assert result.code == 4
    (mapping,) = result.json["mappings"]
    assert mapping["withheld"] == ["js/main.js"]
    assert any(f["path"] == "private" for f in mapping["failed"])
    assert "js/main.js" in world.remote()
    assert secret.exists()


def test_colleagues_server_edit_is_saved_locally_before_it_is_overwritten(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    world.server.put_file(world.study, "js/main.js", b"colleague's fix\n")
    world.put("js/main.js", "my version\n")
    result = world.run("sync", "--json")
    assert result.code == 0, result.err
    assert result.json["mappings"][0]["backed_up"] == ["js/main.js"]
    assert world.remote()["js/main.js"] == b"my version\n"
    copies = list((world.state_dir / "backups").rglob("main.js"))
    assert [c.read_bytes() for c in copies] == [b"colleague's fix\n"]


def test_a_file_created_in_the_gui_is_kept_and_reported(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    world.server.put_file(world.study, "gui-made.js", b"from the GUI\n")
    result = world.run("sync", "--json")
    assert result.code == 0
    (mapping,) = result.json["mappings"]
    assert mapping["deleted"] == [] and mapping["server_only"] == ["gui-made.js"]
    assert world.remote()["gui-made.js"] == b"from the GUI\n"
    status = world.run("status")
    assert "gui-made.js" in status.out and "--prune" in status.out


def test_prune_saves_a_file_created_in_the_gui_before_it_deletes_it(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    world.server.put_file(world.study, "gui-made.js", b"from the GUI\n")
    result = world.run("sync", "--prune", "--json")
    assert result.code == 0
    assert result.json["mappings"][0]["deleted"] == ["gui-made.js"]
    copies = list((world.state_dir / "backups").rglob("gui-made.js"))
    assert [c.read_bytes() for c in copies] == [b"from the GUI\n"]


def test_ignored_remote_files_are_kept(world: World) -> None:
    world.write_config(mapping_extra='    ignore: ["*.psd", "drafts/"]\n')
    fill(world)
    world.put("drafts/wip.js", "local draft")
    world.server.put_file(world.study, "art/cover.psd", b"psd")
    world.server.put_file(world.study, "drafts/theirs.js", b"theirs")
    result = world.run("sync")
    assert result.code == 0, result.err
    remote = world.remote()
    assert remote["art/cover.psd"] == b"psd"
    assert remote["drafts/theirs.js"] == b"theirs"
    assert "drafts/wip.js" not in remote


def test_editor_and_os_junk_is_never_uploaded(world: World) -> None:
    fill(
        world,
        {
            "a.js": "a",
            ".a.js.swp": "swap",
            "a.js~": "backup",
            "4913": "probe",
            ".DS_Store": "junk",
            ".git/config": "git",
            "x___jb_tmp___": "jb",
        },
    )
    assert world.run("sync").code == 0
    assert world.remote() == {"a.js": b"a"}


def test_delete_false_keeps_remote_only_files(world: World) -> None:
    world.write_config(mapping_extra="    delete: false\n")
    fill(world, {"a.js": "a"})
    world.server.put_file(world.study, "keep.js", b"k")
    assert world.run("sync").code == 0
    assert world.remote() == {"a.js": b"a", "keep.js": b"k"}


def test_damaged_state_is_rebuilt_not_trusted(world: World) -> None:
    fill(world)
    assert world.run("sync").code == 0
    for state_file in world.state_dir.rglob("*.json"):
        state_file.write_text("{ not json")
    world.server.clear_requests()
    result = world.run("sync")
    assert result.code == 0
    assert world.server.count(kind="upload") == 0  # the listing proves the files match
