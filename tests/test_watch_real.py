"""A real observer (inotify here, and watchdog's polling observer) on temp folders, the whole
daemon against the stand-in: each editor's save pattern is one upload of the final content
and none of a temp file; rebuilds, branch switches and directory moves lose nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jatos_sync.daemon.supervisor import Daemon
from jatos_sync.daemon.worker import Timings
from tests.conftest import make_world
from tests.daemon_lab import FAST, Lab, asset_requests, running, wait_for

world_at = contextlib.contextmanager(make_world)
OLD = b"<html>old version</html>\n"
NEW = b"<html>new version, saved</html>\n"
_markers = itertools.count()


class Rig:
    """A running daemon for one mapping; `settle()` waits until every change so far is done."""

    def __init__(self, lab: Lab, daemon: Daemon) -> None:
        self.lab, self.daemon = lab, daemon
        self.folder = lab.world.folder
        self.server = lab.server

    def settle(self) -> None:
        # Events arrive in order: once a file written after everything else is on the
        # server, and nothing is pending any more, every earlier change was handled.
        marker = f"zz-settled-{next(_markers)}.txt"
        (self.folder / marker).write_text("marker")
        wait_for("the marker", lambda: marker in asset_requests(self.server, "upload"))
        worker = self.daemon.workers["exp"]
        wait_for(
            "nothing pending",
            lambda: worker.status.pending == 0 and worker.status.state == "idle",
        )

    def requests(self, kind: str) -> dict[str, int]:
        counts = asset_requests(self.server, kind)
        return {p: n for p, n in counts.items() if not p.startswith("zz-settled-")}

    def remote(self) -> dict[str, bytes]:
        return {p: c for p, c in self.lab.files().items() if not p.startswith("zz-settled-")}


@pytest.fixture(params=["events", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def started(
    tmp_path: Path,
    mode: str,
    files: dict[str, bytes],
    *,
    prepare: Callable[[Path], object] = lambda folder: None,
    timings: Timings = FAST,
) -> Iterator[Rig]:
    """A daemon following a folder that holds `files` (and what `prepare` adds to the
    folder), already synced."""
    with world_at(tmp_path) as world:
        lab = Lab(world)
        polling = "always" if mode == "polling" else "never"
        lab.watch = (
            f"watch:\n  debounce: 0.1\n  delete_delay: 0.6\n  polling: {polling}\n"
            "  poll_interval: 0.1\n"
        )
        lab.write_config()
        write_tree(world.folder, files)
        prepare(world.folder)
        daemon = lab.daemon(timings=timings)
        with running(daemon):
            rig = Rig(lab, daemon)
            rig.settle()
            assert set(files) <= set(rig.remote())
            assert daemon.workers["exp"].status.mode == mode
            world.server.clear_requests()
            yield rig


@pytest.fixture
def rig(tmp_path: Path, mode: str) -> Iterator[Rig]:
    with started(tmp_path, mode, {"index.html": OLD, "img/logo.png": b"png"}) as rig:
        yield rig


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


# ------------------------------------------------------------------ editor save patterns


def vim_backupcopy_yes(folder: Path) -> None:
    f = folder / "index.html"
    shutil.copyfile(f, folder / "index.html~")  # 'writebackup': a copy first
    with f.open("wb") as fh:  # then the original is overwritten in place (same inode)
        fh.write(NEW)
    (folder / "index.html~").unlink()


def vim_backupcopy_no(folder: Path) -> None:
    swap = folder / ".index.html.swp"
    swap.write_bytes(b"b0VIM swap")
    probe = folder / "4913"  # may vim create files here?
    probe.write_bytes(b"")
    probe.unlink()
    os.rename(folder / "index.html", folder / "index.html~")
    (folder / "index.html").write_bytes(NEW)
    (folder / "index.html~").unlink()
    swap.unlink()


def emacs(folder: Path) -> None:
    lock = folder / ".#index.html"
    os.symlink("ana@lab-pc.4242:1700000000", lock)  # a dangling lock link
    (folder / "#index.html#").write_bytes(b"auto-saved")
    os.rename(folder / "index.html", folder / "index.html~")  # backup on the first save
    (folder / "index.html").write_bytes(NEW)
    (folder / "#index.html#").unlink()
    lock.unlink()


def jetbrains_safe_write(folder: Path) -> None:
    (folder / "index.html___jb_tmp___").write_bytes(NEW)
    os.rename(folder / "index.html", folder / "index.html___jb_old___")
    os.rename(folder / "index.html___jb_tmp___", folder / "index.html")
    (folder / "index.html___jb_old___").unlink()


def vscode_in_place(folder: Path) -> None:
    with (folder / "index.html").open("r+b") as fh:
        fh.truncate(0)
        fh.flush()
        fh.write(NEW)


def vscode_temp_and_rename(folder: Path) -> None:
    (folder / "index.html.vsctmp").write_bytes(NEW)
    os.replace(folder / "index.html.vsctmp", folder / "index.html")


def sed_in_place(folder: Path) -> None:
    subprocess.run(
        ["sed", "-i", "s/old version/new version, saved/", "index.html"], cwd=folder, check=True
    )


def cp_over(folder: Path) -> None:
    source = folder.parent / "outside.html"
    source.write_bytes(NEW)
    subprocess.run(["cp", str(source), str(folder / "index.html")], check=True)


def rsync_into(folder: Path) -> None:
    source = folder.parent / "build"
    source.mkdir()
    (source / "index.html").write_bytes(NEW)
    if shutil.which("rsync"):
        subprocess.run(["rsync", "-r", f"{source}/", f"{folder}/"], check=True)
    else:  # the same system calls: a hidden temp file beside the target, then a rename
        (folder / ".index.html.Xa81Qz").write_bytes(NEW)
        os.rename(folder / ".index.html.Xa81Qz", folder / "index.html")


SAVES: list[Callable[[Path], None]] = [
    vim_backupcopy_yes,
    vim_backupcopy_no,
    emacs,
    jetbrains_safe_write,
    vscode_in_place,
    vscode_temp_and_rename,
    sed_in_place,
    cp_over,
    rsync_into,
]


@pytest.mark.parametrize("save", SAVES, ids=lambda f: f.__name__)
def test_an_editor_save_is_one_upload_of_the_final_content(
    rig: Rig, save: Callable[[Path], None]
) -> None:
    save(rig.folder)
    rig.settle()
    assert rig.remote() == {"index.html": NEW, "img/logo.png": b"png"}
    assert rig.requests("upload") == {"index.html": 1}
    assert rig.requests("delete") == {}


# ------------------------------------------------------------------ bursts and trees


def test_a_rebuild_within_the_delete_delay_sends_only_what_changed(
    tmp_path: Path, mode: str
) -> None:
    dist = {f"dist/assets/chunk-{i:02}.js": f"chunk {i}".encode() for i in range(40)}
    dist["dist/index.html"] = b"<html>build 1</html>"
    with started(tmp_path, mode, dist) as rig:
        shutil.rmtree(rig.folder / "dist")
        rebuilt = dict(dist)
        rebuilt["dist/index.html"] = b"<html>build 2</html>"
        rebuilt["dist/assets/chunk-07.js"] = b"chunk 7, changed"
        rebuilt["dist/assets/chunk-99.js"] = b"a new chunk"
        for rel, content in rebuilt.items():
            path = rig.folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        rig.settle()
        assert rig.remote() == rebuilt
        assert rig.requests("upload") == {
            "dist/index.html": 1,
            "dist/assets/chunk-07.js": 1,
            "dist/assets/chunk-99.js": 1,
        }
        assert rig.requests("delete") == {}


def test_a_directory_renamed_moves_its_files_on_the_server(rig: Rig) -> None:
    stim = {f"stim/s{i}.png": f"s{i}".encode() for i in range(5)}
    write_tree(rig.folder, stim)
    rig.settle()
    rig.server.clear_requests()
    os.rename(rig.folder / "stim", rig.folder / "stimuli")
    rig.settle()
    moved = {rel.replace("stim/", "stimuli/"): content for rel, content in stim.items()}
    assert rig.remote() == {"index.html": OLD, "img/logo.png": b"png", **moved}
    assert rig.requests("upload") == dict.fromkeys(moved, 1)
    assert rig.requests("delete") == dict.fromkeys(stim, 1)


def test_files_of_a_directory_moved_away_wait_for_the_delete_delay(rig: Rig) -> None:
    old = {f"stim/s{i}.png": f"s{i}".encode() for i in range(5)}
    write_tree(rig.folder, old)
    rig.settle()
    rig.server.clear_requests()
    away = rig.folder.parent / "stim-away"
    os.rename(rig.folder / "stim", away)  # one event for the directory, none for its files
    (rig.folder / "stim").mkdir()
    (rig.folder / "stim" / "new.png").write_bytes(b"new")
    wait_for("the new file", lambda: "stim/new.png" in rig.requests("upload"))
    for moved in away.iterdir():  # back before the delete delay is over
        os.rename(moved, rig.folder / "stim" / moved.name)
    rig.settle()
    assert rig.requests("delete") == {}
    assert rig.remote() == {
        "index.html": OLD,
        "img/logo.png": b"png",
        "stim/new.png": b"new",
        **old,
    }


def test_a_directory_deleted_and_recreated_is_still_watched(rig: Rig) -> None:
    shutil.rmtree(rig.folder / "img")
    (rig.folder / "img").mkdir()
    (rig.folder / "img" / "logo.png").write_bytes(b"png")
    rig.settle()
    assert rig.requests("upload") == {} and rig.requests("delete") == {}
    (rig.folder / "img" / "new.png").write_bytes(b"new")
    rig.settle()
    assert rig.remote()["img/new.png"] == b"new"
    assert rig.requests("upload") == {"img/new.png": 1}


def test_the_watched_folder_deleted_deletes_nothing_and_resumes_when_back(rig: Rig) -> None:
    shutil.rmtree(rig.folder)
    worker = rig.daemon.workers["exp"]
    wait_for("the pause", lambda: worker.status.state == "paused")
    assert rig.requests("delete") == {}
    (rig.folder / "img").mkdir(parents=True)
    (rig.folder / "img" / "logo.png").write_bytes(b"png")
    (rig.folder / "index.html").write_bytes(NEW)
    rig.settle()
    assert rig.remote() == {"index.html": NEW, "img/logo.png": b"png"}
    assert rig.requests("delete") == {}
    assert rig.requests("upload") == {"index.html": 1}


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def test_a_git_checkout_of_a_branch_differing_in_2000_files(tmp_path: Path) -> None:
    # Branch a: 2,500 files. Branch b: 1,000 changed, 400 removed, 600 added (2,000 differ);
    # 1,100 files are the same in both.
    a = {f"stim/{i // 100:02}/f{i:04}.txt": f"a{i}".encode() for i in range(2500)}
    b = {p: c for p, c in a.items() if not 1100 <= int(p[-8:-4]) < 1500}
    changed = [p for p in a if int(p[-8:-4]) < 1000]
    added = {f"new/{i // 100:02}/g{i:04}.txt": f"b{i}".encode() for i in range(600)}
    b.update({p: b"b" + a[p] for p in changed})
    b.update(added)
    with world_at(tmp_path) as world:
        folder = world.folder
        git(folder, "init", "-q", "-b", "a")
        write_tree(folder, a)
        git(folder, "add", "-A")
        git(folder, "commit", "-q", "-m", "a")
        git(folder, "checkout", "-q", "-b", "b")
        for rel in a:
            if rel not in b:
                (folder / rel).unlink()
        write_tree(folder, {p: c for p, c in b.items() if a.get(p) != c})
        git(folder, "add", "-A")
        git(folder, "commit", "-q", "-m", "b")
        git(folder, "checkout", "-q", "a")
        for rel, content in a.items():  # the study is at branch a already
            world.server.put_file(world.study, rel, content)
        lab = Lab(world)
        lab.watch = "watch:\n  debounce: 0.2\n  delete_delay: 1.0\n"
        lab.write_config()
        daemon = lab.daemon()
        with running(daemon):
            rig = Rig(lab, daemon)
            rig.settle()
            assert rig.requests("upload") == {} and rig.requests("delete") == {}
            git(folder, "checkout", "-q", "b")
            rig.settle()
            assert rig.remote() == b
            uploads = rig.requests("upload")
            assert uploads == dict.fromkeys([*changed, *added], 1)
            assert set(rig.requests("delete")) == set(a) - set(b)
            assert max(rig.requests("delete").values()) == 1


# ------------------------------------------------------ symbolic links and hard links

# The worker looks for new links and re-checks hard-linked files every folder_check_s:
# here as in production.
EVERY_CHECK = dataclasses.replace(FAST, folder_check_s=Timings().folder_check_s)
# An edit must reach the server within about one check plus the debounce (0.1 s here);
# a full pass (what found such edits before) comes only every 10 minutes.
PROMPTLY_S = 4.0


def in_place(path: Path, content: bytes) -> None:
    """Rewrite a file's content without replacing its inode (as VS Code saves)."""
    with path.open("r+b") as stream:
        stream.truncate(0)
        stream.write(content)


def test_an_edit_in_a_linked_folder_outside_reaches_the_server(tmp_path: Path, mode: str) -> None:
    shared = tmp_path / "shared"
    write_tree(shared, {"words.csv": b"red\n", "sub/list.csv": b"1\n"})

    def link(folder: Path) -> None:
        os.symlink(shared, folder / "stimuli")

    with started(tmp_path, mode, {"index.html": OLD}, prepare=link, timings=EVERY_CHECK) as rig:
        assert rig.remote()["stimuli/words.csv"] == b"red\n"
        in_place(shared / "words.csv", b"green\n")
        (shared / "sub" / "new.csv").write_bytes(b"new\n")
        wait_for(
            "the edits through the link",
            lambda: (
                rig.remote().get("stimuli/words.csv") == b"green\n"
                and rig.remote().get("stimuli/sub/new.csv") == b"new\n"
            ),
            timeout_s=PROMPTLY_S,
        )
        assert rig.daemon.workers["exp"].status.not_followed == ()


def test_an_edit_in_a_folder_linked_from_inside_reaches_both_of_its_paths(
    tmp_path: Path, mode: str
) -> None:
    def link(folder: Path) -> None:
        os.symlink("real", folder / "js_link")

    files = {"real/a.js": b"a1"}
    with started(tmp_path, mode, files, prepare=link, timings=EVERY_CHECK) as rig:
        assert rig.remote()["js_link/a.js"] == b"a1"
        in_place(rig.folder / "real" / "a.js", b"a2")
        wait_for(
            "both paths",
            lambda: rig.remote().get("real/a.js") == rig.remote().get("js_link/a.js") == b"a2",
            timeout_s=PROMPTLY_S,
        )


def test_an_edit_through_a_hard_link_reaches_the_server(tmp_path: Path, mode: str) -> None:
    outside = tmp_path / "outside.js"
    outside.write_bytes(b"v1")

    def link(folder: Path) -> None:
        os.link(outside, folder / "linked.js")

    with started(tmp_path, mode, {"index.html": OLD}, prepare=link, timings=EVERY_CHECK) as rig:
        assert rig.remote()["linked.js"] == b"v1"
        in_place(outside, b"v2, written through the other name")
        wait_for(
            "the edit through the hard link",
            lambda: rig.remote().get("linked.js") == b"v2, written through the other name",
            timeout_s=PROMPTLY_S,
        )


def test_an_edit_of_a_linked_file_outside_reaches_the_server(tmp_path: Path, mode: str) -> None:
    shared = tmp_path / "shared"
    write_tree(shared, {"logo.png": b"png1", "other.png": b"not linked"})

    def link(folder: Path) -> None:
        os.symlink(shared / "logo.png", folder / "logo.png")

    with started(tmp_path, mode, {"index.html": OLD}, prepare=link, timings=EVERY_CHECK) as rig:
        in_place(shared / "logo.png", b"png2")
        in_place(shared / "other.png", b"still not linked")
        wait_for(
            "the edit of the target",
            lambda: rig.remote().get("logo.png") == b"png2",
            timeout_s=PROMPTLY_S,
        )
        assert "other.png" not in rig.remote()


def test_a_link_made_while_watching_is_followed_from_then_on(tmp_path: Path, mode: str) -> None:
    shared = tmp_path / "shared"
    write_tree(shared, {"words.csv": b"red\n"})
    with started(tmp_path, mode, {"index.html": OLD}, timings=EVERY_CHECK) as rig:
        os.symlink(shared, rig.folder / "stimuli")
        wait_for("the linked files", lambda: "stimuli/words.csv" in rig.remote())
        rig.settle()  # the pass that uploaded them is over
        in_place(shared / "words.csv", b"blue\n")
        wait_for(
            "the edit through the new link",
            lambda: rig.remote().get("stimuli/words.csv") == b"blue\n",
            timeout_s=PROMPTLY_S,
        )


def test_a_link_to_an_ancestor_is_not_followed_in_circles(tmp_path: Path, mode: str) -> None:
    def loop(folder: Path) -> None:
        os.symlink("..", folder / "sub" / "up")

    files = {"sub/a.js": b"a1"}
    with started(tmp_path, mode, files, prepare=loop, timings=EVERY_CHECK) as rig:
        in_place(rig.folder / "sub" / "a.js", b"a2")
        rig.settle()
        assert rig.remote() == {"sub/a.js": b"a2"}
        assert rig.requests("upload") == {"sub/a.js": 1}
