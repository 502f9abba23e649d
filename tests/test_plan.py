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
from jatos_sync.plan import Folder, Plan, Policy, make_plan, next_synced

P = RelPath


def local(files: Mapping[str, tuple[int, ...]], **kw: object) -> LocalSnapshot:
    """Files as (size, checksum) or (size, checksum, digest byte)."""
    return LocalSnapshot(
        files={
            P(p): LocalFile(v[0], v[1], bytes([v[2]]) * 16 if len(v) > 2 else b"")
            for p, v in files.items()
        },
        **kw,  # type: ignore[arg-type]
    )


def remote(files: Mapping[str, tuple[int, int]], api_version: str = "1.0.1") -> RemoteSnapshot:
    return RemoteSnapshot(
        files={P(p): FileInfo(*v) for p, v in files.items()}, api_version=api_version
    )


def synced(files: Mapping[str, tuple[int, ...]]) -> dict[RelPath, FileInfo]:
    return {
        P(p): FileInfo(v[0], v[1], bytes([v[2]]) * 16 if len(v) > 2 else b"")
        for p, v in files.items()
    }


SAME_FOLDER = Folder()


def never(_path: RelPath) -> bool:
    return False


def plan_for(
    loc: LocalSnapshot,
    rem: RemoteSnapshot,
    syn: Mapping[RelPath, FileInfo] | None = None,
    policy: Policy | None = None,
    ignored: object = never,
    folder: Folder = SAME_FOLDER,
) -> Plan:
    return make_plan(
        loc,
        rem,
        syn or {},
        policy or Policy(),
        ignored=ignored,  # type: ignore[arg-type]
        folder=folder,
    )


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
    files = {"keep.js": (1, 1), "old.js": (2, 2)}
    plan = plan_for(
        local({"keep.js": (1, 1)}), remote(files), synced(files), policy=Policy(delete=False)
    )
    assert plan.deletes == () and plan.withheld == ()


def test_ignored_remote_files_are_never_deleted() -> None:
    files = {"a.js": (1, 1), "notes.psd": (9, 9)}
    for prune in (False, True):
        plan = plan_for(
            local({"a.js": (1, 1)}),
            remote(files),
            synced(files),
            policy=Policy(prune=prune),
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


def test_a_server_file_never_synced_from_here_is_kept_and_reported() -> None:
    # A colleague's file added in the GUI, or one a `pull` could not fetch (docs/safety.md,
    # rule 5): not ours to delete.
    plan = plan_for(
        local({"a.js": (1, 1)}),
        remote({"a.js": (1, 1), "theirs.js": (2, 2), "d/also.css": (3, 3)}),
        synced({"a.js": (1, 1)}),
    )
    assert plan.deletes == () and plan.withheld == ()
    assert plan.server_only == (P("d/also.css"), P("theirs.js"))


def test_prune_deletes_server_only_files_after_backing_them_up() -> None:
    plan = plan_for(
        local({"a.js": (1, 1)}),
        remote({"a.js": (1, 1), "theirs.js": (2, 2)}),
        synced({"a.js": (1, 1)}),
        policy=Policy(prune=True),
    )
    assert plan.deletes == (P("theirs.js"),)
    assert plan.backups == (P("theirs.js"),)
    assert plan.server_only == ()


def test_a_file_synced_before_and_changed_on_the_server_is_backed_up_before_delete() -> None:
    plan = plan_for(
        local({"a.js": (1, 1)}),
        remote({"a.js": (1, 1), "b.js": (2, 22)}),
        synced({"a.js": (1, 1), "b.js": (2, 2)}),
    )
    assert plan.deletes == (P("b.js"),)
    assert plan.backups == (P("b.js"),)
    assert plan.server == {P("b.js"): FileInfo(2, 22)}


def test_backup_can_be_switched_off() -> None:
    plan = plan_for(local({"a.js": (3, 3)}), remote({"a.js": (4, 4)}), policy=Policy(backup=False))
    assert plan.backups == ()


def test_scan_errors_withhold_all_deletions() -> None:
    loc = local({"a.js": (1, 1)}, errors=(PathProblem(P("secret/x"), "permission denied"),))
    files = {"a.js": (1, 1), "b.js": (2, 2)}
    plan = plan_for(loc, remote(files), synced(files))
    assert plan.deletes == ()
    assert plan.withheld == (P("b.js"),)
    assert "scan hit 1 error" in plan.withheld_reason


@pytest.mark.parametrize("kind", ["errors", "unsyncable"])
@pytest.mark.parametrize("where", ["secret.js", "secret"])
def test_a_path_that_cannot_be_read_protects_its_server_copies_and_is_no_deletion(
    kind: str, where: str
) -> None:
    # An unreadable file is not "a deletion the guard withheld" (exit 4): it is there. An
    # unreadable or dangling folder (a symlink to an unmounted share) protects every file
    # below it.
    files = {"a.js": (1, 1)} | (
        {"secret.js": (2, 2)}
        if where == "secret.js"
        else {"secret/x.png": (3, 3), "secret/y/z": (4, 4)}
    )
    problem = PathProblem(P(where), "permission denied")
    loc = local({"a.js": (1, 1)}, **{kind: (problem,)})
    plan = plan_for(loc, remote(files), synced(files), policy=Policy(allow_mass_delete=True))
    protected = {"secret.js"} if where == "secret.js" else {"secret/x.png", "secret/y/z"}
    assert not {str(p) for p in (*plan.deletes, *plan.withheld)} & protected
    assert plan.withheld == () and plan.deletes == ()


def test_empty_folder_withholds_deletions_even_with_yes() -> None:
    plan = plan_for(
        local({}),
        remote({"a.js": (1, 1)}),
        synced({"a.js": (1, 1)}),
        policy=Policy(allow_mass_delete=True),
    )
    assert plan.deletes == () and plan.withheld == (P("a.js"),)
    assert "no syncable files" in plan.withheld_reason


def test_a_replaced_folder_withholds_deletions_whatever_the_study_size() -> None:
    # An unmounted drive: the mount point holds one stray file (docs/safety.md, rule 1).
    files = {f"f{i}.js": (1, i) for i in range(9)}
    plan = plan_for(
        local({"stray.txt": (5, 5)}), remote(files), synced(files), folder=Folder(replaced=True)
    )
    assert plan.deletes == () and len(plan.withheld) == 9
    assert "not the one synced before" in plan.withheld_reason
    yes = plan_for(
        local({"stray.txt": (5, 5)}),
        remote(files),
        synced(files),
        policy=Policy(allow_mass_delete=True),
        folder=Folder(replaced=True),
    )
    assert len(yes.deletes) == 9


@pytest.mark.parametrize(
    ("synced_count", "left", "withheld"),
    [(9, 0, True), (2, 0, True), (20, 1, True), (20, 2, False), (3, 1, False), (1, 0, False)],
)
def test_a_folder_that_lost_almost_everything_synced_before_deletes_nothing(
    synced_count: int, left: int, withheld: bool
) -> None:
    files = {f"f{i}.js": (1, i) for i in range(synced_count)}
    loc = {f"f{i}.js": (1, i) for i in range(left)} | {"new.txt": (9, 9)}
    plan = plan_for(local(loc), remote(files), synced(files))
    # (the percentage limit may still withhold a pass for other reasons)
    assert ("synced from this folder before are still there" in plan.withheld_reason) is withheld


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
    files = {f"f{i}.js": (1, i) for i in range(total)}
    rem, syn = remote(files), synced(files)
    loc = local({f"f{i}.js": (1, i) for i in range(deleting, total)})
    plan = plan_for(loc, rem, syn)
    assert bool(plan.withheld) is withheld
    assert len(plan.deletes) == (0 if withheld else deleting)
    if withheld:
        yes = plan_for(loc, rem, syn, policy=Policy(allow_mass_delete=True))
        assert len(yes.deletes) == deleting and yes.withheld == ()


def test_limits_are_configurable() -> None:
    files = {f"f{i}.js": (1, i) for i in range(4)}
    plan = plan_for(
        local({"f0.js": (1, 0), "f1.js": (1, 1)}),
        remote(files),
        synced(files),
        policy=Policy(max_delete=1),
    )
    assert len(plan.withheld) == 2 and "max_delete (1)" in plan.withheld_reason


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
        {"empty.txt": (0, 1), "other.js": (1, 2)},
        unsyncable=(PathProblem(P("bad\udcff.txt"), "not UTF-8"),),
    )
    files = {"empty.txt": (3, 3), "bad\udcff.txt": (2, 2), "gone.js": (1, 1), "other.js": (1, 2)}
    plan = plan_for(loc, remote(files), synced(files))
    assert plan.deletes == (P("gone.js"),)


def test_next_synced_records_uploads_adoptions_and_deletions() -> None:
    rem = remote({"same.js": (1, 1), "up.js": (2, 2), "del.js": (3, 3), "kept.psd": (4, 4)})
    plan = Plan(uploads=(P("up.js"),), deletes=(P("del.js"),), unchanged=(P("same.js"),))
    before = synced({"del.js": (3, 3), "kept.psd": (4, 40), "vanished.js": (5, 5)})
    loc = local({"same.js": (1, 1, 7), "up.js": (2, 22)})
    after = next_synced(
        before,
        rem.files,
        plan,
        loc,
        uploaded={P("up.js"): FileInfo(2, 22, b"\x05" * 16)},
        deleted={P("del.js")},
    )
    assert after == synced({"same.js": (1, 1), "up.js": (2, 22), "kept.psd": (4, 40)})
    assert after[P("same.js")].digest == b"\x07" * 16  # adopted with what was read locally
    assert after[P("up.js")].digest == b"\x05" * 16  # what was sent


def test_an_edit_that_keeps_size_and_adler32_is_uploaded() -> None:
    # Swapping counterbalanced values ({A: 1, B: 2} -> {A: 2, B: 1}) keeps size and Adler-32;
    # the digest of what was uploaded tells (docs/safety.md, rule 12).
    plan = plan_for(
        local({"conditions.json": (24, 99, 2)}),
        remote({"conditions.json": (24, 99)}),
        synced({"conditions.json": (24, 99, 1)}),
    )
    assert plan.uploads == (P("conditions.json"),)
    assert plan.backups == ()  # the server holds what we uploaded: nothing of theirs to keep


@pytest.mark.parametrize(
    ("syn", "remote_info"),
    [
        ({"a.js": (24, 99)}, (24, 99)),  # digest of the upload unknown (an older state)
        ({"a.js": (24, 99, 2)}, (24, 99)),  # same digest
        ({}, (24, 99)),  # never synced: adopted
        ({"a.js": (24, 98, 1)}, (24, 99)),  # changed on the server to what we have
    ],
)
def test_equal_size_and_adler32_is_unchanged_unless_our_upload_was_other_bytes(
    syn: dict[str, tuple[int, ...]], remote_info: tuple[int, int]
) -> None:
    plan = plan_for(local({"a.js": (24, 99, 2)}), remote({"a.js": remote_info}), synced(syn))
    assert plan.uploads == () and plan.unchanged == (P("a.js"),)


@pytest.mark.parametrize(
    ("local_files", "server_files", "first"),
    [
        # a file replaced by a folder of the same name
        (
            {"stimuli/a.csv": (1, 1), "b.js": (1, 2)},
            {"stimuli": (5, 5), "b.js": (1, 2)},
            ["stimuli"],
        ),
        # a folder replaced by a file of the same name
        (
            {"stimuli": (1, 1), "b.js": (1, 2)},
            {"stimuli/a.csv": (5, 5), "stimuli/b/c.csv": (6, 6), "b.js": (1, 2)},
            ["stimuli/a.csv", "stimuli/b/c.csv"],
        ),
    ],
)
def test_a_deletion_that_an_upload_depends_on_comes_first(
    local_files: dict[str, tuple[int, int]],
    server_files: dict[str, tuple[int, int]],
    first: list[str],
) -> None:
    plan = plan_for(local(local_files), remote(server_files), synced(server_files))
    assert [str(p) for p in plan.deletes_first] == first
    assert plan.deletes == ()
    assert [str(p) for p in plan.uploads] == [p for p in local_files if p != "b.js"]


def test_an_upload_blocked_by_a_file_that_is_not_ours_to_delete_is_skipped_with_the_reason() -> (
    None
):
    plan = plan_for(local({"stimuli/a.csv": (1, 1)}), remote({"stimuli": (5, 5)}), synced({}))
    assert plan.uploads == () and plan.deletes_first == ()
    (skip,) = plan.skipped
    assert skip.path == P("stimuli/a.csv") and "in the way" in skip.reason
    assert "--prune" in skip.reason


def test_a_case_only_rename_is_marked_for_a_check_before_the_old_name_is_deleted() -> None:
    plan = plan_for(
        local({"stimuli.js": (3, 3)}),
        remote({"Stimuli.js": (3, 3)}),
        synced({"Stimuli.js": (3, 3)}),
    )
    assert plan.uploads == (P("stimuli.js"),)
    assert plan.deletes == (P("Stimuli.js"),) and plan.case_renames == (P("Stimuli.js"),)


def test_on_a_server_that_ignores_case_names_that_differ_in_case_are_one_file() -> None:
    plan = plan_for(
        local({"stimuli.js": (3, 3), "img/a.png": (4, 5)}),
        remote({"Stimuli.js": (3, 3), "Img/a.png": (4, 4)}),
        synced({"Stimuli.js": (3, 3), "Img/a.png": (4, 4)}),
        folder=Folder(folds_case=True),
    )
    assert plan.deletes == () and plan.withheld == ()
    assert plan.unchanged == (P("stimuli.js"),)
    assert plan.uploads == (P("img/a.png"),)


def test_a_first_sync_lists_what_it_would_replace_that_was_never_synced_from_here() -> None:
    plan = plan_for(
        local({"index.html": (1, 1), "new.js": (2, 2), "same.css": (3, 3)}),
        remote({"index.html": (9, 9), "same.css": (3, 3), "theirs.js": (4, 4)}),
    )
    assert plan.foreign_overwrites == (P("index.html"),)
    assert plan.server_only == (P("theirs.js"),)


def test_the_server_refused_entries_are_reported_never_acted_on() -> None:
    problem = PathProblem(P("..\\x"), "the server listed an unsafe path")
    rem = RemoteSnapshot(files={P("a.js"): FileInfo(1, 1)}, refused=(problem,))
    plan = plan_for(local({"a.js": (1, 1)}), rem, synced({"a.js": (1, 1)}))
    assert plan.skipped == (problem,) and plan.is_noop


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
    prune=st.booleans(),
)
def test_plan_properties(
    loc: dict[str, tuple[int, int]],
    rem: dict[str, tuple[int, int]],
    syn: dict[str, tuple[int, int]],
    api: str,
    delete: bool,
    backup: bool,
    yes: bool,
    prune: bool,
) -> None:
    loc = {p: v for p, v in loc.items() if not _ignored(P(p))}  # scan drops ignored files
    L, R, S = local(loc), remote(rem, api), synced(syn)
    policy = Policy(
        delete=delete, backup=backup, allow_mass_delete=yes, prune=prune, api_version=api
    )
    plan = make_plan(L, R, S, policy, ignored=_ignored)

    # Never deletes a file that exists locally, nor an ignored one, nor (without --prune)
    # one that was never synced from here.
    assert not set(plan.all_deletes) & set(L.files)
    assert not any(_ignored(p) for p in plan.all_deletes)
    if not prune:
        assert set(plan.all_deletes) <= set(S)
    assert not set(plan.server_only) & set(S)
    # Never overwrites or deletes server content it did not write without a backup.
    for path in (*plan.uploads, *plan.all_deletes):
        if backup and path in R.files and S.get(path) != R.files[path]:
            assert path in plan.backups
    # Every local file is accounted for exactly once.
    skipped = {s.path for s in plan.skipped}
    assert sorted([*plan.uploads, *plan.unchanged, *skipped]) == sorted(L.files)
    # HTML after everything else.
    kinds = [p.suffix in (".html", ".htm") for p in plan.uploads]
    assert kinds == sorted(kinds)
    # A deletion that must come first is in the way of an upload of this pass.
    for path in plan.deletes_first:
        assert any(path in u.parents or u in path.parents for u in plan.uploads)

    # One fault-free pass converges: applying the plan to the remote side yields the local
    # side for every syncable file, and a second plan has nothing left to upload.
    after = dict(R.files)
    for path in plan.deletes_first:
        del after[path]
    for path in plan.uploads:
        after[path] = L.files[path].info
    for path in plan.deletes:
        del after[path]
    syncable = {p: f.info for p, f in L.files.items() if p not in skipped}
    assert {p: after[p] for p in syncable} == syncable
    S2 = next_synced(
        S,
        R.files,
        plan,
        L,
        uploaded={p: L.files[p].info for p in plan.uploads},
        deleted=plan.all_deletes,
    )
    again = make_plan(L, RemoteSnapshot(after, api), S2, policy, ignored=_ignored)
    assert again.uploads == ()
    if delete and not plan.withheld:
        extra = {p for p in after if p not in L.files and not _ignored(p) and p in S2}
        assert extra == set()
