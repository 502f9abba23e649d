"""Study, component and batch properties as JATOS binds and validates them
(docs/jatos-api.md §10-§13).

Owns: the property values (`StudyProps`, `ComponentProps`, `BatchProps`), binding them from
JSON the lenient way (Play's default mapper: unknown keys ignored, scalars coerced — `.jas`
files everywhere, 3.8/3.9 bodies) or the strict way (3.10 create/patch bodies), the
validation rules with JATOS's messages, stored-input normalisation (minified JSON, "" →
null), and worker-type names. Pure functions over values: no I/O, no HTTP, no state.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jatos_sync.testing.personality import Personality

if TYPE_CHECKING:
    from jatos_sync.testing.state import Batch, Component, Study

# --------------------------------------------------------------------------- JSON text


def first_json_value(text: str) -> tuple[bool, Any]:
    """Jackson's `readTree`: the first JSON value of `text`, trailing input ignored.
    (False, None) if there is none; blank text is (True, None) (a MissingNode)."""
    stripped = text.strip()
    if not stripped:
        return True, None
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped)
    except ValueError:
        return False, None
    return True, value


def is_valid_json(text: str) -> bool:
    return first_json_value(text)[0]


def stored_input(text: str | None) -> str | None:
    """`asStringForDB`: null/"" → None; valid JSON minified; invalid kept as is
    (docs/jatos-api.md §10.2)."""
    if not text:
        return None
    ok, value = first_json_value(text)
    if not ok:
        return text
    if value is None and not text.strip():
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parsed_input(text: str | None) -> Any:
    """A stored input as 3.10 shows it: parsed JSON, or None."""
    if text is None:
        return None
    ok, value = first_json_value(text)
    return value if ok else text


# --------------------------------------------------------------------------- worker types

_WORKER_TYPE_ALIASES: Mapping[str, str] = {
    "jatos": "Jatos",
    "ja": "Jatos",
    "personalsingle": "PersonalSingle",
    "ps": "PersonalSingle",
    "personalmultiple": "PersonalMultiple",
    "pm": "PersonalMultiple",
    "generalsingle": "GeneralSingle",
    "gs": "GeneralSingle",
    "generalmultiple": "GeneralMultiple",
    "gm": "GeneralMultiple",
    "mturk": "MT",
    "mt": "MT",
    "mturksandbox": "MTSandbox",
    "mts": "MTSandbox",
}


def worker_type(name: str | None) -> str | None:
    """`WorkerService.extractWorkerType`: full names and abbreviations, any case
    (docs/jatos-api.md §13.1)."""
    if name is None:
        return None
    return _WORKER_TYPE_ALIASES.get(name.lower())


# --------------------------------------------------------------------------- values


@dataclass
class StudyProps:
    uuid: str | None = None
    title: str | None = None
    description: str | None = None
    dir_name: str | None = None
    comments: str | None = None
    input: str | None = None
    end_redirect_url: str | None = None
    study_entry_msg: str | None = None
    linear: bool = False
    allow_preview: bool = False
    group_study: bool = False
    active: bool = True


@dataclass
class ComponentProps:
    uuid: str | None = None
    title: str | None = None
    html_file_path: str | None = None
    reloadable: bool = False
    active: bool = True
    comments: str | None = None
    input: str | None = None
    html_file_rename: bool = False


@dataclass
class BatchProps:
    uuid: str | None = None
    title: str | None = None
    active: bool = True
    max_active_members: int | None = None
    max_total_members: int | None = None
    max_total_workers: int | None = None
    allowed_worker_types: list[str] = field(default_factory=list)
    comments: str | None = None
    input: str | None = None


class BindError(Exception):
    """A JSON value could not be bound; `key` is the JSON field name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


# JSON key -> attribute, with the read-only keys that bind to nothing (None)
# (docs/jatos-api.md §10.3, §10.4, §12.2).
_STUDY_KEYS: Mapping[str, str | None] = {
    "uuid": "uuid",
    "title": "title",
    "description": "description",
    "dirName": "dir_name",
    "comments": "comments",
    "jsonData": "input",
    "endRedirectUrl": "end_redirect_url",
    "studyEntryMsg": "study_entry_msg",
    "linearStudy": "linear",
    "allowPreview": "allow_preview",
    "groupStudy": "group_study",
    "active": "active",
}
_COMPONENT_KEYS: Mapping[str, str | None] = {
    "uuid": "uuid",
    "title": "title",
    "htmlFilePath": "html_file_path",
    "reloadable": "reloadable",
    "active": "active",
    "comments": "comments",
    "jsonData": "input",
}
_BATCH_KEYS: Mapping[str, str | None] = {
    "uuid": "uuid",
    "title": "title",
    "active": "active",
    "maxActiveMembers": "max_active_members",
    "maxTotalMembers": "max_total_members",
    "maxTotalWorkers": "max_total_workers",
    "allowedWorkerTypes": "allowed_worker_types",
    "comments": "comments",
    "jsonData": "input",
}
_INPUT_ALIAS = {"study": "studyInput", "component": "componentInput", "batch": "batchInput"}

# 3.10's strict mapper: the properties classes' fields, read-only ones accepted and ignored.
_STRICT_EXTRA: Mapping[str, Mapping[str, str | None]] = {
    "study": {"uuid": None, "studyId": None, "date": None, "locked": None},
    "component": {
        "uuid": None,
        "id": None,
        "studyId": None,
        "date": None,
        "htmlFileRename": "html_file_rename",
        "htmlFileExists": None,
    },
    "batch": {"id": None, "uuid": None},
}


def _keys(kind: str, *, aliases: bool, strict: bool) -> dict[str, str | None]:
    base = {"study": _STUDY_KEYS, "component": _COMPONENT_KEYS, "batch": _BATCH_KEYS}[kind]
    keys: dict[str, str | None] = dict(base)
    if aliases:
        keys[_INPUT_ALIAS[kind]] = "input"
    if strict:
        keys.update(_STRICT_EXTRA[kind])
    return keys


def _lenient(attr_default: Any, key: str, value: Any) -> Any:
    """Play's default mapper: scalars coerced, nulls give the primitive default."""
    if isinstance(attr_default, bool):
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return value != 0
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        raise BindError(key, f"Cannot deserialize value of type `boolean` from {value!r}")
    if isinstance(attr_default, list):
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [str(v) if not isinstance(v, str) else v for v in items]
    if key.startswith("max"):
        if value is None:
            return None
        if isinstance(value, bool):
            raise BindError(key, f"Cannot deserialize value of type `int` from {value!r}")
        if isinstance(value, (int, float)):
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise BindError(key, f"Cannot deserialize value of type `java.lang.Integer` from {value!r}")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    raise BindError(key, "Cannot deserialize value of type `java.lang.String` from Object value")


def _strict(attr_default: Any, key: str, value: Any) -> Any:
    """3.10's StrictJsonMapper: no coercion at all; null only for object types."""
    if isinstance(attr_default, bool):
        if isinstance(value, bool):
            return value
        raise BindError(key, f"Cannot coerce {json.dumps(value)} to `boolean`")
    if isinstance(attr_default, list):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise BindError(key, f"Cannot deserialize `java.util.Set` from {json.dumps(value)}")
    if key.startswith("max"):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise BindError(key, f"Cannot coerce {json.dumps(value)} to `java.lang.Integer`")
    if value is None or isinstance(value, str):
        return value
    raise BindError(key, "Expected a JSON string")


def bind(
    kind: str,
    obj: Mapping[str, Any],
    into: Any,
    *,
    strict: bool,
    aliases: bool,
) -> Any:
    """Bind the JSON object `obj` onto a copy of `into` (a *Props value).

    `kind` is "study", "component" or "batch". Lenient: unknown keys ignored, scalars coerced.
    Strict: unknown keys and wrong types raise BindError. `aliases`: the 3.10 input names
    (studyInput, componentInput, batchInput) are read as well as jsonData.
    """
    keys = _keys(kind, aliases=aliases, strict=strict)
    result = dataclasses.replace(into)
    for key, value in obj.items():
        if key not in keys:
            if strict:
                raise BindError(key, f'Unrecognized field "{key}", not marked as ignorable')
            continue
        attr = keys[key]
        if attr is None:
            continue
        default = getattr(result, attr)
        if kind == "batch" and attr == "allowed_worker_types":
            default = []
        converted = _strict(default, key, value) if strict else _lenient(default, key, value)
        setattr(result, attr, converted)
    return result


# --------------------------------------------------------------------------- validation

# `Jsoup.isValid(text, Safelist.none())`: any tag makes the text invalid.
_HTML_TAG = re.compile(r"<\s*/?\s*[A-Za-z!?]")
# IOUtils.REGEX_ILLEGAL_IN_FILENAME
_ILLEGAL_IN_FILENAME = re.compile(r'[\s*?"\\\x00/,`<>|:~!§$%&^°]')
_INVALID_DIR_NAMES = ("jatos", "publix", "public", "assets", "study_assets_root", "study_assets")
# ComponentProperties: relative, ASCII word characters, exactly one dot (docs/jatos-api.md §11.6)
HTML_FILE_PATH = re.compile(r"[\w\d_-][\w\d/_-]*\.[\w\d_-]+", re.ASCII)

_NO_HTML = "No HTML allowed"
_BAD_JSON = "Invalid JSON format"


def has_html(text: str | None) -> bool:
    return text is not None and _HTML_TAG.search(text) is not None


def _input_key(p: Personality, kind: str) -> str:
    return _INPUT_ALIAS[kind] if p.jas_reads_input_aliases else "jsonData"


def _title_errors(title: str | None) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if title is None or not title.strip():
        errors.append(("title", "Missing title"))
    if title is not None and len(title) > 255:
        errors.append(("title", "Title too long"))
    if has_html(title):
        errors.append(("title", _NO_HTML))
    return errors


def study_errors(props: StudyProps, p: Personality) -> list[tuple[str, str]]:
    """`StudyProperties.validate` (docs/jatos-api.md §11.6): (JSON key, message) pairs,
    first one reported."""
    errors: list[tuple[str, str]] = []
    if has_html(props.uuid):
        errors.append(("uuid", _NO_HTML))
    errors += _title_errors(props.title)
    name = props.dir_name
    if name is not None:  # null only while creating; the caller decides
        if not name.strip():
            errors.append(("dirName", "Missing directory name"))
        if len(name) > 255:
            errors.append(("dirName", "Directory name too long"))
        if _ILLEGAL_IN_FILENAME.search(name) or name in _INVALID_DIR_NAMES:
            errors.append(("dirName", "Invalid directory name"))
    if has_html(props.comments):
        errors.append(("comments", _NO_HTML))
    if props.input and not is_valid_json(props.input):
        errors.append((_input_key(p, "study"), _BAD_JSON))
    for key, text in (
        ("description", props.description),
        ("endRedirectUrl", props.end_redirect_url),
        ("studyEntryMsg", props.study_entry_msg),
    ):
        if has_html(text):
            errors.append((key, _NO_HTML))
    limit = p.entry_msg_max_bytes
    msg = props.study_entry_msg
    if limit is not None and msg is not None and len(msg.encode("utf-8")) > limit:
        errors.append(("studyEntryMsg", "Study entry message too long"))
    return errors


def component_errors(props: ComponentProps, p: Personality) -> list[tuple[str, str]]:
    """`ComponentProperties.validate` (docs/jatos-api.md §11.6)."""
    errors: list[tuple[str, str]] = []
    if has_html(props.uuid):
        errors.append(("uuid", _NO_HTML))
    errors += _title_errors(props.title)
    path = props.html_file_path
    if path is not None and path.strip():
        if len(path) > 255:
            errors.append(("htmlFilePath", "Path too long"))
        if not HTML_FILE_PATH.fullmatch(path):
            errors.append(
                (
                    "htmlFilePath",
                    "Not a valid path or filename. Remember to use '/' as folder separator, "
                    "and to include the file extension. You can leave it empty for now.",
                )
            )
    if has_html(props.comments):
        errors.append(("comments", _NO_HTML))
    if props.input and not is_valid_json(props.input):
        errors.append((_input_key(p, "component"), _BAD_JSON))
    return errors


def batch_errors(props: BatchProps, p: Personality) -> list[tuple[str, str]]:
    """`BatchProperties.validate` (docs/jatos-api.md §11.6)."""
    errors: list[tuple[str, str]] = []
    if has_html(props.uuid):
        errors.append(("uuid", _NO_HTML))
    errors += _title_errors(props.title)
    for key, value, what in (
        ("maxActiveMembers", props.max_active_members, "max active member"),
        ("maxTotalMembers", props.max_total_members, "max total member"),
        ("maxTotalWorkers", props.max_total_workers, "max total worker"),
    ):
        if value is not None and value < 1:
            errors.append((key, f"Batch's {what} size must be at least 1."))
    most, active = props.max_total_members, props.max_active_members
    if most is not None and active is not None and most < active:
        errors.append(
            (
                "maxTotalMembers",
                "Maximum total members must be greater than or equal to maximum active members.",
            )
        )
    if has_html(props.comments):
        errors.append(("comments", _NO_HTML))
    if props.input and not is_valid_json(props.input):
        errors.append((_input_key(p, "batch"), _BAD_JSON))
    if p.checks_worker_types:
        for name in props.allowed_worker_types:
            if worker_type(name) is None:
                errors.append(("allowedWorkerTypes", f"Invalid worker type: {name}"))
    return errors


def input_from_body(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """3.10 `normalizeJsonInputField`: an object or array input becomes its JSON text;
    `jsonData` wins over the 3.10 name when both are present."""
    key = "jsonData" if "jsonData" in obj else name
    value = obj.get(key)
    if isinstance(value, (dict, list)):
        obj = {**obj, key: json.dumps(value, ensure_ascii=False, separators=(",", ":"))}
    return obj


# --------------------------------------------------------------------------- applying


def apply_study(study: Study, props: StudyProps, *, active: bool | None = None) -> None:
    """`updateStudyCommon` (+ `active` where the caller binds it): never the lock
    (docs/jatos-api.md §10.4)."""
    study.title = props.title or ""
    study.description = props.description
    study.comments = props.comments
    study.study_entry_msg = props.study_entry_msg
    study.end_redirect_url = props.end_redirect_url
    study.input = stored_input(props.input)
    study.linear = props.linear
    study.allow_preview = props.allow_preview
    study.group_study = props.group_study
    if active is not None:
        study.active = active


def apply_component(component: Component, props: ComponentProps) -> None:
    component.title = props.title or ""
    component.html_file_path = props.html_file_path
    component.reloadable = props.reloadable
    component.active = props.active
    component.comments = props.comments
    component.input = stored_input(props.input)


def apply_batch(batch: Batch, props: BatchProps) -> None:
    """`bindToBatch`/`updateBatch`: allowed worker types replaced wholesale, names
    normalised (docs/jatos-api.md §10.5)."""
    batch.title = props.title or ""
    batch.active = props.active
    batch.max_active_members = props.max_active_members
    batch.max_total_members = props.max_total_members
    batch.max_total_workers = props.max_total_workers
    batch.allowed_worker_types = {worker_type(t) or t for t in props.allowed_worker_types}
    batch.comments = props.comments
    batch.input = stored_input(props.input)


def batch_props(batch: Batch) -> BatchProps:
    """`bindToProperties(batch)`: the current values, for a partial update."""
    return BatchProps(
        uuid=batch.uuid,
        title=batch.title,
        active=batch.active,
        max_active_members=batch.max_active_members,
        max_total_members=batch.max_total_members,
        max_total_workers=batch.max_total_workers,
        allowed_worker_types=sorted(batch.allowed_worker_types),
        comments=batch.comments,
        input=batch.input,
    )
