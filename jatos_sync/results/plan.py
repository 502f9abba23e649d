"""The pure plan of a results pass: from the metadata and the record, what to fetch, what
to withdraw, and the rows of every result.

Owns the record's values (`Record`, `Mirrored`, `Row`: what the folder holds, per study
result), `plan_pass` (tested with `==`) and the grouping of fetches into zip requests
(`batches`). Decisions only: no I/O and no clock; record.py reads and writes the record,
mirror.py carries the plan out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from msgspec.structs import replace

from jatos_sync.results.metadata import Count, Metadata, PositiveId, StudyResultMeta, result_path

RECORD_VERSION = 1

Status = Literal["final", "running", "withdrawn", "deleted_on_server"]
STATUSES: tuple[Status, ...] = ("final", "running", "withdrawn", "deleted_on_server")

# How many study results one zip request asks for, and about how many bytes.
BATCH_RESULTS = 500
BATCH_BYTES = 256 * 1024**2


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


def rows_for(
    sr: StudyResultMeta,
    titles: Mapping[int, str],
    *,
    local: Mapping[int, tuple[int, tuple[str, ...]]] | None = None,
) -> tuple[Row, ...]:
    """The rows of `sr`, with the local data size and files of each component result."""
    local = local or {}
    status: Status = "final" if sr.final else "running"
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
            rows = merged(old, rows_for(sr, titles))
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
