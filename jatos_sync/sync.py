"""One reconcile pass for a mapping: scan, list, plan, apply, remember. Shared by the
one-shot commands (`sync`, `status`) and the daemon.

It owns the order of the steps and the per-mapping result (README, "JSON output"). It must not
parse HTTP (client.py), decide what to change (plan.py) or talk to the user (the cli package).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from jatos_sync.apply import Outcome, ProgressSink, Target, apply_plan
from jatos_sync.client import JatosClient
from jatos_sync.config import MappingConfig
from jatos_sync.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SAFETY,
    ConfigError,
    InternalError,
    JatosSyncError,
    RemoteFileMissingError,
    SafetyStop,
)
from jatos_sync.ignore import IGNORE_FILE_NAME, IgnoreRules
from jatos_sync.links import LinkMap
from jatos_sync.model import LocalSnapshot, PathProblem, RelPath, RemoteSnapshot
from jatos_sync.plan import (
    Folder,
    Plan,
    Policy,
    at_or_below,
    make_plan,
    next_synced,
    server_view,
    skip_reason,
)
from jatos_sync.scan import check_folder, scan_folder
from jatos_sync.state import MappingState, StateStore, StateWriteError, mapping_key

if TYPE_CHECKING:
    from jatos_sync.definition import Change
    from jatos_sync.studies import StudyStep

log = structlog.get_logger("jatos_sync.sync")


@dataclass
class MappingResult:
    """What a pass did (or, for a dry run, would do) for one mapping."""

    name: str
    study: str
    folder: Path
    dry_run: bool = False
    uploaded: list[RelPath] = field(default_factory=list)
    deleted: list[RelPath] = field(default_factory=list)
    unchanged: int = 0
    withheld: list[RelPath] = field(default_factory=list)
    withheld_reason: str = ""
    skipped: list[PathProblem] = field(default_factory=list)
    failed: list[PathProblem] = field(default_factory=list)
    backed_up: list[RelPath] = field(default_factory=list)
    server_only: list[RelPath] = field(default_factory=list)  # never synced from here: kept
    replaces_unsynced: list[RelPath] = field(default_factory=list)  # uploads over such files
    definition: list[Change] = field(default_factory=list)  # the study's own changes
    definition_withheld: str = ""  # why component deletions wait for --yes
    error: JatosSyncError | None = None
    state_error: str | None = None  # the pass worked, but its record could not be saved

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if self.withheld_reason or self.definition_withheld:
            return EXIT_SAFETY
        if self.failed or self.withheld or self.state_error:
            return EXIT_PARTIAL
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": self.name,
            "study": self.study,
            "folder": str(self.folder),
            "uploaded": [str(p) for p in self.uploaded],
            "deleted": [str(p) for p in self.deleted],
            "unchanged": self.unchanged,
            "withheld": [str(p) for p in self.withheld],
            "skipped": [{"path": str(p.path), "reason": p.reason} for p in self.skipped],
            "failed": [{"path": str(p.path), "error": p.reason} for p in self.failed],
            "backed_up": [str(p) for p in self.backed_up],
            "server_only": [str(p) for p in self.server_only],
            "replaces_unsynced": [str(p) for p in self.replaces_unsynced],
            "definition": [c.to_json() for c in self.definition],
            "exit_code": self.exit_code,
        }
        if self.definition_withheld:
            result["definition_withheld"] = self.definition_withheld
        if self.withheld_reason:
            result["withheld_reason"] = self.withheld_reason
        if self.error is not None:
            result["error"] = str(self.error)
        if self.state_error is not None:
            result["state_error"] = self.state_error
        return result


# Asked before a first sync replaces server files that this folder never synced
# (docs/safety.md, rule 6): gets the paths, returns whether to go on. None: never go on.
Confirm = Callable[[str, list[RelPath]], bool]


def policy_for(
    mapping: MappingConfig, *, allow_mass_delete: bool, api_version: str, prune: bool = False
) -> Policy:
    return Policy(
        delete=mapping.delete,
        backup=mapping.backup,
        max_delete=mapping.max_delete,
        max_delete_percent=mapping.max_delete_percent,
        allow_mass_delete=allow_mass_delete,
        prune=prune,
        api_version=api_version,
    )


class MappingSync:
    """Keeps one mapping's study in step with its folder, pass after pass.

    A full pass lists the server (which reads every file to do so, docs/jatos-api.md §3.3) and
    scans the whole folder. Between full passes it remembers the server's files, updated
    with its own uploads and deletions, so a pass for a few changed paths (`quick_pass`,
    used by the daemon) re-reads only those paths and sends only the requests they need.
    """

    def __init__(
        self,
        mapping: MappingConfig,
        *,
        client: JatosClient,
        store: StateStore,
        concurrency: int = 4,
        verify_after_s: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mapping = mapping
        self.client = client
        self.store = store
        self.concurrency = concurrency
        self.key = mapping_key(client.base_url, mapping.study, mapping.folder)
        # A server file this tool has not seen for longer than this is downloaded before a
        # quick pass replaces or deletes it: a colleague may have changed it in the GUI.
        self.verify_after_s = verify_after_s
        self._clock = clock
        self._remote: RemoteSnapshot | None = None  # last listing + our own changes since
        self._listed_at = -math.inf
        self._seen_at: dict[RelPath, float] = {}  # our own uploads/deletions since the listing
        self._local: LocalSnapshot | None = None
        self._rules: IgnoreRules | None = None
        self._state: MappingState | None = None
        self._root: tuple[int, int] | None = None  # (device, inode) of the folder now

    def __repr__(self) -> str:
        return f"MappingSync({self.mapping.name!r})"

    @property
    def remote_known(self) -> bool:
        """Whether a quick pass can work from what the last full pass learnt (it falls back
        to a full pass otherwise)."""
        return self._remote is not None and self._local is not None and self._rules is not None

    @property
    def links(self) -> LinkMap | None:
        """Where the folder's links led at the last full pass (None before one)."""
        return self._local.links if self._local is not None else None

    def forget_remote(self) -> None:
        """Make the next pass a full one (after a server outage or an overflow)."""
        self._remote = None

    def full_pass(
        self,
        *,
        dry_run: bool = False,
        allow_mass_delete: bool = False,
        prune: bool = False,
        confirm: Confirm | None = None,
        stop: threading.Event | None = None,
        progress: ProgressSink | None = None,
        count_losses: bool = False,
    ) -> MappingResult:
        """List the server, scan the folder, and reconcile everything.

        A first sync (nothing synced from this folder yet) that would replace server files
        this folder never synced asks `confirm` first, unless `allow_mass_delete` (`--yes`):
        a wrong `study:` must not silently replace someone's experiment. `count_losses`: say
        how many results a withheld deletion of components would destroy (one request more;
        for a person reading the result, not for the daemon's every pass).
        """
        mapping = self.mapping
        result = MappingResult(mapping.name, mapping.study, mapping.folder, dry_run=dry_run)
        step: StudyStep | None = None
        try:
            check_folder(mapping.folder)
            self.store.ensure_outside(mapping.folder)
            self._root = _identity(mapping.folder)
            if mapping.create or mapping.definition is not None:
                from jatos_sync.studies import StudyStep  # only for the study as code

                # The study first: created if missing, its definition planned; a locked
                # study that would change stops the pass before anything changed.
                step = StudyStep(
                    mapping, self.client, allow_delete=allow_mass_delete, count_losses=count_losses
                )
                step.prepare(dry_run=dry_run, files=self._syncable_files)
            # JATOS reads every file to answer the listing (docs/jatos-api.md §3.3): scan
            # the local folder while it does, instead of one after the other.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jatos-sync-list") as pool:
                listing = pool.submit(self._list if step is None or step.exists else self._nothing)
                self._rules = IgnoreRules.for_folder(mapping.folder, mapping.ignore)
                # The daemon keeps its state in memory between passes: if the disk refused
                # the last save, what is on disk is older than what this process knows.
                self._state = self._state or self.store.load(self.key)
                local = scan_folder(
                    mapping.folder, self._rules, cache=self._state.cache, links=True
                )
                log.info(
                    "scan_done",
                    mapping=mapping.name,
                    files=len(local.files),
                    bytes_hashed=self._state.cache.bytes_read,
                    cache_hits=self._state.cache.hits,
                )
                remote = _shared(listing.result(), local)
            self._settle_in_doubt(remote)
            self._local, self._remote = local, remote
            self._listed_at, self._seen_at = self._clock(), {}
            plan = self._plan(allow_mass_delete=allow_mass_delete, prune=prune)
            if not (dry_run or allow_mass_delete):
                self._confirm_first_sync(plan, confirm)
            self._reconcile(result, plan, stop=stop, progress=progress)
            if step is not None:  # after the files: no component points at a missing page
                assert self._remote is not None
                result.failed += step.finish(dry_run=dry_run, server_files=self._remote.files)
                result.definition_withheld = step.withheld
        except JatosSyncError as exc:
            _record_error(result, exc)
        except Exception as exc:  # a bug must not end the command or the daemon's worker
            self._internal_error(result, exc)
        if step is not None:
            result.definition = step.changes
        return result

    def _settle_in_doubt(self, remote: RemoteSnapshot) -> None:
        """Uploads cut off by a lost connection, which the server did store after all (it
        lists the very size and Adler-32 sent), are recorded as synced: otherwise a first
        sync cut off by an outage would meet its own file as a stranger's when the server
        is back, and stop for confirmation (docs/safety.md, rule 6)."""
        state = self._state
        assert state is not None
        for path, sent in state.in_doubt.items():
            if path not in state.synced and remote.files.get(path) == sent:
                state.synced[path] = sent
        state.in_doubt = {}

    def _list(self) -> RemoteSnapshot:
        return self.client.list_assets(self.mapping.study)

    def _nothing(self) -> RemoteSnapshot:
        """What a study that a dry run would create holds: nothing yet."""
        return RemoteSnapshot(files={}, api_version=self.client.api_version or "")

    def _syncable_files(self) -> list[RelPath]:
        """The files a sync would upload now, for the archive that creates the study."""
        rules = IgnoreRules.for_folder(self.mapping.folder, self.mapping.ignore)
        self._state = self._state or self.store.load(self.key)
        local = scan_folder(self.mapping.folder, rules, cache=self._state.cache)
        api_version = self.client.api_version or ""
        return [
            path
            for path, info in local.files.items()
            if skip_reason(path, info.info, api_version=api_version) is None
        ]

    def _confirm_first_sync(self, plan: Plan, confirm: Confirm | None) -> None:
        state = self._state
        assert state is not None
        overwrites = list(plan.foreign_overwrites)
        if state.synced or not overwrites:
            return
        if confirm is not None and confirm(self.mapping.study, overwrites):
            return
        self._state = None  # read again next time: a `sync --yes` elsewhere may settle it
        shown = ", ".join(str(p) for p in overwrites[:5])
        more = f" and {len(overwrites) - 5} more" if len(overwrites) > 5 else ""
        raise SafetyStop(
            f"This is the first sync of {self.mapping.folder} into study "
            f"{self.mapping.study}, and the study already holds {len(overwrites)} file(s) "
            f"with other contents that were never synced from this folder ({shown}{more}); "
            "nothing was changed. If `study:` names the right study, run "
            "`jatos-sync sync --yes` to replace them (a copy of each is kept); otherwise fix "
            "`study:` in the configuration."
        )

    def quick_pass(
        self,
        dirty: Collection[RelPath],
        *,
        hold: Collection[RelPath] = (),
        stop: threading.Event | None = None,
    ) -> MappingResult:
        """Reconcile after changes to `dirty` paths, without listing the server.

        Paths in `hold` (files or whole directories) are missing locally but their deletion
        waits. Falls back to a full pass when the server's files are not known yet.
        """
        if self._remote is None or self._local is None or self._rules is None:
            return self.full_pass(stop=stop)  # `remote_known` is false
        mapping = self.mapping
        result = MappingResult(mapping.name, mapping.study, mapping.folder)
        try:
            check_folder(mapping.folder)
            self._local = self._refreshed(dirty)
            # A directory moved away holds every server file that was in it.
            held = set(at_or_below(hold, self._remote.files))
            plan = self._plan(hold=held)
            if mapping.backup and self._verify_stale(plan):
                plan = self._plan(hold=held)  # the server copies checked changed the picture
            self._reconcile(result, plan, stop=stop)
        except JatosSyncError as exc:
            _record_error(result, exc)
        except Exception as exc:  # a bug must not end the daemon's worker
            self._internal_error(result, exc)
        return result

    def _internal_error(self, result: MappingResult, exc: Exception) -> None:
        """An unexpected exception: the mapping's error (docs/safety.md, rule 13), with the
        traceback logged at debug level (-v). What this object remembers of the server may
        be half updated, so the next pass lists it again."""
        self.forget_remote()
        log.debug("internal_error", mapping=self.mapping.name, exc_info=exc)
        _record_error(result, InternalError.wrapping(exc))

    def _plan(
        self,
        *,
        hold: Collection[RelPath] = (),
        allow_mass_delete: bool = False,
        prune: bool = False,
    ) -> Plan:
        local, remote, state, rules = self._local, self._remote, self._state, self._rules
        assert local is not None and remote is not None and state is not None
        assert rules is not None
        policy = policy_for(
            self.mapping,
            allow_mass_delete=allow_mass_delete,
            api_version=remote.api_version,
            prune=prune,
        )
        folder = Folder(
            replaced=state.root is not None and self._root != state.root,
            folds_case=state.folds_case,
        )
        return make_plan(
            local, remote, state.synced, policy, ignored=rules, hold=hold, folder=folder
        )

    def _verify_stale(self, plan: Plan) -> bool:
        """Learn the real content of server files `plan` would replace or delete, where what
        we know of them is older than `verify_after_s` (docs/safety.md, rule 6: a
        colleague's version is saved before it is replaced; a new plan then sees it
        changed). Returns whether anything checked differed from what was known."""
        remote = self._remote
        assert remote is not None
        now = self._clock()
        files = dict(remote.files)
        for path in (*plan.uploads, *plan.all_deletes):
            seen = self._seen_at.get(path, self._listed_at)
            if path not in files or now - seen <= self.verify_after_s:
                continue
            try:
                with tempfile.TemporaryFile() as scratch:
                    files[path] = self.client.download(self.mapping.study, path, scratch)
            except RemoteFileMissingError:
                files.pop(path)  # deleted on the server meanwhile: nothing to save
            self._seen_at[path] = now
            log.debug("server_copy_checked", mapping=self.mapping.name, path=str(path))
        if files == remote.files:
            return False
        self._remote = RemoteSnapshot(files=files, api_version=remote.api_version)
        return True

    def _refreshed(self, dirty: Collection[RelPath]) -> LocalSnapshot:
        """The local snapshot with `dirty` paths (files or whole directories) re-read."""
        assert self._local is not None and self._rules is not None and self._state is not None
        folder, cache = self.mapping.folder, self._state.cache
        if any(p.name == IGNORE_FILE_NAME or p.suffix == ".psyexp" for p in dirty):
            # The ignore rules themselves changed: rebuild them and look at everything.
            self._rules = IgnoreRules.for_folder(folder, self.mapping.ignore)
            return scan_folder(folder, self._rules, cache=cache)
        files = dict(self._local.files)
        errors = {p.path: p for p in self._local.errors}
        unsyncable = {p.path: p for p in self._local.unsyncable}
        for entries in (files, errors, unsyncable):
            for known in at_or_below(dirty, list(entries)):
                del entries[known]
        for path in dirty:
            # Classified as the full walk would (scan.classify): a path that cannot be read
            # or synced any more is reported, never taken for gone.
            found = scan_folder(folder, self._rules, cache=cache, under=path)
            files.update(found.files)
            errors.update((p.path, p) for p in found.errors)
            unsyncable.update((p.path, p) for p in found.unsyncable)
        return LocalSnapshot(
            files=files, errors=tuple(errors.values()), unsyncable=tuple(unsyncable.values())
        )

    def _reconcile(
        self,
        result: MappingResult,
        plan: Plan,
        *,
        stop: threading.Event | None = None,
        progress: ProgressSink | None = None,
    ) -> None:
        local, remote, state = self._local, self._remote, self._state
        assert local is not None and remote is not None and state is not None
        result.unchanged = len(plan.unchanged)
        result.failed = [PathProblem(p.path, f"could not read: {p.reason}") for p in local.errors]
        result.withheld = list(plan.withheld)
        result.withheld_reason = plan.withheld_reason
        result.server_only = list(plan.server_only)
        result.replaces_unsynced = list(plan.foreign_overwrites)
        view = server_view(remote.files, local.files, folds_case=state.folds_case)
        if not plan.withheld_reason and self._root is not None:
            state.root = self._root  # this folder is now the one synced (rule 1)
        if plan.withheld_reason:
            log.warning(
                "deletions_withheld",
                mapping=self.mapping.name,
                count=len(plan.withheld),
                reason=plan.withheld_reason,
            )
        if result.dry_run:
            _describe_plan(result, plan)
            state.synced = next_synced(state.synced, view, plan, local, uploaded={}, deleted=())
            self._save_quietly(state)
            return
        outcome = apply_plan(
            plan,
            Target(
                client=self.client,
                study=self.mapping.study,
                folder=self.mapping.folder,
                backup_root=self.store.backup_dir(self.key),
                concurrency=self.concurrency,
            ),
            scanned=dict(local.files),
            api_version=remote.api_version,
            stop=stop,
            progress=progress,
        )
        _record_outcome(result, plan, outcome)
        gone = outcome.deleted | outcome.folded
        state.synced = next_synced(
            state.synced, view, plan, local, uploaded=outcome.uploaded, deleted=gone
        )
        if outcome.folded and not state.folds_case:
            state.folds_case = True
            log.warning(
                "server_ignores_case",
                mapping=self.mapping.name,
                hint="this JATOS stores names regardless of letter case (macOS or Windows); "
                "files that differ only in case are treated as one from now on",
            )
        files = dict(remote.files)
        files.update(outcome.uploaded)
        for path in gone:
            files.pop(path, None)
        now = self._clock()
        self._seen_at.update((path, now) for path in (*outcome.uploaded, *outcome.deleted))
        for path in (*outcome.uploaded, *outcome.deleted):
            state.in_doubt.pop(path, None)
        state.in_doubt.update(outcome.in_doubt)
        self._remote = RemoteSnapshot(files=files, api_version=remote.api_version)
        try:
            self.store.save(self.key, state)
        except StateWriteError as exc:
            # The server is in step; only our memory of it could not be written. Say so
            # and go on: the next successful save catches up.
            result.state_error = str(exc)
            log.warning("state_not_saved", mapping=self.mapping.name, error=str(exc))
        if outcome.fatal is not None:
            raise outcome.fatal

    def _save_quietly(self, state: MappingState) -> None:
        # A dry run only refreshes our own cache; failing to save it must not fail it.
        try:
            self.store.save(self.key, state)
        except StateWriteError as exc:
            log.debug("state_not_saved", mapping=self.mapping.name, error=str(exc))


def check_distinct_studies(mappings: Sequence[MappingConfig], client: JatosClient) -> None:
    """Refuse two mappings that name one study, one by ID and one by UUID (the configuration
    can only compare spellings). The server's study list tells each study's identity; a
    study the token cannot list is left to fail on its own. One request, and none for a
    single mapping."""
    if len(mappings) < 2:
        return
    identity: dict[str, int] = {}
    for study in client.list_studies():
        identity[str(study.id)] = identity[study.uuid.lower()] = study.id
    first: dict[int, MappingConfig] = {}
    for mapping in mappings:
        study_id = identity.get(mapping.study)
        if study_id is None:
            continue
        other = first.setdefault(study_id, mapping)
        if other is not mapping:
            raise ConfigError(
                f"The mappings {other.name!r} (study {other.study}) and {mapping.name!r} "
                f"(study {mapping.study}) name the same study on the server (ID {study_id}); "
                "two folders cannot share one study, or each would replace and delete the "
                "other's files. Remove one of the two mappings."
            )


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _shared(remote: RemoteSnapshot, local: LocalSnapshot) -> RemoteSnapshot:
    """The server's listing holding the scan's objects wherever the two agree: the scan's
    path, and its `LocalFile` (a `FileInfo`) for a file with the same size and Adler-32.

    A daemon keeps both between passes; for a folder already in step this keeps one
    object per file instead of two (the digest a `LocalFile` carries means nothing for the
    server's side, where only size and Adler-32 are compared).
    """
    listed, files = remote.files, {}
    for path, mine in local.files.items():
        info = listed.get(path)
        if info is not None:
            files[path] = mine if mine == info else info
    if len(files) != len(listed):
        for path, info in listed.items():
            files.setdefault(path, info)
    return dataclasses.replace(remote, files=files)


def run_pass(
    mapping: MappingConfig,
    *,
    client: JatosClient,
    store: StateStore,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    prune: bool = False,
    confirm: Confirm | None = None,
    concurrency: int = 4,
    stop: threading.Event | None = None,
    progress: ProgressSink | None = None,
) -> MappingResult:
    """One full reconcile pass for `mapping` (the one-shot commands)."""
    return MappingSync(mapping, client=client, store=store, concurrency=concurrency).full_pass(
        dry_run=dry_run,
        allow_mass_delete=allow_mass_delete,
        prune=prune,
        confirm=confirm,
        stop=stop,
        progress=progress,
        count_losses=True,
    )


def _record_error(result: MappingResult, exc: JatosSyncError) -> None:
    result.error = exc
    event = "mapping_stopped" if isinstance(exc, SafetyStop) else "mapping_failed"
    log.error(event, mapping=result.name, error=str(exc))


def _describe_plan(result: MappingResult, plan: Plan) -> None:
    result.uploaded = list(plan.uploads)
    result.deleted = list(plan.all_deletes)
    result.backed_up = list(plan.backups)
    result.skipped = list(plan.skipped)


def _record_outcome(result: MappingResult, plan: Plan, outcome: Outcome) -> None:
    result.uploaded = [p for p in plan.uploads if p in outcome.uploaded]
    result.deleted = sorted(outcome.deleted)
    result.backed_up = list(outcome.backed_up)
    result.skipped = list(plan.skipped) + outcome.skipped
    result.failed += outcome.failed
    result.withheld += outcome.not_deleted
