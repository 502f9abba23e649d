"""One mapping's results pass: the I/O around the pure plan.

Owns `ResultsMirror` (lock the folder, ask for the metadata, identify the study, then carry
the plan out: remove the data of withdrawn runs, fetch zips, have zips.py verify and write
each result, save the record), its `ResultsOutcome`, the check that the results folder lies
outside every synced folder and the state folder (docs/safety.md, rule 9), and `run_results`
(the passes of the `results` command). Must not: send HTTP except through `JatosClient`,
write or delete outside the results folder, delete anything but the data and files of
withdrawn runs, or log result data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog
from msgspec.structs import replace

from jatos_sync.client import JatosClient
from jatos_sync.config import MappingConfig, ResultsConfig, results_folder_problem
from jatos_sync.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    FileSyncError,
    InternalError,
    JatosSyncError,
    SafetyStop,
    UnsafePathError,
)
from jatos_sync.model import PathProblem, RelPath
from jatos_sync.paths import contained
from jatos_sync.results.metadata import (
    Metadata,
    StudyResultMeta,
    component_ids,
    fetch_metadata,
    is_id,
    is_uuid,
    names_study,
    result_path,
    short_text,
)
from jatos_sync.results.plan import (
    STATUSES,
    Mirrored,
    Plan,
    Record,
    batches,
    merged,
    plan_pass,
    rows_for,
)
from jatos_sync.results.record import (
    CSV_NAME,
    METADATA_NAME,
    RECORD_NAME,
    counts,
    csv_text,
    encode_record,
    load_record,
)
from jatos_sync.results.zips import (
    Unverified,
    remove_empty,
    write_result,
    zip_reason,
)
from jatos_sync.state import make_private_dirs, write_private

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = structlog.get_logger("jatos_sync.results")

_DOWNLOAD_PREFIX = ".jatos-sync-download-"
TRIES = 3  # a zip that fails its check is asked for again, at most this often in a pass


@dataclass
class ResultsOutcome:
    """What a results pass did for one mapping (`results --json`, the daemon's status)."""

    name: str
    study: str
    folder: Path
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    deleted_on_server: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: list[PathProblem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    requests: int = 0
    error: JatosSyncError | None = None

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return EXIT_PARTIAL if self.failed else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "study": self.study,
            "results_folder": str(self.folder),
            "new": self.new,
            "updated": self.updated,
            "withdrawn": self.withdrawn,
            "deleted_on_server": self.deleted_on_server,
            "unchanged": self.unchanged,
            "failed": [{"path": str(p.path), "error": p.reason} for p in self.failed],
            "counts": self.counts,
            "exit_code": self.exit_code,
        }
        if self.error is not None:
            document["error"] = str(self.error)
        return document


class ResultsBusyError(SafetyStop):
    """Another jatos-sync process is writing into the same results folder."""


class ResultsStopped(JatosSyncError):
    """The pass was asked to stop (the daemon is stopping); what it wrote is whole."""


@contextlib.contextmanager
def folder_lock(root: Path) -> Iterator[None]:
    """Hold `root`'s lock, one writer per results folder (a `results` run beside a daemon):
    an exclusive `flock` on the folder itself, so nothing is written for it and the kernel
    drops it however the process ends."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ResultsBusyError(
                f"Another jatos-sync is writing into the results folder {root} right now "
                "(a `watch` daemon, or another `jatos-sync results`); nothing was changed. "
                "Try again when it is done."
            ) from None
        yield
    finally:
        os.close(fd)


class ResultsMirror:
    """One mapping's results folder, brought up to date by `run()` (one pass)."""

    def __init__(
        self,
        mapping: MappingConfig,
        *,
        client: JatosClient,
        synced: Sequence[tuple[str, Path]] = (),
        state_root: Path,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        if mapping.results is None:
            raise ValueError(f"mapping {mapping.name!r} has no results: section")
        self.mapping = mapping
        self.settings: ResultsConfig = mapping.results
        self.root = mapping.results.folder
        self.client = client
        self._synced = tuple(synced) or ((mapping.name, mapping.folder),)
        self._state_root = state_root
        self._clock = clock
        self._stop = stop or threading.Event()  # set: end the pass soon, nothing half-written

    def __repr__(self) -> str:
        return f"ResultsMirror({self.mapping.name!r}, {str(self.root)!r})"

    def run(self) -> ResultsOutcome:
        """One pass; every failure ends up in the outcome (`error` or `failed`)."""
        outcome = ResultsOutcome(self.mapping.name, self.mapping.study, self.root)
        started = self._clock()
        try:
            # Checked when the configuration was read; a link changed since (the daemon runs
            # for weeks) is caught here (docs/safety.md, rule 9).
            if problem := results_folder_problem(self.root, self._synced, self._state_root):
                raise ConfigError(f"{self.settings.where}: {problem}; nothing was written")
            try:
                make_private_dirs(self.root)
            except OSError as exc:
                raise FileSyncError(
                    f"Cannot create the results folder {self.root} ({exc.strerror or exc}); "
                    f"check {self.settings.where}."
                ) from exc
            with folder_lock(self.root):
                self._pass(outcome)
        except ResultsStopped as exc:
            outcome.error = exc
            log.info("results_stopped", mapping=self.mapping.name)
        except JatosSyncError as exc:
            outcome.error = exc
            log.error("results_failed", mapping=self.mapping.name, error=str(exc))
        except OSError as exc:
            outcome.error = FileSyncError(
                f"The results folder {self.root} cannot be written ({exc.strerror or exc})."
            )
            log.error("results_failed", mapping=self.mapping.name, error=str(outcome.error))
        except Exception as exc:  # a bug: one message, never a silent stop (rule 13)
            outcome.error = InternalError.wrapping(exc)
            log.error("results_failed", mapping=self.mapping.name, error=str(outcome.error))
            log.debug("internal_error", mapping=self.mapping.name, exc_info=exc)
        (log.info if outcome.new or outcome.updated or outcome.withdrawn else log.debug)(
            "results_pass_done",
            mapping=self.mapping.name,
            new=len(outcome.new),
            updated=len(outcome.updated),
            withdrawn=len(outcome.withdrawn),
            deleted_on_server=len(outcome.deleted_on_server),
            unchanged=outcome.unchanged,
            failed=len(outcome.failed),
            requests=outcome.requests,
            elapsed_s=round(self._clock() - started, 3),
        )
        return outcome

    # ------------------------------------------------------------------ the pass

    def _pass(self, outcome: ResultsOutcome) -> None:
        record, why = load_record(self.root)
        if why is not None:
            log.warning(
                "results_record_rebuilt",
                mapping=self.mapping.name,
                reason=why,
                hint="every result on the server is fetched again",
            )
        before = (record.study_id, record.study_uuid, dict(record.titles))
        previous = dict(record.results)
        metadata = self._metadata(record, outcome)
        self._identify(record, metadata, outcome)
        plan = plan_pass(metadata, record, files=self.settings.files)
        outcome.failed += metadata.problems
        outcome.new += plan.new
        outcome.updated += plan.updated
        outcome.deleted_on_server += plan.deleted_on_server
        outcome.unchanged = plan.unchanged
        record.results = dict(plan.record)
        try:
            self._withdraw(plan, previous, record, outcome)
            self._fetch(plan.fetch, record, outcome)
        finally:
            after = (record.study_id, record.study_uuid, record.titles)
            changed = after != before or record.results != previous
            self._save(record, metadata, changed=changed)
            outcome.counts = counts(record)

    def _matches(self, record: Record) -> bool:
        """Whether the record's study is the one the mapping names (by ID or by UUID)."""
        return names_study(self.mapping.study, record.study_id, record.study_uuid)

    def _metadata(self, record: Record, outcome: ResultsOutcome) -> Metadata:
        """The study's metadata (docs/jatos-api.md §14.2): one request, selected by the
        study's ID once it is known (by the UUID the mapping names until then). Unlike the
        zips it fails properly (403, 404, 500)."""
        study = self.mapping.study
        if record.study_id and self._matches(record):
            study = str(record.study_id)
        outcome.requests += 1
        what = f"the results metadata of study {self.mapping.study}"
        return fetch_metadata(self.client, study, what=what)

    def _identify(self, record: Record, metadata: Metadata, outcome: ResultsOutcome) -> None:
        """The folder holds the results of one study, known by its UUID. The study's
        properties are asked for (one more request) only on a first pass, when the
        configured study changed, when results of a component not seen before arrive (the
        CSV names components; the metadata only numbers them), or when the server lists no
        results while the folder holds some (the study may be gone or another one now). A
        folder that holds another study's results is refused."""
        if record.study_uuid and metadata.study_uuid and metadata.study_uuid != record.study_uuid:
            raise self._other_study(record.study_uuid, metadata.study_uuid)
        wanted = component_ids(metadata) - record.titles.keys()
        # Who the study is: known from the record, or said by the metadata.
        known = (record.study_uuid and self._matches(record)) or (
            metadata.study_uuid
            and names_study(self.mapping.study, metadata.study_id, metadata.study_uuid)
        )
        # Once: the rows of results that were on the server become `deleted_on_server`.
        emptied = not metadata.results and any(
            row.status in ("final", "running") for e in record.results.values() for row in e.rows
        )
        if not known or emptied or wanted:
            study_id, uuid, titles = self._properties(outcome)
            if record.study_uuid and uuid and uuid != record.study_uuid:
                raise self._other_study(record.study_uuid, uuid)
            record.titles.update(titles)
            record.titles.update({cid: "" for cid in wanted - titles.keys()})
            record.study_id = study_id or record.study_id
            record.study_uuid = uuid or record.study_uuid
        if metadata.study_uuid:
            record.study_id = metadata.study_id or record.study_id
            record.study_uuid = metadata.study_uuid

    def _other_study(self, mirrored: str, configured: str) -> ConfigError:
        return ConfigError(
            f"{self.settings.where}: the results folder {self.root} holds the results of "
            f"the study with UUID {mirrored}, but mapping {self.mapping.name!r} names the study "
            f"with UUID {configured}; nothing was changed. Give this mapping a results folder "
            "of its own."
        )

    def _properties(self, outcome: ResultsOutcome) -> tuple[int | None, str, dict[int, str]]:
        """The study's ID, UUID and component titles (`GET /studies/{id}/properties`)."""
        outcome.requests += 1
        params = {"withComponentProperties": "true"}
        data = self.client.study_properties(self.mapping.study, params=params)
        titles: dict[int, str] = {}
        listed = data.get("components")
        for component in listed if isinstance(listed, list) else []:
            if isinstance(component, dict) and is_id(component.get("id")):
                titles[component["id"]] = short_text(component.get("title"))
        study_id = data["id"] if is_id(data.get("id")) else None
        uuid = str(data["uuid"]).lower() if is_uuid(data.get("uuid")) else ""
        return study_id, uuid, titles

    # ------------------------------------------------------------------ withdrawals

    def _withdraw(
        self,
        plan: Plan,
        previous: Mapping[int, Mirrored],
        record: Record,
        outcome: ResultsOutcome,
    ) -> None:
        """An aborted run is a withdrawal: its data and files go here too
        (docs/jatos-api.md §14.7). When they cannot be removed, its rows stay as they were
        and it is tried again."""
        done = set(plan.withdrawn)
        for srid, crids in plan.withdraw:
            try:
                for crid in crids:
                    self._remove_local(srid, crid)
                remove_empty(self.root, RelPath(f"study_result_{srid}"))
            except (OSError, UnsafePathError) as exc:
                reason = f"could not remove the data of this withdrawn run: {exc}"
                outcome.failed.append(PathProblem(RelPath(f"study_result_{srid}"), reason))
                done -= {result_path(srid, c) for c in crids}
                if srid in previous:
                    record.results[srid] = replace(previous[srid], fingerprint="", final=False)
                else:
                    record.results.pop(srid, None)
        outcome.withdrawn += [p for p in plan.withdrawn if p in done]

    def _remove_local(self, srid: int, crid: int) -> None:
        base = RelPath(result_path(srid, crid))
        data = contained(self.root, base / "data.txt")
        with contextlib.suppress(FileNotFoundError):
            data.unlink()
        files = contained(self.root, base / "files")
        if files.is_symlink():
            files.unlink()
        elif files.is_dir():
            shutil.rmtree(files)
        remove_empty(self.root, base)

    # ------------------------------------------------------------------ downloads

    def _fetch(
        self, results: Sequence[StudyResultMeta], record: Record, outcome: ResultsOutcome
    ) -> None:
        if results:
            self._remove_leftovers()
        for group in batches(results, files=self.settings.files):
            self._check_stop()
            pending = list(group)
            reasons: dict[int, str] = {}
            for attempt in range(TRIES):
                if not pending:
                    break
                if attempt:
                    log.warning(
                        "results_zip_retry",
                        mapping=self.mapping.name,
                        results=len(pending),
                        attempt=attempt + 1,
                    )
                reasons = self._fetch_group(pending, record, outcome)
                written = len(pending) - len(reasons)
                pending = [sr for sr in pending if sr.id in reasons]
                if written:  # an attempt that wrote nothing leaves the record as it was
                    self._save_record(record)
            for sr in pending:
                outcome.failed.append(
                    PathProblem(
                        RelPath(f"study_result_{sr.id}"),
                        f"not written: {reasons[sr.id]} (asked {TRIES} "
                        "times; tried again in the next pass)",
                    )
                )

    def _fetch_group(
        self, group: Sequence[StudyResultMeta], record: Record, outcome: ResultsOutcome
    ) -> dict[int, str]:
        """Download `group` as one zip and write each result that passes its check; the
        reasons of those that did not, by study result ID."""
        path = "/results" if self.settings.files else "/results/data"
        fd, name = tempfile.mkstemp(dir=self.root, prefix=_DOWNLOAD_PREFIX, suffix=".zip")
        try:
            with open(fd, "w+b") as stream:
                outcome.requests += 1
                download = self.client.api_download(
                    path,
                    stream,
                    method="POST",
                    json_body={"studyResultIds": [sr.id for sr in group]},
                    what=f"the results of study {self.mapping.study}",
                )
                if "html" in download.content_type:
                    reason = (
                        "the server answered with a web page instead of a zip (a proxy or a "
                        "sign-in page in front of JATOS?)"
                    )
                    return dict.fromkeys((sr.id for sr in group), reason)
                return self._unpack(stream, group, record, outcome)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def _unpack(
        self,
        stream: IO[bytes],
        group: Sequence[StudyResultMeta],
        record: Record,
        outcome: ResultsOutcome,
    ) -> dict[int, str]:
        stream.seek(0)
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            reason = f"the zip is damaged or cut short ({zip_reason(exc)})"
            return dict.fromkeys((sr.id for sr in group), reason)
        failed: dict[int, str] = {}
        with archive:
            for sr in group:
                try:
                    local = write_result(
                        archive,
                        sr,
                        root=self.root,
                        files=self.settings.files,
                        check_stop=self._check_stop,
                    )
                except Unverified as exc:
                    failed[sr.id] = str(exc)
                    continue
                self._written(sr, local, record, outcome)
        return failed

    def _written(
        self,
        sr: StudyResultMeta,
        local: Mapping[int, tuple[int, tuple[str, ...]]],
        record: Record,
        outcome: ResultsOutcome,
    ) -> None:
        old = record.results.get(sr.id)
        known = {row.component_result_id: row for row in old.rows} if old else {}
        rows = merged(old, rows_for(sr, record.titles, local=local))
        for row in rows:
            before = known.get(row.component_result_id)
            if before is None:
                outcome.new.append(row.path)
            elif row.status == "deleted_on_server" and before.status != row.status:
                outcome.deleted_on_server.append(row.path)
            elif row.status != "deleted_on_server":
                outcome.updated.append(row.path)
        record.results[sr.id] = Mirrored(sr.fingerprint, sr.final, self.settings.files, rows)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise ResultsStopped("The results pass was stopped; it goes on with the next one.")

    # ------------------------------------------------------------------ the folder's files

    def _remove_leftovers(self) -> None:
        """Temporary zips of a pass that was killed (their names are ours)."""
        with os.scandir(self.root) as entries:
            leftovers = [
                e.path
                for e in entries
                if e.name.startswith(_DOWNLOAD_PREFIX) and e.name.endswith(".zip")
            ]
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(leftover)

    def _save_record(self, record: Record) -> None:
        write_private(self.root / RECORD_NAME, encode_record(record))

    def _save(self, record: Record, metadata: Metadata, *, changed: bool) -> None:
        """metadata.json when the server's metadata changed, results.csv and the record
        when a row did: a pass with nothing new writes nothing."""
        digest = hashlib.sha256(metadata.document).hexdigest()
        if digest != record.metadata_sha256 or not (self.root / METADATA_NAME).exists():
            write_private(self.root / METADATA_NAME, metadata.document)
            record.metadata_sha256 = digest
            changed = True
        if changed or not (self.root / CSV_NAME).exists():
            rows = [row for entry in record.results.values() for row in entry.rows]
            write_private(self.root / CSV_NAME, csv_text(rows).encode("utf-8"))
            self._save_record(record)


def run_results(
    mappings: Sequence[MappingConfig],
    *,
    client: JatosClient,
    synced: Sequence[tuple[str, Path]],
    state_root: Path,
) -> list[ResultsOutcome]:
    """One results pass for each mapping with `results:` (the `results` command)."""
    return [
        ResultsMirror(m, client=client, synced=synced, state_root=state_root).run()
        for m in mappings
        if m.results is not None
    ]
