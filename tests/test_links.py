"""links.py: where a folder's symbolic links lead, and which files have other names."""

from __future__ import annotations

import os
from pathlib import Path

from jatos_sync.ignore import IgnoreRules
from jatos_sync.links import LinkMap, map_links, signature


def make(tmp_path: Path) -> tuple[Path, Path]:
    folder, shared = tmp_path / "exp", tmp_path / "shared"
    (folder / "real" / "deep").mkdir(parents=True)
    (shared / "sub").mkdir(parents=True)
    (shared / "words.csv").write_text("red\n")
    (folder / "real" / "deep" / "a.js").write_text("a")
    return folder.resolve(), shared.resolve()


def test_the_map_follows_links_inside_and_outside_and_notes_hard_links(tmp_path: Path) -> None:
    folder, shared = make(tmp_path)
    os.symlink(shared, folder / "stimuli")
    os.symlink("real", folder / "js_link")
    os.symlink(shared / "words.csv", folder / "words.csv")
    os.link(folder / "real" / "deep" / "a.js", tmp_path / "other-name.js")
    links = map_links(str(folder), IgnoreRules.for_folder(folder))
    assert links.dirs == {
        str(folder): ("",),
        str(shared): ("stimuli",),
        str(folder / "real"): ("js_link",),
    }
    assert links.files == {str(shared / "words.csv"): ("words.csv",)}
    assert links.links == {"stimuli", "js_link", "words.csv"}
    assert set(links.hard) == {"real/deep/a.js", "js_link/deep/a.js"}
    assert links.watch_roots() == {str(shared): True}


def test_loops_ignored_and_broken_links_are_left_out(tmp_path: Path) -> None:
    folder, shared = make(tmp_path)
    os.symlink("..", folder / "real" / "up")
    os.symlink("me", folder / "me")
    os.symlink("nowhere", folder / "typo")
    os.symlink(shared, folder / "drafts")
    (folder / ".jatosignore").write_text("drafts\n")
    links = map_links(str(folder), IgnoreRules.for_folder(folder))
    assert links.dirs == {str(folder): ("",)} and links.links == frozenset()


def test_relatives_name_every_path_the_scan_lists_a_real_path_under(tmp_path: Path) -> None:
    root = str(tmp_path / "exp")
    links = LinkMap(
        root=root,
        dirs={root: ("",), f"{root}/real": ("js_link",), "/srv/shared": ("stimuli", "b/s")},
        files={"/srv/logo.png": ("logo.png",)},
    )
    assert links.relatives(f"{root}/real/a.js") == ["js_link/a.js", "real/a.js"]
    assert links.relatives("/srv/shared/x/y.csv") == ["stimuli/x/y.csv", "b/s/x/y.csv"]
    assert links.relatives("/srv/shared") == ["stimuli", "b/s"]
    assert links.relatives("/srv/logo.png") == ["logo.png"]
    assert links.relatives(root) == [""]
    assert links.relatives("/srv/other.png") == []
    assert links.watch_roots() == {"/srv/shared": True, "/srv": False}


def test_a_link_to_an_ancestor_of_the_folder_does_not_name_its_files_twice(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "lab" / "exp")
    links = LinkMap(root=root, dirs={root: ("",), str(tmp_path): ("up",)})
    assert links.relatives(f"{root}/a.js") == ["a.js"]
    assert links.relatives(str(tmp_path / "lab" / "notes.txt")) == ["up/lab/notes.txt"]


def test_the_signature_changes_with_a_write_through_any_name(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.write_bytes(b"v1")
    os.link(one, tmp_path / "two")
    before = signature(str(one))
    (tmp_path / "two").write_bytes(b"v2, longer")
    assert signature(str(one)) != before
    assert signature(str(tmp_path / "missing")) is None
