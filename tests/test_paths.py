"""Where paths lie: resolved inside/outside checks and server-path validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jatos_sync.errors import UnsafePathError
from jatos_sync.model import RelPath
from jatos_sync.paths import contained, how_inside, is_inside, server_path


@pytest.mark.parametrize(
    "raw",
    ["", "/", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\x00b", "a\\b"],
)
def test_server_paths_that_are_not_plain_relative_paths_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePathError):
        server_path(raw)


@pytest.mark.parametrize("raw", [None, 3, ["a"], {"a": 1}])
def test_server_paths_that_are_not_text_are_refused(raw: object) -> None:
    with pytest.raises(UnsafePathError):
        server_path(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.txt", "a.txt"),
        ("img/", "img"),
        ("dir/a b+c%.png", "dir/a b+c%.png"),
        ("..a", "..a"),
        pytest.param("C:x", "C:x", marks=pytest.mark.skipif(os.name == "nt", reason="POSIX")),
    ],
)
def test_plain_server_paths_are_accepted(raw: str, expected: str) -> None:
    assert server_path(raw) == RelPath(expected)


def test_a_path_spelled_through_a_symlink_is_inside_its_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert is_inside(tmp_path / "link" / "token", tmp_path / "real")
    assert is_inside(tmp_path / "real" / "x", tmp_path / "link")
    assert not is_inside(tmp_path / "elsewhere", tmp_path / "real")


def test_how_inside_explains_only_a_link_the_spelling_hides(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert how_inside(tmp_path / "real" / "data", tmp_path / "real") == ""
    assert how_inside(tmp_path / "link" / "data", tmp_path / "link") == ""
    note = how_inside(tmp_path / "link" / "data", tmp_path / "real")
    assert note == (
        f" (through a symbolic link: {(tmp_path / 'real' / 'data').resolve()} is inside "
        f"{(tmp_path / 'real').resolve()})"
    )


def test_contained_refuses_a_path_that_leaves_its_root_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "escape")
    assert contained(root, RelPath("sub/a.txt")) == root / "sub" / "a.txt"
    with pytest.raises(UnsafePathError):
        contained(root, RelPath("escape/a.txt"))
    with pytest.raises(UnsafePathError):
        contained(root, RelPath("../a.txt"))
