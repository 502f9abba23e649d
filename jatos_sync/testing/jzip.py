"""JATOS study archives as the stand-in reads and writes them (docs/jatos-api.md §11).

Owns: unpacking an uploaded archive into a work directory (entries must stay inside it),
finding its root `.jas` and root "directories" (with 3.8/3.9's count-every-root-entry bug),
parsing a `.jas` the way JATOS does (Jackson's depth-first `findValue`, `asInt` version
rules, lenient binding, per-version defaults and validation), writing a `.jas`, and
building an export archive. Raises `ApiError` with the import kinds; knows nothing about
HTTP, tokens or the state's records beyond the `Study` it exports.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jatos_sync.testing.personality import ApiError, ErrorKind, Personality
from jatos_sync.testing.props import (
    BatchProps,
    BindError,
    ComponentProps,
    StudyProps,
    batch_errors,
    bind,
    component_errors,
    study_errors,
)
from jatos_sync.testing.state import Study

SERIAL_VERSION = 3
_COPY_CHUNK = 256 * 1024
_ILLEGAL_IN_FILENAME = re.compile(r'[\s*?"\\\x00/,`<>|:~!§$%&^°]')
_MAX_FILENAME_LENGTH = 100
TOO_NEW = "This study is from an newer version of JATOS. Try updating your JATOS."
UNSUPPORTED = "This study is from an unsupported version of JATOS."


@dataclass
class JasStudy:
    """A parsed and validated `.jas`: what an import applies (docs/jatos-api.md §11.6)."""

    props: StudyProps
    components: list[ComponentProps]
    batches: list[BatchProps]
    locked: bool = False  # Jackson applies these if present (never sent by JATOS)
    active: bool = True
    missing_ids: list[str] = field(default_factory=list)  # 3.8.2: no defaults for these


@dataclass
class Unpacked:
    """An archive unpacked into `root`: its one `.jas` and its other root entries."""

    root: Path
    jas: Path
    root_dirs: list[Path]  # what JATOS counts as root "directories"


# --------------------------------------------------------------------------- unpacking


def unpack(archive: Path, work_dir: Path, p: Personality) -> Unpacked:
    """`ZipUtil.unzip` + `findFiles(…, "jas")` + `findDirectories` (docs/jatos-api.md §11.3, §11.6).

    An unreadable archive or an entry resolving outside `work_dir` is an unzip failure;
    not exactly one root `*jas` file is "not a study".
    """
    work_dir.mkdir(parents=True)
    root = Path(os.path.realpath(work_dir))
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                # Java's `new File(dir, name)` appends an absolute name to dir.
                target = Path(os.path.realpath(root / info.filename.lstrip("/")))
                if not str(target).startswith(str(root) + os.sep):
                    raise OSError(f"Illegal name: {info.filename}")
                if info.filename.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise ApiError(ErrorKind.IMPORT_UNZIP, detail=p.unzip_failure) from None
    entries = sorted(root.iterdir())
    jas = [e for e in entries if e.name.endswith("jas")]
    if len(jas) != 1:
        raise ApiError(ErrorKind.IMPORT_INVALID, detail=p.not_a_study)
    others = [e for e in entries if e != jas[0]]
    dirs = others if p.root_files_count_as_dirs else [e for e in others if e.is_dir()]
    return Unpacked(root, jas[0], dirs)


# --------------------------------------------------------------------------- .jas parsing


def find_value(node: Any, name: str) -> Any:
    """Jackson `JsonNode.findValue`: depth-first, the first field called `name`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name:
                return value
            found = find_value(value, name)
            if found is not None:
                return found
    elif isinstance(node, list):
        for item in node:
            found = find_value(item, name)
            if found is not None:
                return found
    return None


def jackson_as_int(node: Any) -> int:
    """`JsonNode.asInt()`: numbers truncated, numeric text parsed, anything else 0."""
    if isinstance(node, bool):
        return 1 if node else 0
    if isinstance(node, (int, float)):
        return int(node)
    if isinstance(node, str):
        text = node.strip()
        for parse in (int, float):
            try:
                return int(parse(text))
            except ValueError:
                continue
    return 0


def parse_jas(text: str, p: Personality) -> JasStudy:
    """Read and validate a `.jas` like `StudyDeserializer` + `validate` of each release."""
    try:
        tree = json.loads(text)
    except ValueError as exc:
        raise ApiError(ErrorKind.IMPORT_BAD_JAS, detail=str(exc)) from None
    version_node = find_value(tree, "version")
    if version_node is None:
        raise ApiError(ErrorKind.IMPORT_BROKEN, detail="null")  # NullPointerException
    version = jackson_as_int(version_node)
    if version > SERIAL_VERSION:
        raise ApiError(ErrorKind.IMPORT_VERSION, detail=TOO_NEW)
    if version not in (0, 2, SERIAL_VERSION):
        raise ApiError(ErrorKind.IMPORT_VERSION, detail=UNSUPPORTED)
    data = find_value(tree, "data")
    if data is None:
        raise ApiError(ErrorKind.IMPORT_BROKEN, detail="null")
    if not isinstance(data, dict):
        raise ApiError(
            ErrorKind.IMPORT_BAD_JAS,
            detail="Cannot construct instance of `models.common.Study`",
        )
    if version != SERIAL_VERSION:  # StudyV2: no batches, no flags of later versions
        keep = {"uuid", "title", "description", "locked", "dirName", "comments", "jsonData"}
        data = {k: v for k, v in data.items() if k in keep or k == "componentList"}
    try:
        return _bind_jas(data, p)
    except BindError as exc:
        raise ApiError(ErrorKind.IMPORT_BAD_JAS, detail=exc.message) from None


def _objects(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BindError(key, f"Cannot deserialize value of type `java.util.List` ({key})")
    return value


def _bind_jas(data: dict[str, Any], p: Personality) -> JasStudy:
    aliases = p.jas_reads_input_aliases
    study: StudyProps = bind("study", data, StudyProps(), strict=False, aliases=aliases)
    components: list[ComponentProps] = [
        bind("component", c, ComponentProps(), strict=False, aliases=aliases)
        for c in _objects(data, "componentList")
    ]
    default_types = [] if p.checks_worker_types else sorted(p.default_worker_types)
    batches: list[BatchProps] = []
    for raw in _objects(data, "batchList"):
        props: BatchProps = bind("batch", raw, BatchProps(), strict=False, aliases=aliases)
        if "allowedWorkerTypes" not in raw:
            props.allowed_worker_types = list(default_types)
        batches.append(props)
    # Jackson would apply `locked`/`active` if a .jas had them (JATOS never writes them).
    locked = data.get("locked") is True
    active = data.get("active") is not False
    jas = JasStudy(study, components, batches, locked=locked, active=active)
    _apply_defaults(jas, p)
    _validate(jas, p)
    return jas


def _apply_defaults(jas: JasStudy, p: Personality) -> None:
    """3.9+: the model constructors give a random UUID and dirName; 3.8.2 does not
    (docs/jatos-api.md §11.6)."""
    if p.jas_needs_ids:
        if jas.props.uuid is None:
            jas.missing_ids.append("uuid")
        if any(c.uuid is None for c in jas.components):
            jas.missing_ids.append("componentList.uuid")
        return
    if jas.props.uuid is None:
        jas.props.uuid = str(uuid.uuid4())
    if jas.props.dir_name is None:
        jas.props.dir_name = str(uuid.uuid4())
    for component in jas.components:
        if component.uuid is None:
            component.uuid = str(uuid.uuid4())
    for batch in jas.batches:
        if batch.uuid is None:
            batch.uuid = str(uuid.uuid4())


def _validate(jas: JasStudy, p: Personality) -> None:
    if study_errors(jas.props, p) or jas.props.dir_name is None:
        raise ApiError(ErrorKind.IMPORT_INVALID, detail="Study is invalid")
    if not p.import_validates_parts:
        return
    if any(component_errors(c, p) for c in jas.components):
        raise ApiError(ErrorKind.IMPORT_PART_INVALID, detail="Component is invalid")
    if any(batch_errors(b, p) for b in jas.batches):
        raise ApiError(ErrorKind.IMPORT_PART_INVALID, detail="Batch is invalid")


# --------------------------------------------------------------------------- writing


def jas_document(study: Study, p: Personality) -> dict[str, Any]:
    """`studyAsJsonForIO`: version first, then data; inputs as JSON text; only the
    default batch (docs/jatos-api.md §11.3)."""
    names = (
        ("jsonData",) * 3
        if p.jas_input_key == "jsonData"
        else ("studyInput", "componentInput", "batchInput")
    )
    data: dict[str, Any] = {
        "uuid": study.uuid,
        "title": study.title,
        "description": study.description,
        "groupStudy": study.group_study,
        "linearStudy": study.linear,
        "allowPreview": study.allow_preview,
        "dirName": study.dir_name,
        "comments": study.comments,
        names[0]: study.input,
        "endRedirectUrl": study.end_redirect_url,
        "studyEntryMsg": study.study_entry_msg,
        "componentList": [
            {
                "uuid": c.uuid,
                "title": c.title,
                "htmlFilePath": c.html_file_path,
                "reloadable": c.reloadable,
                "active": c.active,
                "comments": c.comments,
                names[1]: c.input,
            }
            for c in study.components
        ],
    }
    batch = study.default_batch
    if batch is None:  # the API can delete the last batch; `getDefaultBatch()` then throws
        raise ApiError(ErrorKind.INTERNAL)
    data["batchList"] = [
        {
            "uuid": batch.uuid,
            "title": batch.title,
            "active": batch.active,
            "maxActiveMembers": batch.max_active_members,
            "maxTotalMembers": batch.max_total_members,
            "maxTotalWorkers": batch.max_total_workers,
            "allowedWorkerTypes": sorted(batch.allowed_worker_types),
            "comments": batch.comments,
            names[2]: batch.input,
        }
    ]
    return {"version": str(SERIAL_VERSION), "data": data}


def jas_file_stem(title: str) -> str:
    """`IOUtils.generateFileName(title)`: trimmed, illegal characters → "_", lower case."""
    return _ILLEGAL_IN_FILENAME.sub("_", title.strip()).lower()[:_MAX_FILENAME_LENGTH]


def write_export(study: Study, jas_bytes: bytes, target: Path, p: Personality) -> None:
    """The archive of `GET /studies/{id}`: the assets under `<dirName>/` (file entries only,
    as the file system lists them), then `<title><random>.jas` at the root
    (docs/jatos-api.md §11.6).

    3.8/3.9 name the `.jas` with `File.createTempFile`, which refuses a prefix shorter than
    three characters: such a study cannot be exported (a generic 500).
    """
    stem = jas_file_stem(study.title)
    if p.export_short_title_fails and len(stem) < 3:
        raise ApiError(ErrorKind.INTERNAL)
    jas_name = f"{stem}{random.randrange(10**9, 10**19)}.jas"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        if study.assets_dir.is_dir():
            _add_dir(zf, study.assets_dir, study.dir_name)
        zf.writestr(jas_name, jas_bytes)


def _add_dir(zf: zipfile.ZipFile, directory: Path, prefix: str) -> None:
    for name in os.listdir(directory):  # no sorting, like `Files.newDirectoryStream`
        child = directory / name
        entry = f"{prefix}/{name}"
        if child.is_dir():
            _add_dir(zf, child, entry)
        elif child.is_file():
            with child.open("rb") as src, zf.open(entry, "w") as dst:
                shutil.copyfileobj(src, dst, _COPY_CHUNK)
