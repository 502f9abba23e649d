"""The JSON each JATOS release writes for studies, components, batches, study codes and
result metadata (docs/jatos-api.md §10, §12-§14).

Owns the shapes only: which keys, which types (input as JSON text or parsed, `groupId` as
text or number, the result `path`), which keys are left out when empty. Pure functions over
records: no I/O beyond listing a result's upload directory for `files`, no HTTP.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jatos_sync.testing.personality import Personality
from jatos_sync.testing.props import parsed_input
from jatos_sync.testing.state import (
    Batch,
    Component,
    ComponentResult,
    Study,
    StudyLink,
    StudyResult,
    User,
    Worker,
)


def description_hash(description: str | None) -> str | None:
    """`Study.getDescriptionHash`: SHA-256 hex, null for a missing or empty description."""
    if not description:
        return None
    return hashlib.sha256(description.encode("utf-8")).hexdigest()


def _input(p: Personality, text: str | None) -> Any:
    # 3.8/3.9 show the stored JSON text; 3.10 parses it (docs/jatos-api.md §10.2)
    return text if p.json_model == "classic" else parsed_input(text)


def component_json(c: Component, p: Personality, *, separator: str = "/") -> dict[str, Any]:
    classic = p.json_model == "classic"
    path = c.html_file_path
    if classic and path is not None:
        # ≤3.9 shows the server's separator (docs/jatos-api.md §10.2).
        path = path.replace("/", separator)
    return {
        "id": c.id,
        "uuid": c.uuid,
        "title": c.title,
        "htmlFilePath": path,
        "reloadable": c.reloadable,
        "active": c.active,
        "comments": c.comments,
        ("jsonData" if classic else "componentInput"): _input(p, c.input),
    }


def batch_json(b: Batch, p: Personality) -> dict[str, Any]:
    classic = p.json_model == "classic"
    return {
        "id": b.id,
        "uuid": b.uuid,
        "title": b.title,
        "active": b.active,
        "maxActiveMembers": b.max_active_members,
        "maxTotalMembers": b.max_total_members,
        "maxTotalWorkers": b.max_total_workers,
        "allowedWorkerTypes": sorted(b.allowed_worker_types),
        "comments": b.comments,
        ("jsonData" if classic else "batchInput"): _input(p, b.input),
    }


def study_json(
    study: Study,
    p: Personality,
    users: Mapping[str, User],
    *,
    with_components: bool = False,
    with_batches: bool = False,
    separator: str = "/",
) -> dict[str, Any]:
    """`studyAsJsonForApi` (docs/jatos-api.md §10.2): 3.8/3.9 without `description`, input
    as text, the null lazy-loading lists and `[{username}]` members; 3.10 with
    `description`, parsed input and `[{id, username}]` members."""
    classic = p.json_model == "classic"
    data: dict[str, Any] = {"id": study.id, "uuid": study.uuid, "title": study.title}
    if not classic:
        data["description"] = study.description
    data.update(
        {
            "descriptionHash": description_hash(study.description),
            "locked": study.locked,
            "active": study.active,
            "groupStudy": study.group_study,
            "linearStudy": study.linear,
            "allowPreview": study.allow_preview,
            "dirName": study.dir_name,
            "comments": study.comments,
            ("jsonData" if classic else "studyInput"): _input(p, study.input),
            "endRedirectUrl": study.end_redirect_url,
            "studyEntryMsg": study.study_entry_msg,
        }
    )
    if classic:  # lazy-loading artefacts of the Study entity (docs/jatos-api.md §10.2)
        data["componentList"] = None
        data["batchList"] = None
    data["components"] = [
        component_json(c, p, separator=separator)
        if with_components
        else {"id": c.id, "uuid": c.uuid}
        for c in study.components
    ]
    data["batches"] = [
        batch_json(b, p) if with_batches else {"id": b.id, "uuid": b.uuid} for b in study.batches
    ]
    members = sorted(study.members)
    if classic:
        data["members"] = [{"username": m} for m in members]
    else:
        data["members"] = [{"id": users[m].id, "username": m} for m in members if m in users]
    return data


def study_link_json(link: StudyLink, worker: Worker | None, base_path: str) -> dict[str, Any]:
    """`getStudyLinkData` of 3.10 (docs/jatos-api.md §13); `base_path` is JATOS's
    urlBasePath ("/…/")."""
    if worker is None:
        # General links have no worker: `getWorker().getComment()` throws (a 500).
        raise LookupError("study link without worker")
    return {
        "studyCode": link.code,
        "batchId": link.batch_id,
        "type": link.worker_type,
        "comment": worker.comment,
        "active": link.active,
        "studyLinkPath": f"{base_path}publix/{link.code}",
        "studyEntryPath": f"{base_path}publix/run?code={link.code}",
    }


# --------------------------------------------------------------------------- result metadata


def duration_pretty(start_ms: int | None, end_ms: int | None) -> str | None:
    """`getDurationPretty`: "HH:MM:SS", with "D:" in front from one day on; null if open."""
    if end_ms is None or start_ms is None:
        return None
    total = end_ms - start_ms
    seconds = total // 1000 % 60
    minutes = total // 60_000 % 60
    hours = total // 3_600_000 % 24
    days = total // 86_400_000
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text if days == 0 else f"{days}:{text}"


def human_bytes(size: int) -> str:
    """`Helpers.humanReadableByteCount` (SI units, one decimal)."""
    if -1000 < size < 1000:
        return f"{size} B"
    units = "kMGTPE"
    index = 0
    while size <= -999_950 or size >= 999_950:
        size //= 1000
        index += 1
    return f"{size / 1000.0:.1f} {units[index]}B"


def data_size(data: str | None, *, database: str) -> int:
    """SQL `LENGTH(data)`: characters on H2, bytes on MySQL (docs/jatos-api.md §14.2)."""
    if data is None:
        return 0
    return len(data.encode("utf-8")) if database == "mysql" else len(data)


def result_files(directory: Path) -> list[dict[str, Any]]:
    """The uploaded files of one component result, in file-system order
    (docs/jatos-api.md §14.2)."""
    if not directory.is_dir():
        return []
    files: list[dict[str, Any]] = []
    for name in os.listdir(directory):
        size = (directory / name).stat().st_size
        files.append({"filename": name, "size": size, "sizeHumanReadable": human_bytes(size)})
    return files


def component_result_metadata(
    cr: ComponentResult,
    component: Component,
    p: Personality,
    *,
    upload_dir: Path,
    database: str,
    separator: str,
) -> dict[str, Any]:
    """`componentResultMetadata` (docs/jatos-api.md §14.2)."""
    if p.result_path_os_separator:
        path = f"{separator}study_result_{cr.study_result_id}{separator}comp-result_{cr.id}"
    else:
        path = f"/study_result_{cr.study_result_id}/comp-result_{cr.id}"
    size = data_size(cr.data, database=database)
    data: dict[str, Any] = {"size": size, "sizeHumanReadable": human_bytes(size)}
    if size == 0:  # inverted logic in JATOS: the name appears only without data
        data["filename"] = "data.txt"
    meta: dict[str, Any] = {
        "id": cr.id,
        "componentId": component.id,
        "componentUuid": component.uuid,
        "startDate": cr.start_ms,
        "endDate": cr.end_ms,
        "duration": duration_pretty(cr.start_ms, cr.end_ms),
        "componentState": cr.state,
        "path": path,
        "data": data,
        "files": result_files(upload_dir),
    }
    if p.metadata_quota_and_comment:
        meta["isQuotaReached"] = cr.quota_reached
    return meta


def study_result_metadata(
    sr: StudyResult, batch: Batch, worker: Worker | None, p: Personality
) -> dict[str, Any]:
    """`studyResultMetadata` (docs/jatos-api.md §14.2): optional keys only when non-empty;
    `groupId` is text in 3.8.2; `comment` and `isQuotaReached` since 3.9."""
    meta: dict[str, Any] = {"id": sr.id, "uuid": sr.uuid, "studyCode": sr.study_code}
    comment = worker.comment if worker is not None else None
    if p.metadata_quota_and_comment and comment:
        meta["comment"] = comment
    meta.update(
        {
            "startDate": sr.start_ms,
            "endDate": sr.end_ms,
            "duration": duration_pretty(sr.start_ms, sr.end_ms),
            "lastSeenDate": sr.last_seen_ms,
            "studyState": sr.state,
        }
    )
    if sr.message:
        meta["message"] = sr.message
    if sr.url_query_parameters:
        meta["urlQueryParameters"] = dict(sr.url_query_parameters)
    group: Any = sr.group_id
    if p.metadata_group_id_text and group is not None:
        group = str(group)
    meta.update(
        {
            "workerId": sr.worker_id,
            "workerType": sr.worker_type,
            "batchId": batch.id,
            "batchUuid": batch.uuid,
            "batchTitle": batch.title,
            "groupId": group,
        }
    )
    if sr.confirmation_code is not None:
        meta["confirmationCode"] = sr.confirmation_code
    if p.metadata_quota_and_comment:
        meta["isQuotaReached"] = sr.quota_reached
    return meta
