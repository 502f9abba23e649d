"""jzip.py: building a study archive, reading one, unpacking it, and the proof that no entry
of an archive can write outside the target folder (zip-slip), symlinks followed."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.errors import ArchiveError
from jatos_sync.jzip import build_archive, check_export, read_archive, unpack_assets
from jatos_sync.model import RelPath

STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"
JAS: dict[str, Any] = {"version": "3", "data": {"uuid": STUDY_UUID, "title": "T"}}


def make_zip(
    path: Path,
    entries: Mapping[str, bytes | str],
    *,
    links: dict[str, str] | None = None,
) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def jas_text(**data: Any) -> str:
    return json.dumps({"version": "3", "data": {**JAS["data"], **data}})


def test_a_built_archive_has_one_jas_and_the_files_under_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    (folder / "img").mkdir(parents=True)
    (folder / "index.html").write_text("<p>hi</p>")
    (folder / "img" / "a b.png").write_bytes(b"\x89PNG")
    os.utime(folder / "index.html", (0, 0))  # 1970: zip stores 1980 instead of failing
    archive = tmp_path / "s.jzip"
    build_archive(
        archive,
        jas=JAS,
        dir_name="stroop",
        folder=folder,
        files=[RelPath("index.html"), RelPath("img/a b.png")],
    )
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["stroop/img/a b.png", "stroop/index.html", "study.jas"]
        assert json.loads(zf.read("study.jas")) == JAS
    read = read_archive(archive)
    assert read.assets_root == "stroop" and set(read.files) == {
        RelPath("index.html"),
        RelPath("img/a b.png"),
    }


def test_a_build_refuses_a_folder_name_that_would_be_a_second_jas(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a usable"):
        build_archive(
            tmp_path / "s.jzip", jas=JAS, dir_name="my_jas", folder=tmp_path, files=[RelPath("x")]
        )


@pytest.mark.parametrize(
    "name",
    [
        "../evil.html",
        "/etc/evil",
        "stroop/../../evil",
        "stroop\\..\\..\\evil",
        "stroop//x",
        "./stroop/x",
        "stroop/./x",
    ],
)
def test_an_entry_that_would_leave_the_folder_refuses_the_whole_archive(
    tmp_path: Path, name: str
) -> None:
    archive = make_zip(
        tmp_path / "a.jzip", {"s.jas": jas_text(), "stroop/ok.html": "ok", name: "evil"}
    )
    with pytest.raises(ArchiveError, match=r"outside its folder|nothing was unpacked"):
        read_archive(archive)


def test_a_symbolic_link_entry_is_refused(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.jzip", {"s.jas": jas_text()}, links={"stroop/passwd": "/etc/passwd"}
    )
    with pytest.raises(ArchiveError, match="symbolic link"):
        read_archive(archive)


def test_unpacking_never_follows_a_local_link_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "img").symlink_to(outside)  # a link the user made, leading elsewhere
    archive = make_zip(
        tmp_path / "a.jzip",
        {"s.jas": jas_text(), "stroop/img/logo.png": "png", "stroop/index.html": "x"},
    )
    with pytest.raises(ArchiveError, match="leads outside"):
        unpack_assets(archive, read_archive(archive), dest)
    assert list(outside.iterdir()) == []
    assert not (dest / "index.html").exists()  # checked before anything was written


def test_unpacking_writes_the_files_and_keeps_identical_ones(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.jzip",
        {
            "s.jas": jas_text(),
            "stroop/index.html": "x",
            "stroop/js/a.js": "a",
            "__MACOSX/stroop/._index.html": "junk",
            "README.txt": "hello",
        },
    )
    read = read_archive(archive)
    assert read.ignored == ("README.txt",)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "index.html").write_text("x")
    written, kept = unpack_assets(archive, read, dest)
    assert written == [RelPath("js/a.js")] and kept == []
    assert (dest / "js" / "a.js").read_text() == "a"
    assert not list(dest.rglob("*.part")) and not (dest / "__MACOSX").exists()


def test_unpacking_over_other_content_stops_before_writing_unless_asked_to_keep(
    tmp_path: Path,
) -> None:
    archive = make_zip(
        tmp_path / "a.jzip",
        {"s.jas": jas_text(), "stroop/index.html": "new", "stroop/b.js": "b"},
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "index.html").write_text("mine")
    with pytest.raises(ArchiveError, match="other versions of 1 file"):
        unpack_assets(archive, read_archive(archive), dest)
    assert not (dest / "b.js").exists()
    written, kept = unpack_assets(archive, read_archive(archive), dest, keep_existing=True)
    assert (written, kept) == ([RelPath("b.js")], [RelPath("index.html")])
    assert (dest / "index.html").read_text() == "mine"


def test_a_file_where_the_archive_has_a_folder_stops_the_unpacking(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.jzip", {"s.jas": jas_text(), "stroop/js/a.js": "a"})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "js").write_text("a file")
    with pytest.raises(ArchiveError, match="a file where the archive has a folder"):
        unpack_assets(archive, read_archive(archive), dest)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"stroop/index.html": "x"}, "exactly one .jas"),
        ({"a.jas": jas_text(), "b.jas": jas_text()}, "exactly one .jas"),
        ({"s.jas": "{not json"}, "not valid JSON"),
        ({"s.jas": jas_text(), "one/x": "1", "two/y": "2"}, "several top-level folders"),
    ],
)
def test_an_archive_that_is_not_a_study_is_refused(
    tmp_path: Path, entries: dict[str, str], message: str
) -> None:
    with pytest.raises(ArchiveError, match=message):
        read_archive(make_zip(tmp_path / "a.jzip", entries))


def test_with_several_folders_the_one_the_jas_names_holds_the_assets(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.jzip",
        {"s.jas": jas_text(dirName="two"), "one/x": "1", "two/y": "2"},
    )
    read = read_archive(archive)
    assert read.assets_root == "two" and list(read.files) == [RelPath("y")]
    assert read.ignored == ("one/",)


def test_what_is_not_a_zip_is_said_so(tmp_path: Path) -> None:
    (tmp_path / "a.jzip").write_text("<html>login</html>")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        read_archive(tmp_path / "a.jzip")


def test_an_export_is_checked_for_its_study_and_intact_entries(tmp_path: Path) -> None:
    good = make_zip(tmp_path / "good.jzip", {"s.jas": jas_text(), "stroop/x": "x"})
    assert check_export(good, study_uuid=STUDY_UUID).jas == json.loads(jas_text())
    with pytest.raises(ArchiveError, match="describes study"):
        check_export(good, study_uuid="00000000-0000-4000-8000-000000000000")
    damaged = tmp_path / "damaged.jzip"
    data = bytearray(good.read_bytes())
    offset = data.find(b"x", data.find(b"stroop/x") + 8)  # the stored byte of stroop/x
    data[offset] = ord("y")
    damaged.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="damaged"):
        check_export(damaged)


def test_a_truncated_download_is_not_an_archive(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("s.jas", jas_text())
        zf.writestr("stroop/x", "x" * 1000)
    (tmp_path / "cut.jzip").write_bytes(buf.getvalue()[:-30])
    with pytest.raises(ArchiveError):
        check_export(tmp_path / "cut.jzip")
