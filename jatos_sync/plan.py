"""The plan: what one pass uploads, deletes, withholds, backs up and skips. Pure functions.

`make_plan` compares the local snapshot with the server's listing (size + Adler-32, API
reference §2.2) and with what this tool last synced, under a `Policy`. It applies every
data-safety rule of PRODUCT.md §7 that can be decided from values alone. It does no I/O and
imports nothing that does: `--dry-run` prints its result, tests compare it with `==`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from jatos_sync.model import FileInfo, LocalSnapshot, PathProblem, RelPath, RemoteSnapshot, is_html

# JATOS 3.10.5 refuses relative paths that do not match ^[^\x00-\x1F\x7F\\<>:"|?*]+$ (§4.4).
_ILLEGAL_IN_310 = re.compile(r'[\x00-\x1f\x7f\\<>:"|?*]')
API_VERSION_310 = "1.1.0"


@dataclass(frozen=True)
class Policy:
    """How a mapping may change its study."""

    delete: bool = True
    backup: bool = True
    max_delete: int = 500
    max_delete_percent: float = 50.0
    # The percentage limit only applies once the study holds this many files (PRODUCT §7).
    min_files_for_percent: int = 10
    allow_mass_delete: bool = False  # `sync --yes`
    api_version: str = ""  # the server's apiVersion: decides which names it refuses


@dataclass(frozen=True)
class Plan:
    """What a pass will do. `uploads` is in publish order: other files first, HTML last."""

    uploads: tuple[RelPath, ...] = ()
    deletes: tuple[RelPath, ...] = ()
    withheld: tuple[RelPath, ...] = ()
    withheld_reason: str = ""
    backups: tuple[RelPath, ...] = ()
    skipped: tuple[PathProblem, ...] = ()
    unchanged: tuple[RelPath, ...] = ()
    expected: Mapping[RelPath, FileInfo] = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        return not (self.uploads or self.deletes)


def skip_reason(path: RelPath, info: FileInfo, *, api_version: str) -> str | None:
    """Why a local file cannot be synced by design, or None if it can."""
    if info.size == 0:
        # Play 2.7, which JATOS uses, turns an empty file part into "File missing" (§4.1).
        return "empty file: JATOS refuses to store 0-byte files"
    if str(path) == "jatos.js":
        return "a top-level jatos.js is never served: JATOS serves its own jatos.js there"
    if api_version == API_VERSION_310:
        if _ILLEGAL_IN_310.search(str(path)):
            return 'JATOS 3.10 refuses names with control characters or any of \\ < > : " | ? *'
        if str(path) != str(path).strip(" "):
            # 3.10 trims the decoded upload path (§4.2): " a" would be stored as "a".
            return "JATOS 3.10 removes spaces at the start and end of a path; rename it"
    return None


def make_plan(
    local: LocalSnapshot,
    remote: RemoteSnapshot,
    synced: Mapping[RelPath, FileInfo],
    policy: Policy,
    *,
    ignored: Callable[[RelPath], bool],
    hold: Collection[RelPath] = (),
) -> Plan:
    """Compare snapshots and decide, under `policy`, what this pass does.

    `hold` names files that are missing locally but must not be deleted yet (the daemon's
    deletion delay: a rebuild or a branch switch may bring them back in a moment).
    """
    uploads: list[RelPath] = []
    unchanged: list[RelPath] = []
    skipped: list[PathProblem] = []
    backups: list[RelPath] = []
    expected: dict[RelPath, FileInfo] = {}

    def needs_backup(path: RelPath) -> bool:
        # Server content that this tool did not put there (changed by a colleague or in the
        # GUI since our last sync, or never synced by us) is saved before it is replaced.
        return policy.backup and path in remote.files and synced.get(path) != remote.files[path]

    first_by_case: dict[str, RelPath] = {}
    for path in sorted(local.files, key=str):
        info = local.files[path].info
        reason = skip_reason(path, info, api_version=policy.api_version)
        twin = first_by_case.setdefault(str(path).casefold(), path)
        if twin != path and not reason:
            # JATOS does no case folding (§8.5): on a server whose disk ignores letter case
            # (Windows, macOS) both names would be one file, overwritten on every pass.
            reason = (
                f"differs from {twin} only in letter case; a JATOS on Windows or macOS would "
                "store both as one file - rename one of them"
            )
        if reason:
            skipped.append(PathProblem(path, reason))
        elif remote.files.get(path) == info:
            unchanged.append(path)
        else:
            uploads.append(path)
            expected[path] = info
            if needs_backup(path):
                backups.append(path)

    present_locally = set(local.files) | {p.path for p in local.unsyncable} | set(hold)
    candidates = sorted(
        (path for path in remote.files if path not in present_locally and not ignored(path)),
        key=str,
    )
    if not policy.delete:
        candidates = []

    reason = _deletion_guard(local, remote, len(candidates), policy)
    deletes, withheld = ([], candidates) if reason else (candidates, [])
    backups.extend(path for path in deletes if needs_backup(path))

    return Plan(
        uploads=tuple(sorted(uploads, key=is_html)),  # stable: sorted within each group
        deletes=tuple(deletes),
        withheld=tuple(withheld),
        withheld_reason=reason if withheld else "",
        backups=tuple(backups),
        skipped=tuple(skipped) + local.unsyncable,
        unchanged=tuple(unchanged),
        expected=expected,
    )


def _deletion_guard(
    local: LocalSnapshot, remote: RemoteSnapshot, count: int, policy: Policy
) -> str:
    """The reason to withhold this pass's deletions, or "" to let them happen (PRODUCT §7)."""
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
    total = len(remote.files)
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
    remote: RemoteSnapshot,
    plan: Plan,
    *,
    uploaded: Mapping[RelPath, FileInfo],
    deleted: set[RelPath] | frozenset[RelPath],
) -> dict[RelPath, FileInfo]:
    """What this tool knows it put on the server after a pass.

    Files found identical on both sides are adopted; uploads record the bytes actually sent;
    deleted files are forgotten; entries for files no longer on the server are dropped, and
    the rest keep their old value so a colleague's later change is still recognised.
    """
    result = {p: info for p, info in previous.items() if p in remote.files}
    for path in plan.unchanged:
        result[path] = remote.files[path]
    result.update(uploaded)
    for path in deleted:
        result.pop(path, None)
    return result
