"""RelPath behaves as pathlib.PurePosixPath does for every operation the program uses."""

from __future__ import annotations

import copy
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jatos_sync.model import RelPath

segment = st.one_of(
    st.sampled_from(["a", "b.txt", ".hidden", "x.tar.gz", "name.", "..", ".", "", "ü ß", "a-b"]),
    st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]), max_size=6),
)
# "//a" is left out: POSIX lets a path start with two slashes, and pathlib keeps them; no
# path of the program is absolute at all.
spelling = st.lists(segment, max_size=5).map("/".join).filter(lambda s: not s.startswith("//"))


@given(spelling)
def test_a_relpath_has_the_parts_and_names_of_a_pure_posix_path(text: str) -> None:
    ours, theirs = RelPath(text), PurePosixPath(text)
    assert str(ours) == str(theirs)
    assert ours.parts == theirs.parts
    assert (ours.name, ours.suffix, ours.stem) == (theirs.name, theirs.suffix, theirs.stem)
    assert str(ours.parent) == str(theirs.parent)
    assert [str(p) for p in ours.parents] == [str(p) for p in theirs.parents]
    assert ours.is_absolute() == theirs.is_absolute()


@given(spelling, spelling)
def test_joining_and_relating_relpaths_is_as_pathlib_does_it(left: str, right: str) -> None:
    ours, theirs = RelPath(left), PurePosixPath(left)
    assert str(ours / right) == str(theirs / right)
    assert str(ours.joinpath(right, "z")) == str(theirs.joinpath(right, "z"))
    joined = RelPath(left) / right
    assert joined.is_relative_to(ours) == PurePosixPath(str(joined)).is_relative_to(theirs)
    if PurePosixPath(str(joined)).is_relative_to(theirs):
        assert str(joined.relative_to(ours)) == str(PurePosixPath(str(joined)).relative_to(theirs))
    else:
        with pytest.raises(ValueError, match="is not in the subpath of"):
            joined.relative_to(ours)


def test_a_relpath_is_the_str_it_spells_and_a_local_path_joins_it() -> None:
    path = RelPath("img", "logo.png")
    assert path == "img/logo.png" and {"img/logo.png": 1}[path] == 1
    assert Path("/srv/study") / path == Path("/srv/study/img/logo.png")
    assert RelPath() == RelPath(".") == RelPath("./") == "." and RelPath().parts == ()
    assert (
        path.with_name("icon.svg") == "img/icon.svg" and path.with_suffix(".gif") == "img/logo.gif"
    )
    assert copy.deepcopy(path) == path and type(copy.deepcopy(path)) is RelPath
    assert repr(path) == "RelPath('img/logo.png')"
