"""The JSON JATOS writes about a study, read into values: the study JSON of
`GET /studies/{id}/properties?withComponentProperties=true&withBatchProperties=true` for
every version (docs/jatos-api.md §10.2), and a `.jas` file of any version
(docs/jatos-api.md §11.6) as the definition it describes (`init --from`, `init --adopt`).

Everything here is untrusted (docs/safety.md, rule 10): IDs, UUIDs and HTML paths must be
what JATOS writes, and what JATOS itself would refuse is refused with the reason. Pure: no
I/O, no HTTP; the values are definition.py's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jatos_sync.definition import (
    UUID,
    ComponentDef,
    Definition,
    Json,
    ServerBatch,
    ServerComponent,
    ServerStudy,
    json_text,
    optional_text,
    problems,
)
from jatos_sync.errors import DefinitionError, ServerUnavailableError, UnsafePathError
from jatos_sync.paths import server_path


def parse_study(data: Mapping[str, Any], *, what: str) -> ServerStudy:
    """The study JSON of any version (docs/jatos-api.md §10.2), checked where it enters
    (docs/safety.md, rule 10): IDs, UUIDs and HTML paths must be what JATOS writes, or
    nothing is decided from it. Keys JATOS leaves out once it omits nulls
    (docs/jatos-api.md §3.2) read as null."""
    reader = _Reader(what)
    components = tuple(
        _component(reader, item, n) for n, item in enumerate(reader.items(data, "components"))
    )
    batches = tuple(_batch(reader, item, n) for n, item in enumerate(reader.items(data, "batches")))
    shown = "description" in data
    return ServerStudy(
        id=reader.id(data, "id"),
        uuid=reader.uuid(data, "uuid"),
        title=reader.text(data, "title") or "",
        dir_name=reader.text(data, "dirName") or "",
        locked=data.get("locked") is True,
        active=data.get("active") is not False,
        description=reader.text(data, "description"),
        description_hash=reader.text(data, "descriptionHash"),
        description_shown=shown,
        comments=reader.text(data, "comments"),
        input=reader.input(data, "studyInput"),
        end_redirect_url=reader.text(data, "endRedirectUrl"),
        entry_message=reader.text(data, "studyEntryMsg"),
        linear=data.get("linearStudy") is True,
        allow_preview=data.get("allowPreview") is True,
        group_study=data.get("groupStudy") is True,
        components=components,
        batches=batches,
    )


class _Reader:
    def __init__(self, what: str) -> None:
        self.what = what

    def bad(self, key: str, problem: str) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"The server's description of {self.what} is not what JATOS writes ({key}: "
            f"{problem}); nothing was changed. Is server.url a JATOS server?"
        )

    def id(self, data: Mapping[str, Any], key: str) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.bad(key, "not a positive whole number")
        return value

    def uuid(self, data: Mapping[str, Any], key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not UUID.fullmatch(value):
            raise self.bad(key, "not a UUID")
        return value.lower()

    def text(self, data: Mapping[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is None or isinstance(value, str):
            return optional_text(value)
        raise self.bad(key, "not text")

    def input(self, data: Mapping[str, Any], key: str) -> str | None:
        """3.10's parsed input under `key`, or ≤3.9's JSON text under `jsonData`."""
        if key in data:
            return json_text(data[key])
        value = data.get("jsonData")
        if value is None or isinstance(value, str):
            return optional_text(value)
        return json_text(value)

    def items(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.bad(key, "not a list of objects")
        return value


def _component(reader: _Reader, data: Mapping[str, Any], n: int) -> ServerComponent:
    html = reader.text(data, "htmlFilePath")
    if html:
        try:  # ≤3.9 write the server's file separator (docs/jatos-api.md §10.2)
            html = str(server_path(html.replace("\\", "/")))
        except UnsafePathError as exc:
            raise reader.bad(f"components[{n}].htmlFilePath", str(exc)) from None
    return ServerComponent(
        id=reader.id(data, "id"),
        uuid=reader.uuid(data, "uuid"),
        title=reader.text(data, "title") or "",
        html=html,
        input=reader.input(data, "componentInput"),
        reloadable=data.get("reloadable") is True,
        active=data.get("active") is not False,
        comments=reader.text(data, "comments"),
    )


def _batch(reader: _Reader, data: Mapping[str, Any], n: int) -> ServerBatch:
    types = data.get("allowedWorkerTypes")
    return ServerBatch(
        id=reader.id(data, "id"),
        uuid=reader.uuid(data, "uuid"),
        title=reader.text(data, "title") or "",
        active=data.get("active") is not False,
        worker_types=frozenset(t for t in types if isinstance(t, str))
        if isinstance(types, list)
        else frozenset(),
    )


# ============================================================================ a .jas


@dataclass(frozen=True)
class Adopted:
    """A definition taken from a `.jas` or a server study, with the study's identity."""

    uuid: str | None  # None: the archive named none
    dir_name: str | None
    definition: Definition


def definition_from_jas(document: Json) -> Adopted:
    """The definition a `.jas` describes (any version's: inputs under `jsonData` or 3.10's
    names, as JSON text). Every value is untrusted: paths are checked as a server's are,
    and what JATOS itself would refuse is refused here with the reason."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
        raise DefinitionError('the .jas holds no study (no "data" object)')
    version = document.get("version")
    if str(version).strip() not in ("3", "2", "0"):
        raise DefinitionError(f"the .jas has version {version!r}; JATOS writes version 3")
    data: Mapping[str, Any] = document["data"]
    uuid = data.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or not UUID.fullmatch(uuid)):
        raise DefinitionError(f"the study's uuid {uuid!r} is not a UUID")
    raw = data.get("componentList") or []
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise DefinitionError("componentList is not a list of components")
    components = tuple(_jas_component(c, n) for n, c in enumerate(raw))
    definition = Definition(
        title=_jas_text(data, "title", "the study") or "",
        description=_jas_text(data, "description", "the study"),
        comments=_jas_text(data, "comments", "the study"),
        input=_jas_input(data, "studyInput", "the study"),
        end_redirect_url=_jas_text(data, "endRedirectUrl", "the study"),
        entry_message=_jas_text(data, "studyEntryMsg", "the study"),
        linear=data.get("linearStudy") is True,
        allow_preview=data.get("allowPreview") is True,
        group_study=data.get("groupStudy") is True,
        components=components,
    )
    check_definition(definition)
    dir_name = data.get("dirName")
    return Adopted(
        uuid=uuid.lower() if isinstance(uuid, str) else None,
        dir_name=dir_name if isinstance(dir_name, str) and dir_name else None,
        definition=definition,
    )


def _jas_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return optional_text(value)
    raise DefinitionError(f"{key} of {where} is not text")


def _jas_input(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get("jsonData", data.get(key))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return json_text(value)
    try:
        return json_text(json.loads(value))
    except ValueError:
        raise DefinitionError(f"the input of {where} is not valid JSON") from None


def _jas_component(data: Mapping[str, Any], n: int) -> ComponentDef:
    title = _jas_text(data, "title", f"component {n + 1}") or ""
    where = f"component {n + 1} ({title!r})"
    html = _jas_text(data, "htmlFilePath", where)
    if not html:
        raise DefinitionError(
            f"{where} has no HTML file; give it one in JATOS before exporting, or remove it"
        )
    try:
        html = str(server_path(html.replace("\\", "/")))
    except UnsafePathError as exc:
        raise DefinitionError(f"the HTML path of {where} is unsafe: {exc}") from None
    uuid = data.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or not UUID.fullmatch(uuid)):
        raise DefinitionError(f"the uuid of {where} is not a UUID")
    return ComponentDef(
        title=title,
        html=html,
        uuid=uuid.lower() if isinstance(uuid, str) else None,
        input=_jas_input(data, "componentInput", where),
        reloadable=data.get("reloadable") is True,
        active=data.get("active") is not False,
        comments=_jas_text(data, "comments", where),
    )


def check_definition(definition: Definition) -> None:
    """Raise `DefinitionError` for anything JATOS would refuse (docs/jatos-api.md §11.6)."""
    for _key, what, problem in problems(definition):
        raise DefinitionError(f"{what}: {problem}")
