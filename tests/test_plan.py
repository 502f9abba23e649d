"""The planner: table-driven cases for each rule, and properties over random snapshots."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jatos_sync.model import (
    FileInfo,
    LocalFile,
    LocalSnapshot,
    PathProblem,
    RelPath,
    RemoteSnapshot,
)
from jatos_sync.plan import Plan, Policy, make_plan, next_synced

P = RelPath


def local(files: Mapping[str, tuple[int, int]], **kw: object) -> LocalSnapshot:
    return LocalSnapshot(
        files={P(p): LocalFile(size, checksum) for p, (size, checksum) in files.items()},
        **kw,  # type: ignore[arg-type]
    )


def remote(files: Mapping[str, tuple[int, int]], api_version: str = "1.0.1") -> RemoteSnapshot:
    return RemoteSnapshot(
        files={P(p): FileInfo(*v) for p, v in files.items()}, api_version=api_version
    )


def synced(files: Mapping[str, tuple[int, int]]) -> dict[RelPath, FileInfo]:
    return {P(p): FileInfo(*v) for p, v in files.items()}


def never(_path: RelPath) -> bool:
    return False


def plan_for(
    loc: LocalSnapshot,
    rem: RemoteSnapshot,
    syn: Mapping[RelPath, FileInfo] | None = None,
    policy: Policy | None = None,
    ignored: object = never,
) -> Plan:
    return make_plan(loc, rem, syn or {}, policy or Policy(), ignored=ignored)  # type: ignore[arg-type]


def test_identical_sides_make_an_empty_plan() -> None:
    files = {"index.html": (10, 5), "img/a.png": (20, 7)}
    plan = plan_for(local(files), remote(files), synced(files))
    assert plan.is_noop
    assert plan.unchanged == (P("img/a.png"), P("index.html"))
    assert plan.backups == ()


def test_new_and_changed_files_are_uploaded_html_last() -> None:
    plan = plan_for(
        local({"index.html": (1, 1), "b.js": (2, 2), "a.css": (3, 3), "x/page.htm": (4, 4)}),
        remote({"b.js": (2, 99)}),
        synced({"b.js": (2, 99)}),
    )
    assert plan.uploads == (P("a.css"), P("b.js"), P("index.html"), P("x/page.htm"))
    assert plan.backups == ()


def test_same_size_different_checksum_is_a_change() -> None:
    plan = plan_for(local({"a.js": (5, 1)}), remote({"a.js": (5, 2)}), synced({"a.js": (5, 2)}))
    assert plan.uploads == (P("a.js"),)


def test_remote_files_missing_locally_are_deleted() -> None:
    plan = plan_for(
        local({"keep.js": (1, 1)}),
        remote({"keep.js": (1, 1), "old.js": (2, 2)}),
        synced({"keep.js": (1, 1), "old.js": (2, 2)}),
    )
    assert plan.deletes == (P("old.js"),)
    assert plan.withheld == ()


def test_delete_false_never_deletes() -> None:
    plan = plan_for(
        local({"keep.js": (1, 1)}),
        remote({"keep.js": (1, 1), "old.js": (2, 2)}),
        policy=Policy(delete=False),
    )
    assert plan.deletes == () and plan.withheld == ()


def test_ignored_remote_files_are_never_deleted() -> None:
    plan = plan_for(
        local({"a.js": (1, 1)}),
        remote({"a.js": (1, 1), "notes.psd": (9, 9)}),
        ignored=lambda p: p.suffix == ".psd",
    )
    assert plan.deletes == ()


def test_colleagues_server_edit_is_backed_up_before_overwrite() -> None:
    plan = plan_for(
        local({"a.js": (3, 3)}),
        remote({"a.js": (4, 4)}),  # changed on the server since our last sync
        synced({"a.js": (3, 30)}),
    )
    assert plan.uploads == (P("a.js"),)
    assert plan.backups == (P("a.js"),)


def test_file_never_synced_by_us_is_backed_up_before_delete() -> None:
    plan = plan_for(local({"a.js": (1, 1)}), remote({"a.js": (1, 1), "theirs.js": (2, 2)}))
    assert plan.deletes == (P("theirs.js"),)
    assert plan.backups == (P("theirs.js"),)


def test_backup_can_be_switched_off() -> None:
    plan = plan_for(local({"a.js": (3, 3)}), remote({"a.js": (4, 4)}), policy=Policy(backup=False))
    assert plan.backups == ()


def test_scan_errors_withhold_all_deletions() -> None:
    loc = local({"a.js": (1, 1)}, errors=(PathProblem(P("secret/x"), "permission denied"),))
    plan = plan_for(loc, remote({"a.js": (1, 1), "b.js": (2, 2)}))
    assert plan.deletes == ()
    assert plan.withheld == (P("b.js"),)
    assert "scan hit 1 error" in plan.withheld_reason


def test_empty_folder_withholds_deletions_even_with_yes() -> None:
    plan = plan_for(local({}), remote({"a.js": (1, 1)}), policy=Policy(allow_mass_delete=True))
    assert plan.deletes == () and plan.withheld == (P("a.js"),)
    assert "no syncable files" in plan.withheld_reason


@pytest.mark.parametrize(
    ("total", "deleting", "withheld"),
    [
        (9, 8, False),  # below 10 files the percentage limit does not apply
        (10, 5, False),  # exactly half is allowed
        (10, 6, True),  # more than half is not
        (1000, 499, False),
        (2000, 501, True),  # more than 500 files
    ],
)
def test_mass_deletion_limits(total: int, deleting: int, withheld: bool) -> None:
    rem = remote({f"f{i}.js": (1, i) for i in range(total)})
    loc = local({f"f{i}.js": (1, i) for i in range(deleting, total)})
    plan = plan_for(loc, rem)
    assert bool(plan.withheld) is withheld
    assert len(plan.deletes) == (0 if withheld else deleting)
    if withheld:
        yes = plan_for(loc, rem, policy=Policy(allow_mass_delete=True))
        assert len(yes.deletes) == deleting and yes.withheld == ()


def test_limits_are_configurable() -> None:
    rem = remote({f"f{i}.js": (1, i) for i in range(4)})
    plan = plan_for(local({"f0.js": (1, 0)}), rem, policy=Policy(max_delete=2))
    assert len(plan.withheld) == 3 and "max_delete (2)" in plan.withheld_reason


@pytest.mark.parametrize(
    ("path", "size", "api_version", "reason"),
    [
        ("empty.txt", 0, "1.0.1", "empty file"),
        ("jatos.js", 5, "1.0.1", "jatos.js is never served"),
        ("a:b.txt", 5, "1.1.0", "JATOS 3.10 refuses"),
        ("what?.txt", 5, "1.1.0", "JATOS 3.10 refuses"),
    ],
)
def test_unsyncable_files_are_skipped_with_a_reason(
    path: str, size: int, api_version: str, reason: str
) -> None:
    plan = plan_for(
        local({path: (size, 1)}), remote({}, api_version), policy=Policy(api_version=api_version)
    )
    assert plan.uploads == ()
    assert [(s.path, reason in s.reason) for s in plan.skipped] == [(P(path), True)]


def test_names_differing_only_in_letter_case_keep_the_first() -> None:
    plan = plan_for(local({"Img/A.png": (1, 1), "img/a.png": (1, 1), "b.js": (1, 2)}), remote({}))
    assert plan.uploads == (P("Img/A.png"), P("b.js"))
    (skip,) = plan.skipped
    assert skip.path == P("img/a.png")
    assert "letter case" in skip.reason


def test_names_refused_by_310_are_fine_on_39() -> None:
    plan = plan_for(local({"a:b.txt": (5, 1)}), remote({}), policy=Policy(api_version="1.0.1"))
    assert plan.uploads == (P("a:b.txt"),)


def test_nested_jatos_js_is_synced() -> None:
    plan = plan_for(local({"lib/jatos.js": (5, 1)}), remote({}))
    assert plan.uploads == (P("lib/jatos.js"),)


def test_skipped_and_unsyncable_local_files_keep_their_remote_copy() -> None:
    loc = local(
        {"empty.txt": (0, 1)},
        unsyncable=(PathProblem(P("bad\udcff.txt"), "not UTF-8"),),
    )
    rem = remote({"empty.txt": (3, 3), "bad\udcff.txt": (2, 2), "gone.js": (1, 1)})
    plan = plan_for(loc, rem)
    assert plan.deletes == (P("gone.js"),)


def test_next_synced_records_uploads_adoptions_and_deletions() -> None:
    rem = remote({"same.js": (1, 1), "up.js": (2, 2), "del.js": (3, 3), "kept.psd": (4, 4)})
    plan = Plan(uploads=(P("up.js"),), deletes=(P("del.js"),), unchanged=(P("same.js"),))
    before = synced({"del.js": (3, 3), "kept.psd": (4, 40), "vanished.js": (5, 5)})
    after = next_synced(
        before, rem, plan, uploaded={P("up.js"): FileInfo(2, 22)}, deleted={P("del.js")}
    )
    assert after == synced({"same.js": (1, 1), "up.js": (2, 22), "kept.psd": (4, 40)})


# ---------------------------------------------------------------- properties

names = st.sampled_from(
    [
        "a.js",
        "b.css",
        "index.html",
        "img/x.png",
        "img/y.png",
        "d/e/f.txt",
        "n.psd",
        "jatos.js",
        "q?.txt",
    ]
)
infos = st.tuples(st.integers(0, 3), st.integers(1, 3))
snapshots = st.dictionaries(names, infos, max_size=9)


def _ignored(path: RelPath) -> bool:
    return path.suffix == ".psd"


@settings(max_examples=300, deadline=None)
@given(
    loc=snapshots,
    rem=snapshots,
    syn=snapshots,
    api=st.sampled_from(["1.0.1", "1.1.0"]),
    delete=st.booleans(),
    backup=st.booleans(),
    yes=st.booleans(),
)
def test_plan_properties(
    loc: dict[str, tuple[int, int]],
    rem: dict[str, tuple[int, int]],
    syn: dict[str, tuple[int, int]],
    api: str,
    delete: bool,
    backup: bool,
    yes: bool,
) -> None:
    loc = {p: v for p, v in loc.items() if not _ignored(P(p))}  # scan drops ignored files
    L, R, S = local(loc), remote(rem, api), synced(syn)
    policy = Policy(delete=delete, backup=backup, allow_mass_delete=yes, api_version=api)
    plan = make_plan(L, R, S, policy, ignored=_ignored)

    # Never deletes a file that exists locally, nor an ignored one.
    assert not set(plan.deletes) & set(L.files)
    assert not any(_ignored(p) for p in plan.deletes)
    # Never overwrites or deletes server content it did not write without a backup.
    for path in (*plan.uploads, *plan.deletes):
        if backup and path in R.files and S.get(path) != R.files[path]:
            assert path in plan.backups
    # Every local file is accounted for exactly once.
    skipped = {s.path for s in plan.skipped}
    assert sorted([*plan.uploads, *plan.unchanged, *skipped]) == sorted(L.files)
    # HTML after everything else.
    kinds = [p.suffix in (".html", ".htm") for p in plan.uploads]
    assert kinds == sorted(kinds)

    # One fault-free pass converges: applying the plan to the remote side yields the local
    # side for every syncable file, and a second plan has nothing left to upload.
    after = dict(R.files)
    for path in plan.uploads:
        after[path] = L.files[path].info
    for path in plan.deletes:
        del after[path]
    syncable = {p: f.info for p, f in L.files.items() if p not in skipped}
    assert {p: after[p] for p in syncable} == syncable
    again = make_plan(L, RemoteSnapshot(after, api), S, policy, ignored=_ignored)
    assert again.uploads == ()
    if delete and not plan.withheld:
        extra = {p for p in after if p not in L.files and not _ignored(p)}
        assert extra == set()
