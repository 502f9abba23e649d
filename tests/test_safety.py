"""End-to-end: the data-safety rules of docs/safety.md hold against the ways they were
found broken (a hostile or broken server, an unmounted drive, weak checksums, file/folder
swaps, case-insensitive servers, files never synced from here, unreadable or dangling
paths, a wrong `study:`). Each case has a variant the original report did not name.

Every test runs the real CLI in process against the stand-in server in its 3.9 and 3.10
personalities and asserts on the server's files, the exit code and what was said.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.cli import main
from jatos_sync.testing import assets
from tests.conftest import World, make_world

COUNTERBALANCED = b"{A: 1, B: 2, C: 2, D: 1}\n"
SWAPPED = b"{A: 2, B: 1, C: 1, D: 2}\n"  # same size, same Adler-32


def synced_world(world: World, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        world.put(rel, content)
    first = world.run("sync")
    assert first.code == 0, first.err
    assert world.remote() == files


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# --------------------------------------------------------------- a hostile listing (1, 21)


def add_to_listing(monkeypatch: pytest.MonkeyPatch, *extra: dict[str, Any]) -> None:
    """The stand-in's listing, with `extra` nodes as a broken or hostile server sends them."""
    real = assets.structure

    def structure(*args: Any, **kwargs: Any) -> Any:
        data = real(*args, **kwargs)
        if isinstance(data, list):
            return [*data, *extra]
        data.setdefault("content", []).extend(extra)
        return data

    monkeypatch.setattr(assets, "structure", structure)


def node(path: str, content: bytes = b"x") -> dict[str, Any]:
    import zlib

    return {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "type": "file",
        "size": len(content),
        "checksum": zlib.adler32(content),
        "creation": 0,
        "lastModified": 0,
    }


HOSTILE = ["../../outside.txt", "/etc/hostile.txt", "a/../../../x.txt", "a\\..\\b.txt", "nul\x00"]


@pytest.mark.parametrize("prune", [False, True], ids=["sync", "sync-prune"])
def test_a_listing_with_unsafe_paths_is_refused_where_it_enters(
    world_any: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prune: bool
) -> None:
    synced_world(world_any, {"index.html": b"<html></html>\n"})
    before = tree(tmp_path)
    add_to_listing(monkeypatch, *(node(p) for p in HOSTILE))
    args = ("sync", "--json", "--yes", *(["--prune"] if prune else []))
    result = world_any.run(*args)
    assert result.code == 0, result.err
    (mapping,) = result.json["mappings"]
    assert mapping["deleted"] == [] and mapping["backed_up"] == []
    assert len(mapping["skipped"]) == len(HOSTILE)
    assert all("unsafe path" in s["reason"] for s in mapping["skipped"])
    # nothing was written anywhere but the state folder, and nothing outside tmp_path
    new = {p for p in tree(tmp_path) - before if not p.startswith("state/")}
    assert new == set()
    assert not (tmp_path.parent / "outside.txt").exists()


def test_pull_and_status_refuse_the_same_unsafe_listing(
    world_any: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A variant: the same refusal through another command, and in a tree-shaped listing.
    synced_world(world_any, {"index.html": b"<html></html>\n"})
    add_to_listing(monkeypatch, node("sub/../../../../escaped.txt"))
    before = tree(tmp_path)
    assert world_any.run("status").code == 0
    pulled = world_any.run("pull", "--force", "--json")
    assert pulled.code == 0, pulled.err
    assert tree(tmp_path) - before <= {p for p in tree(tmp_path) if p.startswith("state/")}


def test_a_path_listed_twice_alike_is_taken_once(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"console.log(1);\n"
    synced_world(world_any, {"a.js": content})
    add_to_listing(monkeypatch, node("a.js", content))
    world_any.server.clear_requests()
    for _ in range(2):
        result = world_any.run("sync", "--json")
        assert result.code == 0, result.err
        assert result.json["mappings"][0]["uploaded"] == []
    assert world_any.server.count(kind="upload") == 0
    assert world_any.server.count(kind="download") == 0  # no backup either
    assert "listing_duplicate" in result.err


def test_a_path_listed_twice_with_different_contents_changes_nothing(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_world(world_any, {"a.js": b"one\n", "b.js": b"two\n"})
    (world_any.folder / "b.js").unlink()
    world_any.put("a.js", "changed\n")
    add_to_listing(monkeypatch, node("a.js", b"something else entirely\n"))
    world_any.server.clear_requests()
    result = world_any.run("sync", "--json")
    assert result.code == 5
    assert "names a.js twice" in result.out
    assert world_any.server.count(kind="upload") == world_any.server.count(kind="delete") == 0


# --------------------------------------------------- one study by ID and by UUID (item 4)


def two_mappings(world: World, first: str, second: str) -> None:
    other = world.folder.parent / "other"
    other.mkdir(exist_ok=True)
    world.config_path.write_text(
        f"server:\n  url: {world.server.url}\n  retries: 1\nstate_dir: {world.state_dir}\n"
        f"mappings:\n"
        f"  - name: one\n    folder: {world.folder}\n    study: {first}\n"
        f"  - name: two\n    folder: {other}\n    study: {second}\n",
        encoding="utf-8",
    )


@pytest.mark.parametrize("command", ["sync", "status", "check"])
@pytest.mark.parametrize("spelling", ["id-uuid", "uuid-id"])
def test_two_mappings_of_one_study_by_id_and_uuid_are_refused(
    world_any: World, command: str, spelling: str
) -> None:
    study = world_any.study
    refs = (str(study.id), study.uuid) if spelling == "id-uuid" else (study.uuid, str(study.id))
    two_mappings(world_any, *refs)
    world_any.put("a.js", "a")
    result = world_any.run(command)
    assert result.code == 2
    assert "'one'" in result.err and "'two'" in result.err and "same study" in result.err
    assert world_any.server.count(kind="upload") == 0


def test_two_mappings_of_two_studies_are_fine(world_any: World) -> None:
    other = world_any.server.add_study("Other", members=["alice"])
    two_mappings(world_any, str(world_any.study.id), other.uuid)
    assert world_any.run("sync").code == 0


# ------------------------------------------------------- an unmounted or wrong folder (6)


NINE = {f"stimuli/s{i}.png": bytes([i]) * (i + 1) for i in range(8)} | {"index.html": b"<p>"}


def test_an_unmounted_drive_never_empties_a_small_study(world_any: World) -> None:
    synced_world(world_any, NINE)
    # Unmounted: the drive's folder is gone (kept alive elsewhere, so its inode is not
    # reused), and the mount point holds one stray file.
    world_any.folder.rename(world_any.folder.with_name("on-the-drive"))
    world_any.folder.mkdir()
    world_any.put(".stray-file", "left on the mount point")
    result = world_any.run("sync", "--json")
    assert result.code == 4
    (mapping,) = result.json["mappings"]
    assert "not the one synced before" in mapping["withheld_reason"]
    assert len(mapping["withheld"]) == 9
    assert world_any.server.count(kind="delete") == 0
    assert set(NINE) <= set(world_any.remote())


def test_a_folder_that_lost_almost_everything_it_synced_deletes_nothing(
    world_any: World,
) -> None:
    # A variant: the same folder (same inode), emptied but for one new file.
    synced_world(world_any, NINE)
    for rel in NINE:
        (world_any.folder / rel).unlink()
    world_any.put("notes.txt", "new")
    result = world_any.run("sync", "--json")
    assert result.code == 4
    assert "still there" in result.json["mappings"][0]["withheld_reason"]
    assert world_any.server.count(kind="delete") == 0
    yes = world_any.run("sync", "--yes", "--json")  # the user means it
    assert yes.code == 0 and len(yes.json["mappings"][0]["deleted"]) == 9


# ------------------------------------------------------------- Adler-32 is weak (item 7)


def test_an_edit_that_keeps_size_and_adler32_is_uploaded(world_any: World) -> None:
    synced_world(world_any, {"conditions.yaml": COUNTERBALANCED})
    world_any.put("conditions.yaml", SWAPPED)
    os.utime(world_any.folder / "conditions.yaml", ns=(10**18, 10**18))
    status = world_any.run("status", "--json")
    assert status.json["mappings"][0]["uploaded"] == ["conditions.yaml"]
    result = world_any.run("sync", "--json")
    assert result.json["mappings"][0]["uploaded"] == ["conditions.yaml"]
    assert world_any.remote()["conditions.yaml"] == SWAPPED
    assert world_any.run("sync", "--json").json["mappings"][0]["uploaded"] == []


def test_the_quick_pass_of_watch_uploads_such_an_edit_too(world_any: World) -> None:
    from jatos_sync.client import JatosClient
    from jatos_sync.config import load_config
    from jatos_sync.credentials import Token
    from jatos_sync.model import RelPath
    from jatos_sync.state import StateStore
    from jatos_sync.sync import MappingSync

    synced_world(world_any, {"conditions.yaml": COUNTERBALANCED})
    config = load_config(world_any.config_path)
    with JatosClient(world_any.server.url, Token(world_any.token), retries=0) as client:
        syncer = MappingSync(config.mappings[0], client=client, store=StateStore(config.state_dir))
        assert syncer.full_pass().uploaded == []
        world_any.put("conditions.yaml", SWAPPED)
        os.utime(world_any.folder / "conditions.yaml", ns=(10**18, 10**18))
        assert syncer.quick_pass([RelPath("conditions.yaml")]).uploaded == [
            RelPath("conditions.yaml")
        ]
    assert world_any.remote()["conditions.yaml"] == SWAPPED


# --------------------------------------------------------- a file becomes a folder (8)


def test_a_file_replaced_by_a_folder_of_the_same_name_converges(world_any: World) -> None:
    synced_world(world_any, {"stimuli": b"a file\n", "old.js": b"old\n", "keep.js": b"k\n"})
    (world_any.folder / "stimuli").unlink()
    (world_any.folder / "old.js").unlink()
    world_any.put("stimuli/list.csv", "word\n")
    result = world_any.run("sync", "--json")
    assert result.code == 0, result.out
    assert world_any.remote() == {"stimuli/list.csv": b"word\n", "keep.js": b"k\n"}
    assert world_any.run("sync", "--json").json["mappings"][0] == {
        **world_any.run("status", "--json").json["mappings"][0],
        "exit_code": 0,
    }


def test_a_folder_replaced_by_a_file_of_the_same_name(world_any: World) -> None:
    # The reverse. JATOS 3.9 replaces the folder left empty by the deletions; 3.10 cannot
    # replace a folder by a file through its API and says so - and unrelated deletions
    # still happen (one failed upload holds back only what it could matter to).
    synced_world(
        world_any,
        {"stimuli/a.csv": b"a\n", "stimuli/b.csv": b"b\n", "old.js": b"o\n", "keep.js": b"k"},
    )
    shutil.rmtree(world_any.folder / "stimuli")
    (world_any.folder / "old.js").unlink()
    world_any.put("stimuli", "now a file\n")
    world_any.put("new.js", "new\n")
    result = world_any.run("sync", "--json")
    (mapping,) = result.json["mappings"]
    assert sorted(mapping["deleted"]) == ["old.js", "stimuli/a.csv", "stimuli/b.csv"]
    if world_any.server.api_version == "1.1.0":
        assert result.code == 1
        (failed,) = mapping["failed"]
        assert failed["path"] == "stimuli" and "JATOS GUI" in failed["error"]
        assert world_any.remote() == {"new.js": b"new\n", "keep.js": b"k"}
    else:
        assert result.code == 0, result.out
        assert world_any.remote() == {
            "stimuli": b"now a file\n",
            "new.js": b"new\n",
            "keep.js": b"k",
        }


def test_a_failed_upload_does_not_hold_back_unrelated_deletions(world_any: World) -> None:
    synced_world(world_any, {"a.js": b"a\n", "old.js": b"old\n", "page.html": b"<p>\n"})
    (world_any.folder / "old.js").unlink()
    world_any.put("big.bin", b"x" * 3000)
    world_any.server.faults.proxy_max_body_bytes = 2000  # a proxy refuses big.bin
    result = world_any.run("sync", "--json")
    assert result.code == 1
    (mapping,) = result.json["mappings"]
    assert [f["path"] for f in mapping["failed"]] == ["big.bin"]
    assert mapping["deleted"] == ["old.js"]
    # ...but a failed HTML page keeps every deletion: the old page may still use the files
    world_any.put("page.html", "<p>" + "y" * 3000)
    (world_any.folder / "a.js").unlink()
    result = world_any.run("sync", "--json")
    (mapping,) = result.json["mappings"]
    assert mapping["deleted"] == [] and mapping["withheld"] == ["a.js"]


# ----------------------------------------------- a case-insensitive server (item 9)


@pytest.fixture(params=["3.9", "3.10"])
def folding(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    for world in make_world(tmp_path, personality=request.param):
        world.server.case_insensitive = True
        yield world


def test_a_case_only_rename_keeps_the_file_on_a_server_that_ignores_case(
    folding: World,
) -> None:
    synced_world(folding, {"Stimuli.js": b"var s = 1;\n", "index.html": b"<p>\n"})
    (folding.folder / "Stimuli.js").rename(folding.folder / "stimuli.js")
    result = folding.run("sync", "--json")
    assert result.code == 0, result.out
    assert folding.remote() == {"stimuli.js": b"var s = 1;\n", "index.html": b"<p>\n"}
    folding.server.clear_requests()
    again = folding.run("sync", "--json")
    assert again.json["mappings"][0]["uploaded"] == again.json["mappings"][0]["deleted"] == []
    assert folding.server.count(kind="upload") == folding.server.count(kind="delete") == 0


def test_a_folder_renamed_in_case_only_converges_on_a_server_that_ignores_case(
    folding: World,
) -> None:
    # A variant: the folder's spelling cannot change on such a server; the file stays.
    synced_world(folding, {"Img/a.png": b"png", "Keep.js": b"k"})
    (folding.folder / "Keep.js").rename(folding.folder / "keep.js")  # teaches the server kind
    assert folding.run("sync").code == 0
    (folding.folder / "Img").rename(folding.folder / "img")
    for _ in range(2):
        result = folding.run("sync", "--json")
        assert result.code == 0, result.out
    assert result.json["mappings"][0]["uploaded"] == result.json["mappings"][0]["deleted"] == []
    assert folding.remote() == {"Img/a.png": b"png", "keep.js": b"k"}


def test_a_case_only_rename_on_a_server_that_keeps_case_renames_it(world_any: World) -> None:
    synced_world(world_any, {"Stimuli.js": b"var s = 1;\n"})
    (world_any.folder / "Stimuli.js").rename(world_any.folder / "stimuli.js")
    result = world_any.run("sync", "--json")
    assert result.code == 0, result.out
    assert world_any.remote() == {"stimuli.js": b"var s = 1;\n"}


# ------------------------------------------ files never synced from here are kept (11)


def test_a_file_pull_could_not_fetch_is_not_deleted_by_the_next_sync(world_any: World) -> None:
    long_name = "n" * 241 + ".csv"  # pull's temporary name for it is too long
    (world_any.study.assets_dir / long_name).write_bytes(b"data\n")
    world_any.server.put_file(world_any.study, "index.html", b"<p>\n")
    pulled = world_any.run("pull", "--json")
    assert pulled.code == 1 and [f["path"] for f in pulled.json["mappings"][0]["failed"]] == [
        long_name
    ]
    result = world_any.run("sync", "--json")
    assert result.code == 0, result.out
    (mapping,) = result.json["mappings"]
    assert mapping["deleted"] == [] and mapping["server_only"] == [long_name]
    assert long_name in world_any.remote()


# ------------------------------------------ unreadable and dangling paths (14, 19)


def test_a_symlinked_folder_whose_target_is_gone_protects_its_server_files(
    world_any: World, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    (share / "faces").mkdir(parents=True)
    for i in range(3):
        (share / "faces" / f"f{i}.png").write_bytes(bytes([i]) * 10)
    world_any.put("index.html", "<p>")
    os.symlink(share, world_any.folder / "shared")
    assert world_any.run("sync").code == 0
    assert len(world_any.remote()) == 4
    shutil.rmtree(share)  # the share is unmounted
    result = world_any.run("sync", "--json")
    (mapping,) = result.json["mappings"]
    assert mapping["deleted"] == [] and mapping["withheld"] == []
    assert [s["path"] for s in mapping["skipped"]] == ["shared"]
    assert len(world_any.remote()) == 4


def test_a_symlink_loop_in_place_of_a_folder_protects_its_server_files(world_any: World) -> None:
    # A variant: a loop instead of a dangling link.
    synced_world(world_any, {"lib/a.js": b"a", "lib/b.js": b"b", "index.html": b"<p>"})
    shutil.rmtree(world_any.folder / "lib")
    os.symlink(world_any.folder / "lib", world_any.folder / "lib")
    result = world_any.run("sync", "--json")
    assert result.json["mappings"][0]["deleted"] == []
    assert set(world_any.remote()) == {"lib/a.js", "lib/b.js", "index.html"}


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make files of a given name unreadable (tests run as root, where chmod does not)."""
    real_open = os.open

    def make(name: str) -> None:
        def fake_open(path: Any, flags: int, *args: Any) -> int:
            if os.fsdecode(path).endswith(name):
                raise PermissionError(errno.EACCES, "Permission denied", path)
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", fake_open)  # as `scan` opens files to hash them

    return make


def test_an_unreadable_file_is_reported_as_unreadable_not_as_a_deletion(
    world_any: World, unreadable: Callable[[str], None]
) -> None:
    synced_world(world_any, {"data.csv": b"1,2\n", "index.html": b"<p>"})
    world_any.put("data.csv", "1,2,3\n")
    os.utime(world_any.folder / "data.csv", ns=(10**18, 10**18))
    unreadable("data.csv")
    result = world_any.run("sync", "--json")
    assert result.code == 1
    (mapping,) = result.json["mappings"]
    assert mapping["withheld"] == [] and mapping["deleted"] == []
    assert [f["path"] for f in mapping["failed"]] == ["data.csv"]
    assert "permission denied" in mapping["failed"][0]["error"]
    assert world_any.remote()["data.csv"] == b"1,2\n"


def test_an_unreadable_file_next_to_a_real_deletion_withholds_only_that_pass(
    world_any: World, unreadable: Callable[[str], None]
) -> None:
    # A variant: a real local deletion in the same pass waits (a scan with errors deletes
    # nothing), and the unreadable file itself is never listed as a deletion.
    synced_world(world_any, {"data.csv": b"1,2\n", "old.js": b"o", "index.html": b"<p>"})
    (world_any.folder / "old.js").unlink()
    os.utime(world_any.folder / "data.csv", ns=(10**18, 10**18))
    unreadable("data.csv")
    result = world_any.run("sync", "--json")
    (mapping,) = result.json["mappings"]
    assert mapping["withheld"] == ["old.js"]
    assert result.code == 4


# ------------------------------------------------------- verified backups (item 17)


def serve_other_bytes(monkeypatch: pytest.MonkeyPatch, path: str, body: bytes) -> None:
    real = assets.open_download

    def open_download(base: Path, rel: str, legal: Any) -> tuple[Any, int]:
        if rel == path:
            return io.BytesIO(body), len(body)
        return real(base, rel, legal)

    monkeypatch.setattr(assets, "open_download", open_download)


@pytest.mark.parametrize("how", ["overwrite", "prune"])
def test_no_verified_backup_no_overwrite(
    world_any: World, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    colleague = b"// the colleague's edit\n"
    synced_world(world_any, {"a.js": b"// mine\n", "index.html": b"<p>"})
    if how == "overwrite":
        world_any.server.put_file(world_any.study, "a.js", colleague)
        world_any.put("a.js", "// mine, edited\n")
        args: tuple[str, ...] = ("sync", "--json")
    else:
        (world_any.folder / "a.js").unlink()
        world_any.server.put_file(world_any.study, "a.js", colleague)
        args = ("sync", "--json")
    serve_other_bytes(monkeypatch, "a.js", b"a proxy's idea of the file")
    result = world_any.run(*args)
    assert result.code == 1
    (mapping,) = result.json["mappings"]
    assert [f["path"] for f in mapping["failed"]] == ["a.js"]
    assert "other bytes" in mapping["failed"][0]["error"]
    assert world_any.remote()["a.js"] == colleague
    assert not list((world_any.state_dir / "backups").rglob("a.js"))


# ------------------------------------- a first sync into someone's study (item 22)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def first_sync_world(world: World) -> None:
    world.server.put_file(world.study, "index.html", b"<p>the colleague's experiment</p>\n")
    world.server.put_file(world.study, "theirs.js", b"// theirs\n")
    world.put("index.html", "<p>mine</p>\n")
    world.put("mine.js", "// mine\n")


def test_a_first_sync_that_would_replace_files_never_synced_here_needs_yes(
    world_any: World,
) -> None:
    first_sync_world(world_any)
    result = world_any.run("sync", "--json")
    assert result.code == 4
    assert "first sync" in result.out and "index.html" in result.out and "--yes" in result.out
    assert world_any.server.count(kind="upload") == 0
    assert world_any.remote()["index.html"] == b"<p>the colleague's experiment</p>\n"
    status = world_any.run("status", "--json").json["mappings"][0]
    assert status["replaces_unsynced"] == ["index.html"]
    yes = world_any.run("sync", "--yes", "--json")
    assert yes.code == 0 and yes.json["mappings"][0]["backed_up"] == ["index.html"]
    assert world_any.remote()["theirs.js"] == b"// theirs\n"  # never synced here: kept


@pytest.mark.parametrize("answer", ["n\n", "y\n", ""])
def test_on_a_terminal_the_first_sync_asks_naming_the_study(world_any: World, answer: str) -> None:
    first_sync_world(world_any)
    out, err = io.StringIO(), Terminal()
    code = main(
        ["-c", str(world_any.config_path), "sync"],
        environ={"JATOS_TOKEN": world_any.token},
        stdout=out,
        stderr=err,
        stdin=Terminal(answer),
    )
    said = err.getvalue()
    assert "'Stroop'" in said and "index.html" in said and "[y/N]" in said
    if answer == "y\n":
        assert code == 0
        assert world_any.remote()["index.html"] == b"<p>mine</p>\n"
    else:
        assert code == 4
        assert world_any.remote()["index.html"] == b"<p>the colleague's experiment</p>\n"


def test_a_first_sync_cut_off_after_the_server_stored_a_file_does_not_stop_the_next(
    world_any: World,
) -> None:
    """The upload arrived but its answer was lost: the next sync recognises its own file
    by what it sent (size and Adler-32), instead of asking as for a stranger's file."""
    world_any.put("index.html", "<p>mine</p>\n")
    world_any.server.faults.lose_answer_next(2)  # the upload and its one retry
    cut = world_any.run("sync", "--json")
    assert cut.code == 5 and world_any.remote() == {"index.html": b"<p>mine</p>\n"}
    world_any.put("index.html", "<p>mine, edited since</p>\n")
    again = world_any.run("sync", "--json")
    assert again.code == 0, again.out + again.err
    assert world_any.remote() == {"index.html": b"<p>mine, edited since</p>\n"}
    assert again.json["mappings"][0]["backed_up"] == []  # it was ours: nothing to save


def test_a_later_sync_does_not_ask_again(world_any: World) -> None:
    first_sync_world(world_any)
    assert world_any.run("sync", "--yes").code == 0
    world_any.server.put_file(world_any.study, "index.html", b"<p>edited in the GUI</p>\n")
    world_any.put("index.html", "<p>mine, v2</p>\n")
    result = world_any.run("sync", "--json")
    assert result.code == 0 and result.json["mappings"][0]["backed_up"] == ["index.html"]


def test_json_reports_list_server_only_files(world_any: World) -> None:
    synced_world(world_any, {"a.js": b"a"})
    world_any.server.put_file(world_any.study, "gui.js", b"gui")
    doc = json.loads(world_any.run("status", "--json").out)
    assert doc["mappings"][0]["server_only"] == ["gui.js"]


def test_pull_never_writes_through_a_symlink_out_of_the_folder(
    world_any: World, tmp_path: Path
) -> None:
    # A variant of rule 10 on the way down: the server names shared/x.png, and shared is a
    # link the user made to a folder outside.
    outside = tmp_path / "lab-share"
    outside.mkdir()
    os.symlink(outside, world_any.folder / "shared")
    world_any.server.put_file(world_any.study, "shared/x.png", b"from the server")
    world_any.server.put_file(world_any.study, "index.html", b"<p>")
    result = world_any.run("pull", "--json")
    assert result.code == 1
    (mapping,) = result.json["mappings"]
    assert [f["path"] for f in mapping["failed"]] == ["shared/x.png"]
    assert "leads outside" in mapping["failed"][0]["error"]
    assert list(outside.iterdir()) == []
    assert (world_any.folder / "index.html").read_bytes() == b"<p>"
