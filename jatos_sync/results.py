"""The results mirror: a study's participant results in a local folder, laid out as JATOS
exports them (docs/jatos-api.md §14).

Owns one mapping's `results:` folder and everything in it: `study_result_<srid>/
comp-result_<crid>/data.txt` and `files/<name>`, `metadata.json` (the server's metadata of
the study as last fetched), `results.csv` (one row per component result) and the record of
what was mirrored (`.jatos-sync-results.json`, next to the data it describes). A pass asks
for the study's metadata (one request), decides what to fetch (`plan_pass`, pure: tested
with `==`), fetches those study results as zips streamed to a temporary file in the folder
(never held in memory), verifies every zip against the metadata (entries present, CRCs,
plausible sizes; docs/jatos-api.md §15.2 items 12-16), writes each verified result
atomically (temporary file in the target folder, fsync, rename; folders 0700, files 0600),
removes the data of withdrawn runs (an abort purges them on the server,
docs/jatos-api.md §14.7) and keeps results deleted on the server.

Everything from the server is untrusted (docs/safety.md, rule 10): IDs must be positive
whole numbers, file names pass `paths.server_path` and every local path is proven inside
the folder with `paths.contained`; zip entries are looked up by the names the metadata
implies, never extracted by their own names. The record is a hint: a damaged one is rebuilt
(everything on the server is fetched again), never trusted, never fatal.

Must not: send HTTP except through `JatosClient`, write or delete outside the results
folder, delete anything but the data and files of withdrawn runs, or log result data.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import glob
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Annotated, Any, Literal, TypeGuard

import msgspec
import structlog
from msgspec.structs import replace

from jatos_sync.client import JatosClient
from jatos_sync.config import MappingConfig, ResultsConfig
from jatos_sync.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    FileSyncError,
    InternalError,
    JatosSyncError,
    SafetyStop,
    UnsafePathError,
    UnsupportedServerError,
)
from jatos_sync.model import PathProblem, RelPath
from jatos_sync.paths import contained, is_inside, resolved, server_path
from jatos_sync.state import make_private_dirs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = structlog.get_logger("jatos_sync.results")

RECORD_NAME = ".jatos-sync-results.json"
CSV_NAME = "results.csv"
METADATA_NAME = "metadata.json"
_DOWNLOAD_PREFIX = ".jatos-sync-download-"
RECORD_VERSION = 1

# A study result is final once its run has ended (docs/jatos-api.md §14.7); only then is it
# never fetched again.
FINAL_STATES = frozenset({"FINISHED", "ABORTED", "FAIL"})
WITHDRAWN_STATE = "ABORTED"  # an abort purges the data and files of every component result

Status = Literal["final", "running", "withdrawn", "deleted_on_server"]
STATUSES: tuple[Status, ...] = ("final", "running", "withdrawn", "deleted_on_server")
CSV_COLUMNS = (
    "study_result_id",
    "component_result_id",
    "component_id",
    "component_title",
    "worker_id",
    "worker_type",
    "batch_id",
    "batch_title",
    "study_state",
    "component_state",
    "start_time",
    "end_time",
    "data_size",
    "files",
    "path",
    "status",
)

# How many study results one zip request asks for, and about how many bytes.
BATCH_RESULTS = 500
BATCH_BYTES = 256 * 1024**2
TRIES = 3  # a zip that fails its check is asked for again, at most this often in a pass
CHUNK_BYTES = 1 << 20
_RUNNING_SLACK_BYTES = 1 << 20  # a running result may grow between metadata and zip


# ============================================================================ values

PositiveId = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class ResultFile(msgspec.Struct, frozen=True, rename={"name": "filename"}):
    """A file a study uploaded to a component result, as the metadata lists it."""

    name: str  # one plain path element, checked with paths.server_path
    size: Count


class DataSize(msgspec.Struct, frozen=True):
    size: Count  # SQL LENGTH(data): bytes on MySQL, characters on H2 (docs/jatos-api.md §14.2)


# The values of the metadata below are declared with the metadata's own key names
# (`rename`), so that a well-formed answer decodes straight into them, checked by msgspec;
# `parse_metadata` reads anything else field by field.
class ComponentResultMeta(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "component_id": "componentId",
        "state": "componentState",
        "start_ms": "startDate",
        "end_ms": "endDate",
    },
):
    id: PositiveId
    component_id: PositiveId | None = None
    state: str = ""
    start_ms: Count | None = None
    end_ms: Count | None = None
    data: DataSize
    files: tuple[ResultFile, ...] = ()

    @property
    def data_size(self) -> int:
        return self.data.size


class StudyResultMeta(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "state": "studyState",
        "start_ms": "startDate",
        "end_ms": "endDate",
        "last_seen_ms": "lastSeenDate",
        "worker_id": "workerId",
        "worker_type": "workerType",
        "batch_id": "batchId",
        "batch_title": "batchTitle",
        "components": "componentResults",
    },
):
    """One study result (a participant's run) from the metadata, parsed and checked."""

    id: PositiveId
    state: str = ""
    start_ms: Count | None = None
    end_ms: Count | None = None
    last_seen_ms: Count | None = None
    worker_id: int | str | None = None  # a number, or text on some versions
    worker_type: str = ""
    batch_id: PositiveId | None = None
    batch_title: str | None = None
    components: tuple[ComponentResultMeta, ...] = ()

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def withdrawn(self) -> bool:
        return self.state == WITHDRAWN_STATE

    @property
    def fingerprint(self) -> str:
        """What tells a changed result: states, ends, sizes, files, and `lastSeenDate` (a
        running participant's requests move it, so a live run is fetched again on each
        pass while an abandoned one is not fetched for ever)."""
        shape = (self.state, self.end_ms, self.last_seen_ms, self.components)
        return hashlib.sha256(msgspec.json.encode(shape)).hexdigest()[:32]

    def has_content(self, *, files: bool) -> bool:
        return any(c.data_size > 0 or (files and c.files) for c in self.components)

    def expected_bytes(self, *, files: bool) -> int:
        return sum(
            4 * c.data_size + (sum(f.size for f in c.files) if files else 0)
            for c in self.components
        )


@dataclass(frozen=True)
class Metadata:
    """The study's part of a metadata answer: its identity and its results, by ID, and
    what metadata.json gets (the server's own JSON, only this study's part of it)."""

    study_id: int | None
    study_uuid: str
    results: tuple[StudyResultMeta, ...]
    problems: tuple[PathProblem, ...] = ()
    document: bytes = b""


class Row(msgspec.Struct, frozen=True, kw_only=True, array_like=True, forbid_unknown_fields=True):
    """One component result as mirrored: a row of results.csv (kept in the record as an
    array, in the order of these fields)."""

    study_result_id: PositiveId
    component_result_id: PositiveId
    component_id: PositiveId | None
    component_title: str
    worker_id: str
    worker_type: str
    batch_id: PositiveId | None
    batch_title: str
    study_state: str
    component_state: str
    start_ms: Count | None
    end_ms: Count | None
    data_size: Count  # bytes of the local data.txt (0: none)
    files: tuple[str, ...]  # the local result files
    status: Status

    @property
    def path(self) -> str:
        return result_path(self.study_result_id, self.component_result_id)

    @property
    def has_local_data(self) -> bool:
        return self.data_size > 0 or bool(self.files)


class Mirrored(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One study result as last mirrored: the fingerprint of the metadata it was fetched
    (or found empty) for, whether it was final then (never fetched again), whether its
    files were wanted, and its rows (component results, including ones since deleted)."""

    fingerprint: str
    final: bool
    with_files: bool
    rows: tuple[Row, ...]


class Record(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the results folder holds, per study result; kept in the folder itself."""

    version: int = RECORD_VERSION
    study_id: PositiveId | None = None
    study_uuid: str = ""
    titles: dict[PositiveId, str] = msgspec.field(default_factory=dict)  # component -> title
    metadata_sha256: str = ""
    results: dict[PositiveId, Mirrored] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What a pass does, decided from the metadata and the record alone.

    `record` holds every study result's entry as it stands if no download succeeds;
    a fetched result's entry is replaced once its zip is verified and written.
    """

    fetch: tuple[StudyResultMeta, ...] = ()
    withdraw: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (srid, crids) whose data goes
    record: Mapping[int, Mirrored] = field(default_factory=dict)
    new: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()
    deleted_on_server: tuple[str, ...] = ()
    unchanged: int = 0


def result_path(srid: int, crid: int) -> str:
    """A component result's folder below the results folder, as JATOS names it
    (docs/jatos-api.md §14.3)."""
    return f"study_result_{srid}/comp-result_{crid}"


# ============================================================================ the metadata


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _millis(value: object) -> int | None:
    return value if _is_count(value) else None


def _text(value: object, limit: int = 500) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (str, int)):
        text = str(value)[:limit]
        return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)
    return ""


# The shape of a metadata answer (docs/jatos-api.md §14.2), as far as the mirror reads it.
# Values are checked one by one below (their types differ by version); only the nesting is
# fixed here.
class _FileIn(msgspec.Struct):
    filename: Any = None
    size: Any = None


class _DataIn(msgspec.Struct):
    size: Any = None


class _ComponentIn(msgspec.Struct, rename="camel"):
    id: Any = None
    component_id: Any = None
    component_state: Any = None
    start_date: Any = None
    end_date: Any = None
    data: _DataIn | None = None
    files: list[_FileIn] | None = None


class _ResultIn(msgspec.Struct, rename="camel"):
    id: Any = None
    study_state: Any = None
    start_date: Any = None
    end_date: Any = None
    last_seen_date: Any = None
    worker_id: Any = None
    worker_type: Any = None
    batch_id: Any = None
    batch_title: Any = None
    component_results: list[_ComponentIn] | None = None


class _StudyIn(msgspec.Struct, rename="camel"):
    study_id: Any = None
    study_uuid: Any = None
    study_results: list[_ResultIn] | None = None


class _AnswerIn(msgspec.Struct, rename="camel"):
    api_version: Any = None
    data: list[_StudyIn] | None = None


class _Refused(Exception):
    """A study result of the metadata that cannot be mirrored safely, and why."""


class _StudyFast(msgspec.Struct, rename="camel"):
    study_id: Any = None
    study_uuid: Any = None
    study_results: tuple[StudyResultMeta, ...] = ()


class _AnswerFast(msgspec.Struct):
    data: list[_StudyFast]


def parse_metadata(raw: bytes, *, study: str) -> Metadata:
    """The results of `study` (a numeric ID or a lower-case UUID) in a metadata answer
    (docs/jatos-api.md §14.2), checked where they enter: types differ by version
    (`groupId`), optional keys are left out, order is unspecified. A study result with a bad
    ID or size is left out and reported; a result file with an unsafe name is left out and
    reported.

    A well-formed answer is decoded and checked by msgspec in one go; one that is not is
    read again field by field, so that one odd entry costs only that entry."""
    try:
        fast = msgspec.json.decode(raw, type=_AnswerFast)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _parse_slowly(raw, study=study)
    entries = [e for e in fast.data if _is_study(e, study)]
    problems: list[PathProblem] = []
    found = [_checked(sr, problems) for e in entries for sr in e.study_results]
    return _metadata(raw, fast.data, entries, found, problems, study=study)


def _checked(sr: StudyResultMeta, problems: list[PathProblem]) -> StudyResultMeta:
    """`sr` with its component results in ID order and only safe result file names."""
    components = sr.components
    if len(components) > 1 and any(a.id >= b.id for a, b in itertools.pairwise(components)):
        components = tuple(sorted(components, key=lambda c: c.id))
    if any(c.files for c in components):
        components = tuple(_safe_files(c, sr.id, problems) for c in components)
    return sr if components is sr.components else replace(sr, components=components)


def _safe_files(
    cr: ComponentResultMeta, srid: int, problems: list[PathProblem]
) -> ComponentResultMeta:
    files: dict[str, ResultFile] = {}
    for item in cr.files:
        checked = _file(item.name, item.size, srid, cr.id, problems)
        if checked is not None:
            files[checked.name] = checked
    kept = tuple(files[k] for k in sorted(files))
    return cr if kept == cr.files else replace(cr, files=kept)


def _metadata(
    raw: bytes,
    listed: Sequence[Any],
    entries: Sequence[Any],
    found: Iterable[StudyResultMeta],
    problems: list[PathProblem],
    *,
    study: str,
) -> Metadata:
    """The Metadata of the study results `found` in `entries` (this study's part of the
    answer's `listed` studies); a study result or component result listed twice is left
    out."""
    results: dict[int, StudyResultMeta] = {}
    crids: set[int] = set()
    for sr in found:
        ids = {c.id for c in sr.components}
        if sr.id in results or not crids.isdisjoint(ids) or len(ids) < len(sr.components):
            problems.append(PathProblem(RelPath(f"study_result_{sr.id}"), "listed twice; left out"))
            continue
        crids |= ids
        results[sr.id] = sr
    for problem in problems:
        log.warning("results_entry_refused", path=str(problem.path), reason=problem.reason)
    return Metadata(
        study_id=next((e.study_id for e in entries if _is_id(e.study_id)), None),
        study_uuid=next((e.study_uuid.lower() for e in entries if _uuid(e.study_uuid)), ""),
        results=tuple(results[k] for k in sorted(results)),
        problems=tuple(problems),
        document=raw if len(entries) == len(listed) else _only(raw, study=study),
    )


def _parse_slowly(raw: bytes, *, study: str) -> Metadata:
    try:
        answer = msgspec.json.decode(raw, type=_AnswerIn)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _not_metadata(str(exc)) from None
    if answer.data is None:
        raise _not_metadata("no 'data' list")
    entries = [e for e in answer.data if _is_study(e, study)]
    problems: list[PathProblem] = []
    found: list[StudyResultMeta] = []
    for entry in entries:
        for raw_result in entry.study_results or ():
            try:
                found.append(_study_result(raw_result, problems))
            except _Refused as exc:
                srid = raw_result.id if _is_id(raw_result.id) else "?"
                problems.append(PathProblem(RelPath(f"study_result_{srid}"), str(exc)))
    return _metadata(raw, answer.data, entries, found, problems, study=study)


def _not_metadata(why: str) -> UnsupportedServerError:
    return UnsupportedServerError(
        f"The server's answer to the results metadata request is not JATOS's JSON ({why}); "
        "is server.url the base address of JATOS 3.8.2 or newer?"
    )


def _only(raw: bytes, *, study: str) -> bytes:
    """The answer with only `study`'s part, for metadata.json (an answer that holds other
    studies too is not what was asked for; their results are not ours to keep)."""
    document = json.loads(raw)
    kept = [e for e in document["data"] if isinstance(e, dict) and _is_study_json(e, study)]
    return json.dumps({**document, "data": kept}, ensure_ascii=False).encode()


def _is_study(entry: _StudyIn | _StudyFast, study: str) -> bool:
    if study.isdigit():
        return _is_id(entry.study_id) and entry.study_id == int(study)
    return isinstance(entry.study_uuid, str) and entry.study_uuid.lower() == study


def _is_study_json(entry: Mapping[str, Any], study: str) -> bool:
    return _is_study(_StudyIn(entry.get("studyId"), entry.get("studyUuid")), study)


def _uuid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F-]{1,64}", value) is not None


def _study_result(raw: _ResultIn, problems: list[PathProblem]) -> StudyResultMeta:
    if not _is_id(raw.id):
        raise _Refused("the server listed a study result without a valid ID")
    srid: int = raw.id
    components: dict[int, ComponentResultMeta] = {}
    for item in raw.component_results or ():
        cr = _component_result(item, srid, problems)
        if cr.id in components:
            raise _Refused(f"component result {cr.id} is listed twice")
        components[cr.id] = cr
    worker = raw.worker_id
    return StudyResultMeta(
        id=srid,
        state=_text(raw.study_state, 40),
        start_ms=_millis(raw.start_date),
        end_ms=_millis(raw.end_date),
        last_seen_ms=_millis(raw.last_seen_date),
        worker_id=worker if _is_count(worker) else _text(worker, 40),
        worker_type=_text(raw.worker_type, 40),
        batch_id=raw.batch_id if _is_id(raw.batch_id) else None,
        batch_title=_text(raw.batch_title),
        components=tuple(components[k] for k in sorted(components)),
    )


def _component_result(
    raw: _ComponentIn, srid: int, problems: list[PathProblem]
) -> ComponentResultMeta:
    if not _is_id(raw.id):
        raise _Refused("a component result without a valid ID")
    crid: int = raw.id
    size = raw.data.size if raw.data is not None else None
    if not _is_count(size):
        raise _Refused(f"component result {crid} has no valid data size, so it cannot be checked")
    files: dict[str, ResultFile] = {}
    for item in raw.files or ():
        checked = _file(item.filename, item.size, srid, crid, problems)
        if checked is not None:
            files[checked.name] = checked
    component = raw.component_id
    return ComponentResultMeta(
        id=crid,
        component_id=component if _is_id(component) else None,
        state=_text(raw.component_state, 40),
        start_ms=_millis(raw.start_date),
        end_ms=_millis(raw.end_date),
        data=DataSize(size),
        files=tuple(files[k] for k in sorted(files)),
    )


def _file(
    name: object, size: object, srid: int, crid: int, problems: list[PathProblem]
) -> ResultFile | None:
    """A result file the metadata lists, if its name is one plain file name
    (docs/safety.md, rule 10); otherwise None and the reason in `problems`."""
    where = RelPath(f"{result_path(srid, crid)}/files/{_shown(name)}")
    try:
        checked = server_path(name)
    except UnsafePathError as exc:
        problems.append(PathProblem(where, f"an unsafe file name ({exc}); not written"))
        return None
    if len(checked.parts) != 1 or not _is_count(size):
        reason = "not one plain file name" if len(checked.parts) != 1 else "no valid size"
        problems.append(PathProblem(where, f"{reason}; not written"))
        return None
    return ResultFile(checked.name, size)


def _shown(raw: object) -> str:
    """A name from the server for a message: escaped, short, never a path to act on."""
    text = raw if isinstance(raw, str) else repr(raw)
    return text.encode("unicode_escape").decode("ascii")[:120] or "(empty)"


def component_ids(metadata: Metadata) -> set[int]:
    return {c.component_id for sr in metadata.results for c in sr.components if c.component_id}


# ============================================================================ the plan (pure)


def rows_for(
    sr: StudyResultMeta,
    titles: Mapping[int, str],
    *,
    local: Mapping[int, tuple[int, tuple[str, ...]]] | None = None,
    status: Status | None = None,
) -> tuple[Row, ...]:
    """The rows of `sr`, with the local data size and files of each component result."""
    local = local or {}
    if status is None:
        status = "final" if sr.final else "running"
    return tuple(
        Row(
            study_result_id=sr.id,
            component_result_id=cr.id,
            component_id=cr.component_id,
            component_title=titles.get(cr.component_id, "") if cr.component_id else "",
            worker_id="" if sr.worker_id is None else str(sr.worker_id),
            worker_type=sr.worker_type,
            batch_id=sr.batch_id,
            batch_title=sr.batch_title or "",
            study_state=sr.state,
            component_state=cr.state,
            start_ms=cr.start_ms,
            end_ms=cr.end_ms,
            data_size=local.get(cr.id, (0, ()))[0],
            files=local.get(cr.id, (0, ()))[1],
            status=status,
        )
        for cr in sr.components
    )


def merged(old: Mirrored | None, rows: Iterable[Row]) -> tuple[Row, ...]:
    """`rows`, plus the old rows of component results the server no longer lists: those
    are kept and marked `deleted_on_server` (a withdrawn one stays withdrawn)."""
    new = {row.component_result_id: row for row in rows}
    for row in old.rows if old else ():
        if row.component_result_id not in new:
            gone = row if row.status == "withdrawn" else replace(row, status="deleted_on_server")
            new[row.component_result_id] = gone
    return tuple(new[k] for k in sorted(new))


def plan_pass(metadata: Metadata, record: Record, *, files: bool) -> Plan:
    """What this pass must do, from the metadata and the record alone (no I/O).

    * A result mirrored while final is never fetched again (a partial deletion on the
      server only marks its rows).
    * An aborted run is withdrawn: its local data and files go, its rows say `withdrawn`.
    * Any other result is fetched when it is new or its metadata changed since it was
      mirrored, unless it holds nothing to download (no data, no files wanted).
    * A result the server no longer lists keeps its rows, marked `deleted_on_server`.
    """
    titles = record.titles
    entries: dict[int, Mirrored] = {}
    fetch: list[StudyResultMeta] = []
    withdraw: list[tuple[int, tuple[int, ...]]] = []
    new: list[str] = []
    updated: list[str] = []
    withdrawn: list[str] = []
    deleted: list[str] = []
    unchanged = 0
    listed = {sr.id for sr in metadata.results}
    for sr in metadata.results:
        old = record.results.get(sr.id)
        # Mirrored while final (with the files, if they are wanted): never fetched again.
        kept = old is not None and old.final and (old.with_files or not files or not _has_files(sr))
        if kept and old is not None and _same_ids(old, sr):
            unchanged += len(old.rows)  # the common case: nothing deleted since
            entries[sr.id] = old
            continue
        known = {row.component_result_id: row for row in old.rows} if old else {}
        if kept and old is not None and all(c.id in known for c in sr.components):
            rows = merged(old, [known[c.id] for c in sr.components])
            deleted += [r.path for r in rows if r.status != known[r.component_result_id].status]
            unchanged += sum(r == known[r.component_result_id] for r in rows)
            entries[sr.id] = replace(old, rows=rows)
        elif sr.withdrawn:
            doomed = sorted({*known, *(c.id for c in sr.components)})
            withdraw.append((sr.id, tuple(doomed)))
            rows = merged(old, rows_for(sr, titles, status="withdrawn"))
            rows = tuple(replace(r, status="withdrawn", data_size=0, files=()) for r in rows)
            withdrawn += [r.path for r in rows if known.get(r.component_result_id) != r]
            unchanged += sum(known.get(r.component_result_id) == r for r in rows)
            entries[sr.id] = Mirrored(sr.fingerprint, final=True, with_files=files, rows=rows)
        elif old is not None and old.fingerprint == sr.fingerprint and old.with_files == files:
            unchanged += len(old.rows)
            entries[sr.id] = old
        elif sr.has_content(files=files) or any(r.has_local_data for r in known.values()):
            fetch.append(sr)
            if old is not None:
                entries[sr.id] = old
        else:  # nothing to download: the rows are the metadata's
            rows = merged(old, rows_for(sr, titles))
            for row in rows:
                before = known.get(row.component_result_id)
                if before is None:
                    new.append(row.path)
                elif before != row:
                    updated.append(row.path)
                else:
                    unchanged += 1
            entries[sr.id] = Mirrored(sr.fingerprint, sr.final, with_files=files, rows=rows)
    for srid, old in record.results.items():
        if srid in listed:
            continue
        rows = merged(old, [])
        deleted += [r.path for r, o in zip(rows, old.rows, strict=True) if r != o]
        unchanged += sum(r == o for r, o in zip(rows, old.rows, strict=True))
        entries[srid] = replace(old, rows=rows)
    return Plan(
        fetch=tuple(fetch),
        withdraw=tuple(withdraw),
        record=entries,
        new=tuple(new),
        updated=tuple(updated),
        withdrawn=tuple(withdrawn),
        deleted_on_server=tuple(deleted),
        unchanged=unchanged,
    )


def _has_files(sr: StudyResultMeta) -> bool:
    return any(c.files for c in sr.components)


def _same_ids(old: Mirrored, sr: StudyResultMeta) -> bool:
    """Whether `old` has a row for exactly the component results `sr` lists."""
    rows, components = old.rows, sr.components
    if len(rows) != len(components):
        return False
    if len(rows) == 1:  # most studies: one component
        return rows[0].component_result_id == components[0].id
    return all(row.component_result_id == cr.id for row, cr in zip(rows, components, strict=True))


def batches(
    results: Sequence[StudyResultMeta],
    *,
    files: bool,
    max_results: int = BATCH_RESULTS,
    max_bytes: int = BATCH_BYTES,
) -> list[tuple[StudyResultMeta, ...]]:
    """The results to fetch, in ID order, grouped into zip requests of at most
    `max_results` results and about `max_bytes` (a larger result goes alone)."""
    groups: list[tuple[StudyResultMeta, ...]] = []
    current: list[StudyResultMeta] = []
    size = 0
    for sr in sorted(results, key=lambda r: r.id):
        expected = sr.expected_bytes(files=files)
        if current and (len(current) >= max_results or size + expected > max_bytes):
            groups.append(tuple(current))
            current, size = [], 0
        current.append(sr)
        size += expected
    if current:
        groups.append(tuple(current))
    return groups


# ============================================================================ the record


def encode_record(record: Record) -> bytes:
    return msgspec.json.encode(record)


class _Damaged(Exception):
    pass


def parse_record(raw: bytes) -> Record:
    """The record in `raw`; raises `_Damaged` for anything that is not exactly what
    `encode_record` writes (a record is rebuilt rather than half trusted)."""
    try:
        record = msgspec.json.decode(raw, type=Record)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _Damaged(str(exc)) from None
    if record.version != RECORD_VERSION:
        raise _Damaged(f"unknown version {record.version}")
    for srid, entry in record.results.items():
        for row in entry.rows:
            if row.study_result_id != srid:
                raise _Damaged(f"a row of study result {srid} names another one")
            if row.files and not all(_plain_name(name) for name in row.files):
                raise _Damaged(f"a row of study result {srid} names an unsafe file")
    return record


def _plain_name(name: str) -> bool:
    try:
        return len(server_path(name).parts) == 1
    except UnsafePathError:
        return False


def load_record(root: Path) -> tuple[Record, str | None]:
    """The record of `root` and, when it had to be rebuilt, why (None: read as written,
    or a new folder). A rebuilt record keeps what results.csv still says about results the
    server may no longer have, so their rows are not lost; everything else is fetched
    again."""
    path = root / RECORD_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if not (root / CSV_NAME).exists():
            return Record(), None
        return _rebuilt(root), f"{path} is missing"
    except OSError as exc:
        return _rebuilt(root), f"cannot read {path}: {exc.strerror or exc}"
    try:
        return parse_record(raw), None
    except _Damaged as exc:
        return _rebuilt(root), f"{path} is damaged ({exc})"


def _rebuilt(root: Path) -> Record:
    """A record from results.csv (rows only: every result is fetched again) and the study's
    UUID from metadata.json; anything unreadable is left out."""
    record = Record()
    with contextlib.suppress(OSError, ValueError, RecursionError):
        doc = json.loads((root / METADATA_NAME).read_bytes())
        entry = doc["data"][0] if isinstance(doc, dict) and doc.get("data") else {}
        if isinstance(entry, dict) and _uuid(entry.get("studyUuid")):
            record.study_uuid = str(entry["studyUuid"]).lower()
    rows: dict[int, list[Row]] = {}
    with (
        contextlib.suppress(OSError, ValueError, csv.Error),
        (root / CSV_NAME).open(newline="", encoding="utf-8") as stream,
    ):
        for item in csv.DictReader(stream):
            row = _row_from_csv(item)
            if row is not None:
                rows.setdefault(row.study_result_id, []).append(row)
    for srid, found in rows.items():
        facts = [replace(row, **_local_facts(root, row)) for row in found]
        record.results[srid] = Mirrored("", final=False, with_files=False, rows=tuple(facts))
    return record


def _local_facts(root: Path, row: Row) -> dict[str, Any]:
    """What the folder holds for `row`: the size of its data.txt and its result files."""
    base = RelPath(row.path)
    size, names = 0, []
    with contextlib.suppress(OSError, UnsafePathError):
        size = contained(root, base / "data.txt").stat().st_size
    with contextlib.suppress(OSError, UnsafePathError):
        folder = contained(root, base / "files")
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and _plain_name(p.name))
    return {"data_size": size, "files": tuple(names)}


def _status(text: str | None) -> Status | None:
    for status in STATUSES:
        if text == status:
            return status
    return None


def _row_from_csv(item: Mapping[str, str | None]) -> Row | None:
    def number(key: str) -> int | None:
        value = item.get(key) or ""
        return int(value) if value.isdigit() and 0 < int(value) < 2**63 else None

    srid, crid = number("study_result_id"), number("component_result_id")
    status = _status(item.get("status"))
    if srid is None or crid is None or status is None:
        return None
    return Row(
        study_result_id=srid,
        component_result_id=crid,
        component_id=number("component_id"),
        component_title=_text(item.get("component_title")),
        worker_id=_text(item.get("worker_id"), 40),
        worker_type=_text(item.get("worker_type"), 40),
        batch_id=number("batch_id"),
        batch_title=_text(item.get("batch_title")),
        study_state=_text(item.get("study_state"), 40),
        component_state=_text(item.get("component_state"), 40),
        start_ms=_parse_iso(item.get("start_time")),
        end_ms=_parse_iso(item.get("end_time")),
        data_size=0,  # the folder's own facts are read after this (`_local_facts`)
        files=(),
        status=status,
    )


# ============================================================================ CSV and times


def iso_time(ms: int | None) -> str:
    """Epoch milliseconds as ISO 8601 in UTC (`2024-06-10T06:13:20.000Z`); "" for none."""
    if ms is None:
        return ""
    try:
        stamp = datetime.fromtimestamp(ms / 1000, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return ""
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str | None) -> int | None:
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(stamp.timestamp() * 1000) if stamp.tzinfo else None


def csv_text(rows: Iterable[Row]) -> str:
    """results.csv: a header and one row per component result, by study result and
    component result ID."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in sorted(rows, key=lambda r: (r.study_result_id, r.component_result_id)):
        writer.writerow(
            [
                row.study_result_id,
                row.component_result_id,
                row.component_id or "",
                row.component_title,
                row.worker_id,
                row.worker_type,
                row.batch_id or "",
                row.batch_title,
                row.study_state,
                row.component_state,
                iso_time(row.start_ms),
                iso_time(row.end_ms),
                row.data_size,
                len(row.files),
                row.path,
                row.status,
            ]
        )
    return out.getvalue()


def counts(record: Record) -> dict[str, int]:
    """How many component results have each status."""
    found: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for entry in record.results.values():
        for row in entry.rows:
            found[row.status] += 1
    return found


# ============================================================================ the outcome


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


# ============================================================================ the shell


def check_results_folder(
    mapping: MappingConfig, *, synced: Sequence[tuple[str, Path]], state_root: Path
) -> None:
    """Raise `ConfigError` (exit 2) when the results folder lies inside a synced folder or
    the state folder, resolved with symlinks followed as they are now: participant data
    must never be uploaded (docs/safety.md, rule 9). The configuration checked this when
    it was read; a link changed since (the daemon runs for weeks) is caught here."""
    results = mapping.results
    if results is None:
        return
    for name, folder in synced:
        if is_inside(results.folder, folder):
            raise ConfigError(
                f"{results.where}: the results folder {results.folder} is inside the synced "
                f"folder {folder} of mapping {name!r} (resolved: {resolved(results.folder)}), "
                "so participant data would be uploaded to the study; nothing was written. "
                "Choose a folder outside every synced folder."
            )
    if is_inside(results.folder, state_root):
        raise ConfigError(
            f"{results.where}: the results folder {results.folder} is inside the state folder "
            f"{state_root}; nothing was written. Choose a folder of its own for the "
            "participants' data."
        )


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
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
            check_results_folder(self.mapping, synced=self._synced, state_root=self._state_root)
            try:
                make_private_dirs(self.root)
            except OSError as exc:
                raise FileSyncError(
                    f"Cannot create the results folder {self.root} ({exc.strerror or exc}); "
                    f"check {self.settings.where}."
                ) from exc
            with _folder_lock(self.root):
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
            changed = (record.study_id, record.study_uuid, record.titles) != before or _changed(
                previous, record.results
            )
            self._save(record, metadata, changed=changed)
            outcome.counts = counts(record)

    def _matches(self, record: Record) -> bool:
        """Whether the record's study is the one the mapping names (by ID or by UUID)."""
        study = self.mapping.study
        return record.study_id == int(study) if study.isdigit() else record.study_uuid == study

    def _metadata(self, record: Record, outcome: ResultsOutcome) -> Metadata:
        """The study's metadata (docs/jatos-api.md §14.2): one request, selected by the
        study's ID once it is known (by the UUID the mapping names until then). Unlike the
        zips it fails properly (403, 404, 500)."""
        study = self.mapping.study
        if record.study_id and self._matches(record):
            study = str(record.study_id)
        key = "studyId" if study.isdigit() else "studyUuid"
        outcome.requests += 1
        body = io.BytesIO()
        download = self.client.api_download(
            "/results/metadata",
            body,
            params={key: study},
            what=f"the results metadata of study {self.mapping.study}",
        )
        if "html" in download.content_type:
            raise _not_metadata("a web page; a proxy or a sign-in page in front of JATOS?")
        return parse_metadata(body.getvalue(), study=study)

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
        first = not record.study_uuid or not self._matches(record)
        # Once: the rows of results that were on the server become `deleted_on_server`.
        emptied = not metadata.results and any(
            row.status in ("final", "running") for e in record.results.values() for row in e.rows
        )
        if first and metadata.study_uuid and self._matches_meta(metadata) and not wanted:
            first = False  # the metadata says who the study is, and nothing else is missing
        if first or emptied or wanted:
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

    def _matches_meta(self, metadata: Metadata) -> bool:
        study = self.mapping.study
        if study.isdigit():
            return metadata.study_id == int(study)
        return metadata.study_uuid == study

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
        answer = self.client.api_json(
            "GET",
            f"/studies/{self.mapping.study}/properties",
            params={"withComponentProperties": "true"},
            what=f"study {self.mapping.study}",
        )
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict):
            raise UnsupportedServerError(
                f"The server's answer about study {self.mapping.study} is not JATOS's JSON."
            )
        titles: dict[int, str] = {}
        listed = data.get("components")
        for component in listed if isinstance(listed, list) else []:
            if isinstance(component, dict) and _is_id(component.get("id")):
                titles[component["id"]] = _text(component.get("title"))
        study_id = data["id"] if _is_id(data.get("id")) else None
        uuid = str(data["uuid"]).lower() if _uuid(data.get("uuid")) else ""
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
                self._remove_empty(RelPath(f"study_result_{srid}"))
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
        self._remove_empty(base)

    def _remove_empty(self, rel: RelPath) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            contained(self.root, rel).rmdir()  # only when empty

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
                pending = [sr for sr in pending if sr.id in reasons]
                self._save_record(record)
            for sr in pending:
                outcome.failed.append(
                    PathProblem(
                        RelPath(f"study_result_{sr.id}"),
                        f"not written: {reasons.get(sr.id, 'not verified')} (asked {TRIES} "
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
            reason = f"the zip is damaged or cut short ({_zip_reason(exc)})"
            return dict.fromkeys((sr.id for sr in group), reason)
        failed: dict[int, str] = {}
        with archive:
            for sr in group:
                try:
                    local = self._write_result(archive, sr)
                except _Unverified as exc:
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

    def _write_result(
        self, archive: zipfile.ZipFile, sr: StudyResultMeta
    ) -> dict[int, tuple[int, tuple[str, ...]]]:
        """Check every entry `sr` needs against the metadata, each into a temporary file
        next to its target; only when all passed are they renamed into place. Returns each
        component result's local data size and files. Raises `_Unverified`."""
        staged: list[tuple[Path, Path]] = []
        local: dict[int, tuple[int, tuple[str, ...]]] = {}
        try:
            for cr in sr.components:
                base = RelPath(result_path(sr.id, cr.id))
                size = 0
                entry = _entry(archive, f"{base}/data.txt")
                if entry is None and cr.data_size > 0:
                    raise _Unverified(f"{base}/data.txt is missing from the zip")
                if entry is not None:
                    low, high = _data_bounds(cr.data_size, running=not sr.final)
                    size = self._stage(archive, entry, base / "data.txt", low, high, staged)
                names: list[str] = []
                for item in cr.files if self.settings.files else ():
                    rel = f"{base}/files/{item.name}"
                    entry = _entry(archive, rel)
                    if entry is None:
                        raise _Unverified(f"{rel} is missing from the zip")
                    low, high = _file_bounds(item.size, running=not sr.final)
                    self._stage(archive, entry, RelPath(rel), low, high, staged)
                    names.append(item.name)
                local[cr.id] = (size, tuple(names))
            for temporary, target in staged:
                os.replace(temporary, target)
            for directory in {target.parent for _, target in staged}:
                _fsync_dir(directory)
        except BaseException:
            for temporary, _ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            for cr in sr.components:  # folders made for this try, if nothing else is there
                self._remove_empty(RelPath(result_path(sr.id, cr.id)) / "files")
                self._remove_empty(RelPath(result_path(sr.id, cr.id)))
            self._remove_empty(RelPath(f"study_result_{sr.id}"))
            raise
        return local

    def _stage(
        self,
        archive: zipfile.ZipFile,
        entry: zipfile.ZipInfo,
        rel: RelPath,
        low: int,
        high: int,
        staged: list[tuple[Path, Path]],
    ) -> int:
        """One entry into a temporary file beside `rel`, CRC and size checked; its size."""
        if not low <= entry.file_size <= high:
            raise _Unverified(
                f"{rel} holds {entry.file_size} bytes, which does not fit the metadata"
            )
        try:
            target = contained(self.root, rel)
            make_private_dirs(target.parent)
            target = contained(self.root, rel)  # again, now that its folders exist
            for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
                stale.unlink()  # left by a process that was killed while writing it
        except (UnsafePathError, OSError) as exc:
            raise _Unverified(f"{rel} cannot be written here: {exc}") from exc
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        staged.append((Path(name), target))
        size = 0
        try:
            with open(fd, "wb") as out, _open_entry(archive, entry) as source:
                while chunk := source.read(CHUNK_BYTES):
                    self._check_stop()
                    size += len(chunk)
                    if size > entry.file_size:
                        raise _Unverified(f"{rel} is longer than the zip says")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise _Unverified(f"{rel} is damaged in the zip ({_zip_reason(exc)})") from exc
        except OSError as exc:
            raise _Unverified(f"{rel} could not be written ({exc.strerror or exc})") from exc
        if size != entry.file_size:
            raise _Unverified(f"{rel} is shorter than the zip says")
        return size

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


class _Unverified(Exception):
    """A result whose zip entries do not match the metadata: never written as complete."""


def _entry(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    try:
        return archive.getinfo(name)
    except KeyError:
        return None


# How far before the position the central directory gives an entry's local header may lie.
_REALIGN_WINDOW = 64 * 1024


def _open_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> IO[bytes]:
    """Open `entry`, allowing for JATOS's keep-alive: a space byte sent after 30 s of
    silence lands inside the zip (docs/jatos-api.md §14.3), so the central directory's
    offsets of the entries before it are off by the spaces that follow them. Such an entry's
    local header is looked for a little earlier (its name must match); its CRC then proves
    the content."""
    try:
        return archive.open(entry)
    except zipfile.BadZipFile:
        stream = archive.fp
        if stream is None:
            raise
        name = entry.orig_filename.encode("utf-8" if entry.flag_bits & 0x800 else "cp437")
        start = max(0, entry.header_offset - _REALIGN_WINDOW)
        stream.seek(start)
        window = stream.read(entry.header_offset - start + 30 + len(name))
        # A header that starts before the offset given (it may end after it).
        at = window.rfind(b"PK\x03\x04", 0, entry.header_offset - start + 3)
        while at >= 0:
            if window[at + 30 : at + 30 + len(name)] == name:
                moved = _moved(entry, start + at)
                return archive.open(moved)
            at = window.rfind(b"PK\x03\x04", 0, at)
        raise


def _moved(entry: zipfile.ZipInfo, offset: int) -> zipfile.ZipInfo:
    """A copy of `entry` whose local header is at `offset`."""
    moved = copy.copy(entry)
    moved.header_offset = offset
    return moved


def _data_bounds(size: int, *, running: bool) -> tuple[int, int]:
    """The byte sizes of data.txt that fit `size` from the metadata
    (docs/jatos-api.md §14.2): it counts bytes on MySQL and UTF-16 units on H2, and the file
    is in the server's charset, so a unit takes from half a byte (a pair replaced by "?") to
    four bytes. A running result may have grown or been replaced since the metadata was
    read."""
    if running:
        return 0, 4 * size + _RUNNING_SLACK_BYTES
    return size // 2, 4 * size


def _file_bounds(size: int, *, running: bool) -> tuple[int, int]:
    """A result file's size is its length on the server's disk: exact once the run ended."""
    return (0, 4 * size + _RUNNING_SLACK_BYTES) if running else (size, size)


def _zip_reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _changed(before: Mapping[int, Mirrored], after: Mapping[int, Mirrored]) -> bool:
    """Whether a study result's entry changed (an unchanged one is the same object)."""
    if before.keys() != after.keys():
        return True
    return any(after[k] is not entry and after[k] != entry for k, entry in before.items())


def write_private(path: Path, payload: bytes) -> None:
    """Replace `path` atomically (temporary file beside it, fsync, rename); mode 0600."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with open(fd, "wb") as stream:  # mkstemp: mode 0600 whatever the umask
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
