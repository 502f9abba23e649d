"""The plan: what one pass uploads, deletes, withholds, backs up and skips. Pure functions.

`make_plan` compares the local snapshot with the server's listing (size + Adler-32,
docs/jatos-api.md §3.3), with what this tool last synced from this folder, and with what it
knows about the folder itself, under a `Policy`. It applies every data-safety rule of
docs/safety.md that can be decided from values alone. It does no I/O and imports nothing
that does: `--dry-run` prints its result, tests compare it with `==`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from jatos_sync.model import (
    API_VERSION_310,
    FileInfo,
    LocalSnapshot,
    PathProblem,
    RelPath,
    RemoteSnapshot,
    is_html,
)

# JATOS 3.10.5 refuses relative paths that do not match ^[^\x00-\x1F\x7F\\<>:"|?*]+$
# (docs/jatos-api.md §9.3).
_ILLEGAL_IN_310 = re.compile(r'[\x00-\x1f\x7f\\<>:"|?*]')


@dataclass(frozen=True)
class Policy:
    """How a mapping may change its study."""

    delete: bool = True
    backup: bool = True
    max_delete: int = 500
    max_delete_percent: float = 50.0
    # The percentage limit only applies once the study holds this many files (rule 3).
    min_files_for_percent: int = 10
    allow_mass_delete: bool = False  # `sync --yes`
    prune: bool = False  # `sync --prune`: also delete server files never synced from here
    api_version: str = ""  # the server's apiVersion: decides which names it refuses


@dataclass(frozen=True)
class Folder:
    """What is known about the local folder beyond its files.

    `replaced`: its (device, inode) differs from the one synced before (an unmounted drive
    with a stray file, a folder restored elsewhere: docs/safety.md, rule 1). `folds_case`:
    the server was seen to ignore letter case in names (docs/jatos-api.md §9.4).
    """

    replaced: bool = False
    folds_case: bool = False


@dataclass(frozen=True)
class Plan:
    """What a pass will do.

    Order of execution: `backups`; `deletes_first` (server files in the way of an upload:
    a file where the upload needs a folder, or files in a folder the upload replaces by a
    file); `uploads` in publish order (other files first, HTML last); then `deletes`.
    `case_renames` ⊆ `deletes` are the old spellings of files uploaded in this pass under a
    name that differs only in letter case: they are deleted only once a listing shows both
    names side by side (on a server that ignores case, the upload replaced the old one).
    """

    uploads: tuple[RelPath, ...] = ()
    deletes: tuple[RelPath, ...] = ()
    deletes_first: tuple[RelPath, ...] = ()
    case_renames: tuple[RelPath, ...] = ()
    withheld: tuple[RelPath, ...] = ()
    withheld_reason: str = ""
    backups: tuple[RelPath, ...] = ()
    skipped: tuple[PathProblem, ...] = ()
    unchanged: tuple[RelPath, ...] = ()
    server_only: tuple[RelPath, ...] = ()  # on the server, never synced from here: kept
    foreign_overwrites: tuple[RelPath, ...] = ()  # uploads over content never synced here
    expected: Mapping[RelPath, FileInfo] = field(default_factory=dict)  # what uploads send
    server: Mapping[RelPath, FileInfo] = field(default_factory=dict)  # backed-up copies

    @property
    def is_noop(self) -> bool:
        return not (self.uploads or self.deletes or self.deletes_first)

    @property
    def all_deletes(self) -> tuple[RelPath, ...]:
        return self.deletes_first + self.deletes


def skip_reason(path: RelPath, info: FileInfo, *, api_version: str) -> str | None:
    """Why a local file cannot be synced by design, or None if it can."""
    if info.size == 0:
        # Play 2.7, which JATOS uses, turns an empty file part into "File missing"
        # (docs/jatos-api.md §5.1).
        return "empty file: JATOS refuses to store 0-byte files"
    if path == "jatos.js":
        return "a top-level jatos.js is never served: JATOS serves its own jatos.js there"
    if "\\" in path and api_version != API_VERSION_310:
        # Never trusted in a listing (docs/safety.md, rule 10), so it could never be seen
        # to arrive: a folder separator on Windows, refused by 3.10 anyway.
        return "a backslash in a name is a folder separator on Windows; rename the file"
    if api_version == API_VERSION_310:
        if _ILLEGAL_IN_310.search(path):
            return 'JATOS 3.10 refuses names with control characters or any of \\ < > : " | ? *'
        if path != path.strip(" "):
            # 3.10 trims the decoded upload path (docs/jatos-api.md §9.3): " a" would be
            # stored as "a".
            return "JATOS 3.10 removes spaces at the start and end of a path; rename it"
    return None


def at_or_below(paths: Collection[RelPath], candidates: Iterable[RelPath]) -> list[RelPath]:
    """The candidates that are one of `paths` or lie inside one of them, in one pass (a
    branch switch marks thousands of paths dirty; comparing each with each is too slow)."""
    wanted = set(paths)
    if not wanted:
        return []
    if "." in wanted:
        return list(candidates)
    tops = {w.partition("/")[0] for w in wanted}  # most candidates fail this cheap test
    return [
        p
        for p in candidates
        if p in wanted or (p.partition("/")[0] in tops and not wanted.isdisjoint(_heads(p)))
    ]


def _heads(path: str) -> Iterator[str]:
    """The folders `path` lies in, innermost first, as plain text ("a/b/c": "a/b", "a"):
    what `RelPath.parents` says without the folder itself, for loops over every file."""
    end = len(path)
    while (end := path.rfind("/", 0, end)) > 0:
        yield path[:end]


def server_view(
    remote: Mapping[RelPath, FileInfo], local: Collection[RelPath], *, folds_case: bool
) -> Mapping[RelPath, FileInfo]:
    """The server's files, named as the local folder names them where the server ignores
    letter case: there `Img/a.png` and `img/a.png` are one file (docs/jatos-api.md §9.4)."""
    if not folds_case:
        return remote
    by_fold = {p.casefold(): p for p in local}
    view: dict[RelPath, FileInfo] = {}
    for path, info in remote.items():
        mine = by_fold.get(path.casefold(), path)
        view[mine if mine not in remote or mine == path else path] = info
    return view


def make_plan(
    local: LocalSnapshot,
    remote: RemoteSnapshot,
    synced: Mapping[RelPath, FileInfo],
    policy: Policy,
    *,
    ignored: Callable[[RelPath], bool],
    hold: Collection[RelPath] = (),
    folder: Folder = Folder(),
) -> Plan:
    """Compare snapshots and decide, under `policy`, what this pass does.

    `hold` names files that are missing locally but must not be deleted yet (the daemon's
    deletion delay: a rebuild or a branch switch may bring them back in a moment).
    """
    server = server_view(remote.files, local.files, folds_case=folder.folds_case)
    uploads: list[RelPath] = []
    unchanged: list[RelPath] = []
    skipped: list[PathProblem] = []
    expected: dict[RelPath, FileInfo] = {}

    first_by_case: dict[str, RelPath] = {}
    for path in sorted(local.files):
        info = local.files[path].info
        reason = skip_reason(path, info, api_version=policy.api_version)
        twin = first_by_case.setdefault(path.casefold(), path)
        if twin != path and not reason:
            # JATOS does no case folding (docs/jatos-api.md §9.4): on a server whose disk
            # ignores letter case (Windows, macOS) both names would be one file, overwritten
            # on every pass.
            reason = (
                f"differs from {twin} only in letter case; a JATOS on Windows or macOS would "
                "store both as one file - rename one of them"
            )
        if reason:
            skipped.append(PathProblem(path, reason))
        elif server.get(path) == info and not _differs_from_upload(synced.get(path), info):
            unchanged.append(path)
        else:
            uploads.append(path)
            expected[path] = info

    # A path that cannot be read or synced protects its server copy, and a folder that
    # cannot be read or synced protects everything below it (docs/safety.md, rule 4).
    protected = {p.path for p in (*local.errors, *local.unsyncable)}
    present = set(local.files) | set(hold)
    protected_remote = set(at_or_below(protected, server)) if protected else set()
    candidates: list[RelPath] = []
    server_only: list[RelPath] = []
    for path in sorted(server):
        if path in present or path in protected_remote or ignored(path):
            continue
        if path not in synced:
            server_only.append(path)  # never synced from here: kept (rule 5)
            if not policy.prune:
                continue
        candidates.append(path)
    if not policy.delete:
        candidates = []

    reason = _deletion_guard(local, server, synced, candidates, policy, folder)
    deletes, withheld = ([], candidates) if reason else (candidates, [])

    uploads, deletes_first, blocked = _order_around_obstacles(uploads, deletes, withheld, server)
    skipped.extend(blocked)
    for problem in blocked:
        expected.pop(problem.path, None)
    first = set(deletes_first)
    deletes = [p for p in deletes if p not in first]
    uploading = {p.casefold(): p for p in uploads}
    case_renames = [p for p in deletes if uploading.get(p.casefold(), p) != p]

    def needs_backup(path: RelPath) -> bool:
        # Server content that this tool did not put there (changed by a colleague or in the
        # GUI since our last sync, or never synced by us) is saved before it is replaced.
        return policy.backup and path in server and synced.get(path) != server[path]

    backups = [p for p in (*uploads, *deletes_first, *deletes) if needs_backup(p)]
    foreign = [p for p in uploads if p in server and p not in synced]
    return Plan(
        uploads=tuple(sorted(uploads, key=is_html)),  # stable: sorted within each group
        deletes=tuple(deletes),
        deletes_first=tuple(deletes_first),
        case_renames=tuple(case_renames),
        withheld=tuple(withheld),
        withheld_reason=reason if withheld else "",
        backups=tuple(backups),
        skipped=tuple(skipped) + local.unsyncable + remote.refused,
        unchanged=tuple(unchanged),
        server_only=tuple(p for p in server_only if not (policy.prune and p in deletes)),
        foreign_overwrites=tuple(foreign),
        expected=expected,
        server={p: server[p] for p in backups},
    )


def _differs_from_upload(uploaded: FileInfo | None, local: FileInfo) -> bool:
    """Whether `local` has the size and Adler-32 of what this tool uploaded but other bytes.

    JATOS can only tell size and Adler-32 (docs/jatos-api.md §3.3); the digests recorded for
    our own uploads tell the rest (docs/safety.md, rule 12). Unknown digests decide nothing.
    """
    return (
        uploaded is not None
        and uploaded == local
        and bool(uploaded.digest)
        and bool(local.digest)
        and uploaded.digest != local.digest
    )


def _order_around_obstacles(
    uploads: list[RelPath],
    deletes: list[RelPath],
    withheld: list[RelPath],
    server: Mapping[RelPath, FileInfo],
) -> tuple[list[RelPath], list[RelPath], list[PathProblem]]:
    """(uploads, deletions to run before them, uploads that cannot work).

    A file replaced by a folder of the same name (or the reverse) leaves a server file in
    the way of the upload: JATOS cannot store `a/x` while `a` is a file, nor `a` while `a/`
    holds files (docs/jatos-api.md §5.3). Such a deletion goes first; if it is withheld or
    not ours to make, the upload is skipped with the reason instead of failing on every
    pass.
    """
    if not uploads:
        return [], [], []
    targets = set(uploads)
    folders: dict[str, list[RelPath]] = {}  # an upload → the server files below it
    for path in at_or_below(targets, server):
        for head in _heads(path):
            if head in targets:
                folders.setdefault(head, []).append(path)
    deleting = set(deletes)
    first: dict[RelPath, None] = {}
    kept: list[RelPath] = []
    blocked: list[PathProblem] = []
    for path in uploads:
        obstacles = [p for p in path.parents if p in server]
        obstacles += folders.get(path, [])
        stuck = [p for p in obstacles if p not in deleting]
        if not stuck:
            first.update(dict.fromkeys(obstacles))
            kept.append(path)
            continue
        why = (
            "its deletion is withheld (see above)"
            if stuck[0] in withheld
            else "it was not synced from this folder, so it is kept; delete it in the JATOS "
            "GUI, or run `jatos-sync sync --prune`"
        )
        blocked.append(
            PathProblem(path, f"the server's {stuck[0]} is in the way of this file, and {why}")
        )
    return kept, sorted(first), blocked


def _deletion_guard(
    local: LocalSnapshot,
    server: Mapping[RelPath, FileInfo],
    synced: Mapping[RelPath, FileInfo],
    candidates: list[RelPath],
    policy: Policy,
    folder: Folder,
) -> str:
    """The reason to withhold this pass's deletions, or "" to let them happen (rules 1-4)."""
    count = len(candidates)
    if count == 0:
        return ""
    if local.errors:
        return (
            f"the local scan hit {len(local.errors)} error(s), so no file is deleted in this "
            "pass; fix the errors listed under 'failed' and sync again"
        )
    if not local.files and not local.unsyncable:
        return (
            "the folder has no syncable files while the study has some; this looks like a "
            "missing or unmounted folder, so nothing is deleted (delete the files in the "
            "JATOS GUI if you really want an empty study)"
        )
    if policy.allow_mass_delete:
        return ""
    if folder.replaced:
        return (
            "the folder is not the one synced before (another disk or a new folder at the "
            "same place: an unmounted drive?), so nothing is deleted; if this is the right "
            "folder, run `jatos-sync sync --yes` once"
        )
    before = [p for p in synced if p in server]
    left = sum(1 for p in before if p in local.files)
    if len(before) >= 2 and left * 10 < len(before):
        return (
            f"only {left} of the {len(before)} files synced from this folder before are still "
            "there; this looks like a wrong or emptied folder, so nothing is deleted; run "
            "`jatos-sync sync --yes` if that is intended"
        )
    total = len(server)
    if count > policy.max_delete:
        return (
            f"this pass would delete {count} files, more than max_delete ({policy.max_delete});"
            " run `jatos-sync sync --yes` if that is intended"
        )
    if total >= policy.min_files_for_percent and count * 100 > total * policy.max_delete_percent:
        return (
            f"this pass would delete {count} of the study's {total} files, more than "
            f"max_delete_percent ({policy.max_delete_percent:g}%); run `jatos-sync sync --yes` "
            "if that is intended"
        )
    return ""


def next_synced(
    previous: Mapping[RelPath, FileInfo],
    remote: Mapping[RelPath, FileInfo],
    plan: Plan,
    local: LocalSnapshot,
    *,
    uploaded: Mapping[RelPath, FileInfo],
    deleted: Collection[RelPath],
) -> dict[RelPath, FileInfo]:
    """What this tool knows it put on the server after a pass, per path.

    Files found identical on both sides are adopted as the scan found them (the local file
    is a FileInfo with its digest, and the server holds the same size and Adler-32);
    uploads record the bytes actually sent; deleted files are forgotten; entries for files
    no longer on the server are dropped, and the rest keep their old value so a colleague's
    later change is still recognised. `remote` is the server as the plan saw it
    (`server_view`). The keys are `remote`'s, which a pass shares with its scan.
    """
    result = {p: previous[p] for p in remote if p in previous}
    for path in plan.unchanged:
        result[path] = local.files[path]
    result.update(uploaded)
    for path in deleted:
        result.pop(path, None)
    return result
