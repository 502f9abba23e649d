"""Result endpoints of the stand-in: selectors, metadata, streamed zips, plain-text data,
single files and deletion (docs/jatos-api.md §14).

Owns: turning the selectors of the query string and a JSON body into component result IDs
(with 3.8/3.9's `componentUuids` bug and each release's handling of malformed values), the
metadata answer (checked for access before anything is sent), the chunked zips
(`study_result_<id>/comp-result_<id>/data.txt` and `files/<name>`, `metadata.json` last),
which end early — still 200 — when access fails mid-stream or a truncation fault is
scheduled, and the keep-alive space byte. Result order is deliberately not by ID: JATOS
does not sort, so clients must. It never changes a result except through `runs.py` (delete)
and holds no lock while a zip streams.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jatos_sync.testing import views, wire
from jatos_sync.testing.app import Action, Area, Call
from jatos_sync.testing.faults import Truncation
from jatos_sync.testing.personality import ApiError, ErrorKind
from jatos_sync.testing.state import ComponentResult, Study, StudyResult
from jatos_sync.testing.wire import Response

_COPY_CHUNK = 64 * 1024
_QUERY_KEYS = {
    "studyId": "studyIds",
    "studyUuid": "studyUuids",
    "componentId": "componentIds",
    "componentUuid": "componentUuids",
    "componentResultId": "componentResultIds",
    "studyResultId": "studyResultIds",
    "batchId": "batchIds",
    "groupId": "groupIds",
}
_UUID_KEYS = {"studyUuids", "componentUuids"}
_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")
_NUMBER = re.compile(r"\s*\d+\s*")
_INT32 = range(-(2**31), 2**31)


def unordered(items: list[Any], key: Any = lambda item: item.id) -> list[Any]:
    """A stable order that is not the ID order: JATOS's queries have no ORDER BY
    (docs/jatos-api.md §14.2)."""
    return sorted(items, key=lambda item: (key(item) * 2654435761) % 2**32)


def _java_as_long(node: Any) -> int:
    if isinstance(node, bool):
        return 1 if node else 0
    if isinstance(node, (int, float)):
        return int(node)
    if isinstance(node, str):
        value = wire.parse_java_long(node.strip())
        return value if value is not None else 0
    return 0


def _ids_from_text(text: str) -> list[int]:
    """`extractIdsFromText`: "1,3,5-9"; anything else is skipped."""
    ids: list[int] = []
    for element in (e.strip() for e in text.split(",")):
        match = _RANGE.fullmatch(element)
        if match:
            ids.extend(range(int(match.group(1)), int(match.group(2)) + 1))
        elif _NUMBER.fullmatch(element):
            ids.append(int(element))
    return ids


def _ids(node: Any) -> list[int]:
    if node is None:
        return []
    if isinstance(node, int) and not isinstance(node, bool) and node in _INT32:
        return [node]
    if isinstance(node, list):
        return [_java_as_long(n) for n in node]
    if isinstance(node, str):
        return _ids_from_text(node)
    raise ApiError(ErrorKind.BAD_REQUEST_MESSAGE, detail="Malformed JSON")


def _uuids(node: Any) -> list[str]:
    if node is None:
        return []
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [n if isinstance(n, str) else json.dumps(n) for n in node]
    raise ApiError(ErrorKind.BAD_REQUEST_MESSAGE, detail="Malformed JSON")


@dataclass
class _Run:
    result: StudyResult
    crs: list[ComponentResult] = field(default_factory=list)


@dataclass
class _StudyRuns:
    study: Study
    runs: list[_Run] = field(default_factory=list)


class _Sink:
    """A write-only, non-seekable file for `zipfile`: bytes are taken as they come."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def tell(self) -> int:
        raise OSError("not seekable")

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class _StreamEnd(Exception):
    """The stream ends here: access refused or data gone (JATOS logs and closes)."""


class ResultActions(Area):
    def actions(self) -> dict[str, Action]:
        return {
            "results": self.combined,
            "results_metadata": self.metadata,
            "results_data": self.data,
            "results_files": self.files,
            "result_file": self.single_file,
            "results_delete": self.delete,
        }

    # ------------------------------------------------------------------ selectors

    def _select(self, call: Call) -> list[int]:
        """Component result IDs of the JSON body (only with `application/json`) and the
        query string, unioned; only existing ones; ascending (docs/jatos-api.md §14.1)."""
        return sorted(set(self._from_json(call.json_body())) | set(self._from_query(call)))

    def _from_json(self, body: Any) -> list[int]:
        if body is None:
            return []
        if not isinstance(body, dict):
            return []
        found: set[int] = set()
        for key in body:
            if key not in _QUERY_KEYS.values():
                raise ApiError(ErrorKind.BAD_REQUEST_MESSAGE, detail=f"Unknown field {key}")
            source = key
            if key == "componentUuids" and self.p.selector_uuid_bug:
                source = "studyUuids"  # 3.8/3.9 read the wrong field (docs/jatos-api.md §14.1)
                if source not in body:
                    raise ApiError(ErrorKind.INTERNAL)  # NullPointerException
            value = body[source]
            values: list[Any] = _uuids(value) if key in _UUID_KEYS else _ids(value)
            found |= self._crids(key, values)
        return sorted(found)

    def _from_query(self, call: Call) -> list[int]:
        grouped: dict[str, list[str]] = {}
        for name, value in call.query():
            if name in _QUERY_KEYS:
                grouped.setdefault(_QUERY_KEYS[name], []).append(value)
        found: set[int] = set()
        for key, raw in grouped.items():
            if key in _UUID_KEYS:
                found |= self._crids(key, raw)
                continue
            numbers: list[int] = []
            for text in raw:
                if self.p.selector_drops_bad_numbers and not re.fullmatch(r"-?\d+", text):
                    continue  # 3.10 filters before parsing (docs/jatos-api.md §14.1)
                number = wire.parse_java_long(text)
                if number is None:
                    raise ApiError(ErrorKind.INTERNAL)  # Long.parseLong throws
                numbers.append(number)
            found |= self._crids(key, numbers)
        return sorted(found)

    def _crids(self, key: str, values: list[Any]) -> set[int]:
        wanted = set(values)
        state = self.state
        with state.lock:
            if key == "componentResultIds":
                return wanted & set(state.component_results)
            if key in {"componentIds", "componentUuids"}:
                return {
                    cr.id
                    for cr in state.component_results.values()
                    if (cr.component_id if key == "componentIds" else self._component_uuid(cr))
                    in wanted
                }
            runs = state.study_results.values()
            if key == "studyIds":
                chosen = [sr for sr in runs if sr.study_id in wanted]
            elif key == "studyUuids":
                uuids = {s.id for s in state.studies.values() if s.uuid in wanted}
                chosen = [sr for sr in runs if sr.study_id in uuids]
            elif key == "studyResultIds":
                chosen = [sr for sr in runs if sr.id in wanted]
            elif key == "batchIds":
                chosen = [sr for sr in runs if sr.batch_id in wanted]
            else:  # groupIds: the stand-in has no group studies
                chosen = [sr for sr in runs if sr.group_id in wanted]
            return {cr.id for sr in chosen for cr in sr.component_results}

    def _component_uuid(self, cr: ComponentResult) -> str | None:
        component = self.state.components.get(cr.component_id)
        return component.uuid if component is not None else None

    def _grouped(self, crids: list[int]) -> list[_StudyRuns]:
        """The selection by study and study result, in no particular order
        (docs/jatos-api.md §14.2)."""
        state = self.state
        by_sr: dict[int, _Run] = {}
        for crid in crids:
            cr = state.component_results.get(crid)
            if cr is None:
                continue
            sr = state.study_results[cr.study_result_id]
            by_sr.setdefault(sr.id, _Run(sr)).crs.append(cr)
        by_study: dict[int, _StudyRuns] = {}
        for run in by_sr.values():
            study = state.studies[run.result.study_id]
            by_study.setdefault(study.id, _StudyRuns(study)).runs.append(run)
        grouped = unordered(list(by_study.values()), key=lambda s: s.study.id)
        for item in grouped:
            item.runs = unordered(item.runs, key=lambda r: r.result.id)
            for run in item.runs:
                run.crs = unordered(run.crs)
        return grouped

    # ------------------------------------------------------------------ metadata

    def _metadata_doc(self, grouped: list[_StudyRuns], call: Call) -> dict[str, Any]:
        site = self.app.site
        data: list[dict[str, Any]] = []
        for item in grouped:
            results = []
            for run in item.runs:
                sr = run.result
                batch = self.state.batches.get(sr.batch_id)
                worker = self.state.workers.get(sr.worker_id)
                meta = views.study_result_metadata(sr, batch, worker, self.p) if batch else {}
                meta["componentResults"] = [
                    views.component_result_metadata(
                        cr,
                        self.state.components[cr.component_id],
                        self.p,
                        upload_dir=self.app.runs.upload_dir(sr.id, cr.id),
                        database=site.database,
                        separator=site.path_separator,
                    )
                    for cr in run.crs
                    if cr.component_id in self.state.components
                ]
                results.append(meta)
            data.append(
                {
                    "studyId": item.study.id,
                    "studyUuid": item.study.uuid,
                    "studyTitle": item.study.title,
                    "studyResults": results,
                }
            )
        doc: dict[str, Any] = {}
        if call.query_bool("isApiCall", True):
            doc["apiVersion"] = self.app.api_version
        doc["data"] = data
        return wire.drop_nulls(doc) if self.app.omit_nulls else doc

    def _check_all(self, grouped: list[_StudyRuns], call: Call) -> None:
        for item in grouped:
            self.app.check_access(item.study, call)

    def metadata(self, call: Call) -> Response:
        """Synchronous, with Content-Length; one inaccessible study fails it all
        (docs/jatos-api.md §14.2)."""
        crids = self._select(call)
        download = call.query_bool("download", True) if self.p.metadata_download_flag else True
        with self.state.lock:
            grouped = self._grouped(crids)
            self._check_all(grouped, call)
            doc = self._metadata_doc(grouped, call)
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = [("Content-Type", "application/json")]
        if download:
            headers.append(_attachment(f"jatos_results_metadata_{_stamp()}.json"))
        return Response(200, headers, body)

    # ------------------------------------------------------------------ zips

    def combined(self, call: Call) -> Response:
        suffix = self.p.results_archive_suffix
        return self._zip_answer(call, f"jatos_results_{_stamp()}.{suffix}", data=True, files=True)

    def data(self, call: Call) -> Response:
        if call.query_bool("asPlainText", False):
            return self._plain_text(call)
        return self._zip_answer(call, f"jatos_results_data_{_stamp()}.zip", data=True, files=False)

    def files(self, call: Call) -> Response:
        return self._zip_answer(call, f"jatos_results_files_{_stamp()}.zip", data=False, files=True)

    def _zip_answer(self, call: Call, filename: str, *, data: bool, files: bool) -> Response:
        """200 with a chunked zip; access is checked while streaming (docs/jatos-api.md §14.3)."""
        crids = self._select(call)
        with self.state.lock:
            grouped = self._grouped(crids)
            plan: list[tuple[str, str | Path] | None] = []  # None: the stream ends here
            for item in grouped:
                if call.username not in item.study.members:
                    plan.append(None)
                    break
                for run in item.runs:
                    for cr in run.crs:
                        base = f"study_result_{run.result.id}/comp-result_{cr.id}"
                        if files:
                            upload = self.app.runs.upload_dir(run.result.id, cr.id)
                            if upload.is_dir():
                                plan += [(f"{base}/files/{f.name}", f) for f in _files(upload)]
                        if data and cr.data is not None:
                            plan.append((f"{base}/data.txt", cr.data))
            metadata: bytes | None = None
            if data and files and None not in plan:
                doc = self._metadata_doc(grouped, call)
                metadata = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        chunks = self._zip_stream(plan, metadata, self.app.site.faults.take_truncation())
        return Response(
            200,
            [("Content-Type", "application/zip"), _attachment(filename)],
            chunks=chunks,
        )

    def _zip_stream(
        self,
        plan: list[tuple[str, str | Path] | None],
        metadata: bytes | None,
        truncation: Truncation | None,
    ) -> Iterator[bytes]:
        sink = _Sink()
        zf = zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED)
        entries: list[tuple[str, str | Path] | None] = list(plan)
        if metadata is not None:
            entries.append(("metadata.json", metadata.decode("utf-8")))
        for written, entry in enumerate(entries):
            if truncation is not None and written >= truncation.after_entries:
                if not truncation.valid:
                    return  # the bytes just stop; the chunked answer still ends cleanly
                break
            yield sink.take()
            yield from self._stall()
            if entry is None:
                break  # access refused mid-stream: JATOS closes the zip and stops
            try:
                yield from _write_entry(zf, sink, *entry)
            except _StreamEnd:
                break
        zf.close()
        yield sink.take()

    def _stall(self) -> Iterator[bytes]:
        """An injected pause before an entry; `keepAlive(30s, " ")` fills every silence as
        long as the interval with a space byte, even inside a zip (docs/jatos-api.md §14.3)."""
        site = self.app.site
        now = time.monotonic()
        end = now + site.faults.results_stall_s
        silent_since = now
        while now < end:
            step = min(end - now, site.keepalive_s - (now - silent_since))
            if site.wait(max(step, 0.0)):
                return  # the server is stopping
            now = time.monotonic()
            if now - silent_since >= site.keepalive_s:
                yield b" "
                silent_since = now

    def _plain_text(self, call: Call) -> Response:
        """Each component result's data plus a line separator, none for null data; access
        checked before streaming; ascending IDs from 3.9 on (docs/jatos-api.md §14.4)."""
        crids = self._select(call)
        with self.state.lock:
            grouped = self._grouped(crids)
            self._check_all(grouped, call)
            results = [self.state.component_results[c] for c in crids]
            if not self.p.plain_text_sorted:
                results = unordered(results)
            texts = [cr.data for cr in results if cr.data is not None]
        stream = (text.encode("utf-8") + b"\n" for text in texts)
        name = f"jatos_results_data_{_stamp()}.txt"
        if self.p.plain_text_inline:
            headers = [("Content-Type", "text/plain; charset=UTF-8")]
            if call.query_bool("download", False):
                headers.append(_attachment(name))
        else:
            headers = [("Content-Type", "application/octet-stream"), _attachment(name)]
        return Response(200, headers, chunks=stream)

    # ------------------------------------------------------------------ one file, delete

    def single_file(self, call: Call) -> Response:
        raw = call.query_value("componentResultId")
        crid = wire.parse_java_long(raw.strip()) if raw is not None else None
        if crid is None:
            raise ApiError(ErrorKind.BAD_REQUEST, detail="Missing parameter: componentResultId")
        name = call.segment("filename")
        with self.state.lock:
            cr = self.state.component_results.get(crid)
            if cr is None:
                raise ApiError(self.p.unknown_result_file_cr, detail="Component doesn't exists")
            study = self.state.studies[self.state.study_results[cr.study_result_id].study_id]
            self.app.check_access(study, call)
            directory = self.app.runs.upload_dir(cr.study_result_id, cr.id)
        if not name or "/" in name or name in {".", ".."} or "\x00" in name:
            if self.p.json_errors:
                raise ApiError(ErrorKind.IO, detail=f'Couldn\'t generate path to file "{name}".')
            raise ApiError(ErrorKind.RESULT_FILE_MISSING)
        path = directory / name
        if not path.is_file():
            raise ApiError(ErrorKind.RESULT_FILE_MISSING)
        f = path.open("rb")
        return Response(
            200,
            [
                ("Content-Type", _mime(name)),
                ("Content-Disposition", wire.content_disposition("inline", name)),
            ],
            stream=f,
            stream_len=path.stat().st_size,
        )

    def delete(self, call: Call) -> Response:
        """Every selected result checked first (access, not locked), then deleted with its
        files; emptied study results go too (docs/jatos-api.md §14.6)."""
        from_json = self._from_json(call.json_body())
        from_query = self._from_query(call)
        crids = from_json + from_query
        with self.state.lock:
            doomed = [self.state.component_results[c] for c in dict.fromkeys(crids)]
            for cr in doomed:
                sr = self.state.study_results[cr.study_result_id]
                self.app.check_access(self.state.studies[sr.study_id], call, unlocked=True)
            self.app.runs.delete(doomed)
        if not self.p.results_delete_lists_ids:
            return Response(200)
        return self.app.json_data(crids)


def _write_entry(
    zf: zipfile.ZipFile, sink: _Sink, name: str, source: str | Path
) -> Iterator[bytes]:
    if isinstance(source, str):
        zf.writestr(name, source.encode("utf-8"))
        yield sink.take()
        return
    try:
        src = source.open("rb")
    except OSError:
        raise _StreamEnd from None
    with src, zf.open(name, "w") as dst:
        while chunk := src.read(_COPY_CHUNK):
            dst.write(chunk)
            yield sink.take()
    yield sink.take()


def _files(directory: Path) -> list[Path]:
    return [child for child in directory.iterdir() if child.is_file()]


def _attachment(filename: str) -> tuple[str, str]:
    return ("Content-Disposition", wire.content_disposition("attachment", filename))


def _stamp() -> str:
    return time.strftime("%Y%m%d%H%M%S")


def _mime(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"
