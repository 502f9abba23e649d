"""What the server's results metadata says about one study, decoded and checked.

Owns the values a results pass decides from (`StudyResultMeta`, `ComponentResultMeta`,
`Metadata`) and `parse_metadata`, which reads an answer of `GET /results/metadata`
(docs/jatos-api.md §14.2) defensively: IDs must be positive whole numbers, sizes counts and
file names single plain path elements (`paths.server_path`; docs/safety.md, rule 10); types
differ by version and optional keys are left out. A well-formed answer is decoded by
msgspec in one go; one that is not is read entry by entry, and only the odd entries are left
out and reported. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import msgspec
import structlog
from msgspec.structs import replace

from jatos_sync.errors import UnsafePathError, UnsupportedServerError
from jatos_sync.model import MAX_ID, PathProblem, RelPath
from jatos_sync.paths import server_path

if TYPE_CHECKING:
    from jatos_sync.client import JatosClient

log = structlog.get_logger("jatos_sync.results")

# A study result is final once its run has ended (docs/jatos-api.md §14.7); only then is it
# never fetched again.
FINAL_STATES = frozenset({"FINISHED", "ABORTED", "FAIL"})
WITHDRAWN_STATE = "ABORTED"  # an abort purges the data and files of every component result

PositiveId = Annotated[int, msgspec.Meta(gt=0, le=MAX_ID)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


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


def result_path(srid: int, crid: int) -> str:
    """A component result's folder below the results folder, as JATOS names it
    (docs/jatos-api.md §14.3)."""
    return f"study_result_{srid}/comp-result_{crid}"


def is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _millis(value: object) -> int | None:
    return value if _is_count(value) else None


def short_text(value: object, limit: int = 500) -> str:
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


def fetch_metadata(client: JatosClient, study: str, *, what: str) -> Metadata:
    """`GET /results/metadata` of `study` (a numeric ID or a lower-case UUID), parsed by
    `parse_metadata`. Unlike the results' zips it fails properly (403, 404, 500)."""
    body = io.BytesIO()
    key = "studyId" if study.isdigit() else "studyUuid"
    download = client.api_download("/results/metadata", body, params={key: study}, what=what)
    if "html" in download.content_type:
        raise not_metadata("a web page; a proxy or a sign-in page in front of JATOS?")
    return parse_metadata(body.getvalue(), study=study)


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
    kept = _kept_files([(f.name, f.size) for f in cr.files], srid, cr.id, problems)
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
        study_id=next((e.study_id for e in entries if is_id(e.study_id)), None),
        study_uuid=next((e.study_uuid.lower() for e in entries if is_uuid(e.study_uuid)), ""),
        results=tuple(results[k] for k in sorted(results)),
        problems=tuple(problems),
        document=raw if len(entries) == len(listed) else _only(raw, study=study),
    )


def _parse_slowly(raw: bytes, *, study: str) -> Metadata:
    try:
        answer = msgspec.json.decode(raw, type=_AnswerIn)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise not_metadata(str(exc)) from None
    if answer.data is None:
        raise not_metadata("no 'data' list")
    entries = [e for e in answer.data if _is_study(e, study)]
    problems: list[PathProblem] = []
    found: list[StudyResultMeta] = []
    for entry in entries:
        for raw_result in entry.study_results or ():
            try:
                found.append(_study_result(raw_result, problems))
            except _Refused as exc:
                srid = raw_result.id if is_id(raw_result.id) else "?"
                problems.append(PathProblem(RelPath(f"study_result_{srid}"), str(exc)))
    return _metadata(raw, answer.data, entries, found, problems, study=study)


def not_metadata(why: str) -> UnsupportedServerError:
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


def names_study(study: str, study_id: object, study_uuid: object) -> bool:
    """Whether `study`, as a mapping names it (an ID, or a lower-case UUID), is the study
    with `study_id` and `study_uuid`."""
    if study.isdigit():
        return is_id(study_id) and study_id == int(study)
    return isinstance(study_uuid, str) and study_uuid.lower() == study


def _is_study(entry: _StudyIn | _StudyFast, study: str) -> bool:
    return names_study(study, entry.study_id, entry.study_uuid)


def _is_study_json(entry: Mapping[str, Any], study: str) -> bool:
    return names_study(study, entry.get("studyId"), entry.get("studyUuid"))


def is_uuid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F-]{1,64}", value) is not None


def _study_result(raw: _ResultIn, problems: list[PathProblem]) -> StudyResultMeta:
    if not is_id(raw.id):
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
        state=short_text(raw.study_state, 40),
        start_ms=_millis(raw.start_date),
        end_ms=_millis(raw.end_date),
        last_seen_ms=_millis(raw.last_seen_date),
        worker_id=worker if _is_count(worker) else short_text(worker, 40),
        worker_type=short_text(raw.worker_type, 40),
        batch_id=raw.batch_id if is_id(raw.batch_id) else None,
        batch_title=short_text(raw.batch_title),
        components=tuple(components[k] for k in sorted(components)),
    )


def _component_result(
    raw: _ComponentIn, srid: int, problems: list[PathProblem]
) -> ComponentResultMeta:
    if not is_id(raw.id):
        raise _Refused("a component result without a valid ID")
    crid: int = raw.id
    size = raw.data.size if raw.data is not None else None
    if not _is_count(size):
        raise _Refused(f"component result {crid} has no valid data size, so it cannot be checked")
    files = _kept_files([(f.filename, f.size) for f in raw.files or ()], srid, crid, problems)
    component = raw.component_id
    return ComponentResultMeta(
        id=crid,
        component_id=component if is_id(component) else None,
        state=short_text(raw.component_state, 40),
        start_ms=_millis(raw.start_date),
        end_ms=_millis(raw.end_date),
        data=DataSize(size),
        files=files,
    )


def _kept_files(
    named: list[tuple[object, object]], srid: int, crid: int, problems: list[PathProblem]
) -> tuple[ResultFile, ...]:
    """The files of a component result that pass `_file`, one per name, sorted by name."""
    files: dict[str, ResultFile] = {}
    for name, size in named:
        if (checked := _file(name, size, srid, crid, problems)) is not None:
            files[checked.name] = checked
    return tuple(files[k] for k in sorted(files))


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
