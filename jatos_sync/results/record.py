"""The results folder's own files: the record (`.jatos-sync-results.json`), results.csv and
metadata.json, as text and read back (mirror.py writes them with `state.write_private`).

The record is a hint: `load_record` rebuilds a missing or damaged one from results.csv and
metadata.json (everything on the server is then fetched again), never half trusts it and
never fails on it. Must not talk to the server or touch the result data (mirror.py does).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import replace

from jatos_sync.errors import UnsafePathError
from jatos_sync.model import RelPath
from jatos_sync.paths import contained, server_path
from jatos_sync.results.metadata import is_id, is_uuid, short_text
from jatos_sync.results.plan import RECORD_VERSION, STATUSES, Mirrored, Record, Row, Status

RECORD_NAME = ".jatos-sync-results.json"
CSV_NAME = "results.csv"
METADATA_NAME = "metadata.json"
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
        if isinstance(entry, dict) and is_uuid(entry.get("studyUuid")):
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
        return int(value) if value.isascii() and value.isdigit() and is_id(int(value)) else None

    srid, crid = number("study_result_id"), number("component_result_id")
    status = _status(item.get("status"))
    if srid is None or crid is None or status is None:
        return None
    return Row(
        study_result_id=srid,
        component_result_id=crid,
        component_id=number("component_id"),
        component_title=short_text(item.get("component_title")),
        worker_id=short_text(item.get("worker_id"), 40),
        worker_type=short_text(item.get("worker_type"), 40),
        batch_id=number("batch_id"),
        batch_title=short_text(item.get("batch_title")),
        study_state=short_text(item.get("study_state"), 40),
        component_state=short_text(item.get("component_state"), 40),
        start_ms=_parse_iso(item.get("start_time")),
        end_ms=_parse_iso(item.get("end_time")),
        data_size=0,  # the folder's own facts are read after this (`_local_facts`)
        files=(),
        status=status,
    )


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
