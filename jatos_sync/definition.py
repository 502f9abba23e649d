"""The study itself as data: what a mapping declares, what the server has, and what it takes
to bring the one in step with the other.

Owns the values of a `definition:` (`Definition`, `ComponentDef`) and of the server's study
(`ServerStudy`; read from JATOS's JSON by study_json.py), the local rules JATOS will apply to a
definition (docs/jatos-api.md §11.6), the semantic comparison of inputs (JATOS minifies them and
shows them as text before 3.10, docs/jatos-api.md §15.2 item 10), component matching (by
`uuid:`, else by HTML file), the plan (`DefinitionPlan`: the changes, and whether they go
through PATCH and the component endpoints or a `.jas` re-import), and the request bodies and
`.jas` document of a definition (docs/jatos-api.md §11.6, §15.2 items 4-7).

Pure: no I/O, no HTTP, no clock, no randomness (new UUIDs come from the caller). Carrying a
plan out is studies.py's business; validating the configuration file is config_reader.py's.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jatos_sync.model import API_VERSION_310, API_VERSION_382, UUID_PATTERN

Json = Any  # None, bool, int, float, str, list or dict of these


TITLE_MAX = 255
# ≤3.9 cannot export a study with a shorter title (docs/jatos-api.md §11.1, §15.2 item 19)
STUDY_TITLE_MIN = 3
ENTRY_MESSAGE_MAX_BYTES = 1000  # studyEntryMsg, 3.9+ (docs/jatos-api.md §11.6)
# `htmlFilePath` as JATOS validates it: relative, ASCII letters, digits, _ - /, exactly one
# dot (docs/jatos-api.md §11.6, §15.2 item 6).
HTML_FILE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9/_-]*\.[A-Za-z0-9_-]+")
# JATOS refuses text holding HTML (Jsoup with an empty safelist): any tag is enough.
_HTML_TAG = re.compile(r"<\s*/?\s*[A-Za-z!?]")
UUID = re.compile(UUID_PATTERN)
# A study assets folder name (dirName) that JATOS accepts on every version (docs/jatos-api.md §9.9).
_DIR_NAME_RESERVED = {"jatos", "publix", "public", "assets", "study_assets_root", "study_assets"}


# ============================================================================ the declaration


@dataclass(frozen=True)
class ComponentDef:
    """One component as declared. `input` is JSON text (minified), None for none."""

    title: str
    html: str  # the component's HTML file, relative to the synced folder
    uuid: str | None = None  # written by `init`; without it the HTML file identifies it
    input: str | None = None
    reloadable: bool = False
    active: bool = True
    comments: str | None = None


@dataclass(frozen=True)
class Definition:
    """A study as declared under `definition:`; absent keys are JATOS's defaults, so the
    definition is the whole truth about the study's properties and components."""

    title: str
    description: str | None = None
    comments: str | None = None
    input: str | None = None  # "Study input", JSON text
    end_redirect_url: str | None = None
    entry_message: str | None = None  # "Study entry message"
    linear: bool = False  # "linear study flow"
    allow_preview: bool = False
    group_study: bool = False
    components: tuple[ComponentDef, ...] = ()


def json_text(value: Json) -> str | None:
    """A JSON value as minified text, the way JATOS stores inputs; None for null."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_value(text: str | None) -> Json:
    """The value of stored JSON text; text that is not JSON stays text, "" is null."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def same_json(a: Json, b: Json) -> bool:
    """Semantic equality of two JSON values: key order does not matter, 1 == 1.0, but a
    boolean is never a number (Python's `True == 1` is not JSON's)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def same_input(a: str | None, b: str | None) -> bool:
    """Whether two stored inputs (JSON text) mean the same (minified, "" is null:
    docs/jatos-api.md §10.2). Text that is not JSON equals only the same text."""
    value_a, value_b = _parsed(a or "null"), _parsed(b or "null")
    if value_a is _NOT_JSON or value_b is _NOT_JSON:
        return (a or None) == (b or None)
    return same_json(value_a, value_b)


def optional_text(value: str | None) -> str | None:
    """An optional text as JATOS keeps it: "" and None are both "nothing"."""
    return value or None


# ------------------------------------------------------------------------- local rules


def has_html(text: str | None) -> bool:
    return text is not None and _HTML_TAG.search(text) is not None


def title_problem(title: str, *, study: bool) -> str | None:
    """Why JATOS would refuse `title`, or None (docs/jatos-api.md §11.6; a study title also needs 3
    characters, or ≤3.9 cannot export the study, docs/jatos-api.md §11.1)."""
    if not title.strip():
        return "a title cannot be empty"
    if len(title) > TITLE_MAX:
        return f"a title has at most {TITLE_MAX} characters (this one has {len(title)})"
    if study and len(title.strip()) < STUDY_TITLE_MIN:
        return (
            f"a study title needs at least {STUDY_TITLE_MIN} characters (JATOS 3.9 and older "
            "cannot export a study with a shorter one)"
        )
    return "JATOS allows no HTML in a title" if has_html(title) else None


def text_problem(text: str | None) -> str | None:
    return "JATOS allows no HTML here" if has_html(text) else None


def entry_message_problem(text: str | None) -> str | None:
    if text is not None and len(text.encode("utf-8")) > ENTRY_MESSAGE_MAX_BYTES:
        return f"JATOS allows at most {ENTRY_MESSAGE_MAX_BYTES} bytes here"
    return text_problem(text)


def html_path_problem(path: str) -> str | None:
    """Why JATOS would refuse `path` as a component's `htmlFilePath`, or None
    (docs/jatos-api.md §11.6)."""
    if len(path) > TITLE_MAX:
        return f"JATOS allows at most {TITLE_MAX} characters in a component's HTML path"
    if not HTML_FILE_PATH.fullmatch(path):
        return (
            "JATOS accepts a component's HTML file only as a relative path of ASCII letters, "
            "digits, _ and - with '/' between folders and exactly one dot (e.g. "
            "pages/consent.html; not main.min.html, lib.v2/index.html or names with spaces); "
            "rename the file"
        )
    return None


def problems(definition: Definition) -> list[tuple[tuple[str | int, ...], str, str]]:
    """What JATOS would refuse in `definition` (docs/jatos-api.md §11.6), in order, each as
    (its key below the configuration's `definition:`, what it is in words, the problem)."""
    study = definition
    found: list[tuple[tuple[str | int, ...], str, str | None]] = [
        (("title",), "the study's title", title_problem(study.title, study=True)),
        (("description",), "the study's description", text_problem(study.description)),
        (("comments",), "the study's comments", text_problem(study.comments)),
        (
            ("end_redirect_url",),
            "the study's end redirect URL",
            text_problem(study.end_redirect_url),
        ),
        (
            ("entry_message",),
            "the study's entry message",
            entry_message_problem(study.entry_message),
        ),
        (("input",), "the study's input", _input_problem(study.input)),
    ]
    for n, c in enumerate(study.components):
        where = f"component {n + 1} ({c.title!r})"
        found += [
            (
                ("components", n, "title"),
                f"the title of {where}",
                title_problem(c.title, study=False),
            ),
            (("components", n, "html"), f"the HTML file of {where}", html_path_problem(c.html)),
            (("components", n, "comments"), f"the comments of {where}", text_problem(c.comments)),
            (("components", n, "input"), f"the input of {where}", _input_problem(c.input)),
        ]
    return [(key, what, problem) for key, what, problem in found if problem is not None]


def _input_problem(text: str | None) -> str | None:
    return None if text is None or is_json_text(text) else "not valid JSON"


def default_title(name: str) -> str:
    """A new study's title from a mapping's or a folder's name, long enough for every JATOS."""
    return name if len(name.strip()) >= STUDY_TITLE_MIN else f"{name} study"


def dir_name_for(name: str, fallback: str) -> str:
    """A study assets folder name from `name` that every JATOS accepts
    (docs/jatos-api.md §9.9), else `fallback` (a UUID). It never ends in "jas": an archive's
    root would hold two `*jas`."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:60]
    if not cleaned or cleaned.lower() in _DIR_NAME_RESERVED:
        return fallback
    return cleaned + "_study" if cleaned.lower().endswith("jas") else cleaned


# ============================================================================ the server's study


@dataclass(frozen=True)
class ServerComponent:
    id: int
    uuid: str
    title: str
    html: str | None  # htmlFilePath, "/"-separated; None or "" when JATOS has none
    input: str | None  # JSON text
    reloadable: bool
    active: bool
    comments: str | None


@dataclass(frozen=True)
class ServerBatch:
    id: int
    uuid: str
    title: str
    active: bool
    worker_types: frozenset[str]  # allowedWorkerTypes, e.g. "PersonalSingle"


@dataclass(frozen=True)
class ServerStudy:
    """A study as the server describes it. Before 3.10 JATOS shows only a hash of the
    description (`description_shown` is then False, docs/jatos-api.md §10.2)."""

    id: int
    uuid: str
    title: str
    dir_name: str
    locked: bool
    active: bool
    description: str | None
    description_hash: str | None
    description_shown: bool
    comments: str | None
    input: str | None  # JSON text
    end_redirect_url: str | None
    entry_message: str | None
    linear: bool
    allow_preview: bool
    group_study: bool
    components: tuple[ServerComponent, ...] = ()
    batches: tuple[ServerBatch, ...] = ()


# ============================================================================ the plan


@dataclass(frozen=True)
class Change:
    """One difference between the definition and the server, as `status` and `--json` list
    it: a study property (`field`), a component (`component` with `change`), or the study
    itself (`study` with `change`)."""

    change: str  # "changed", "created", "updated", "moved", "deactivated", "deleted", …
    field: str | None = None
    old: Json = None
    new: Json = None
    component: str | None = None
    study: str | None = None
    results: int | None = None  # results a deletion destroys

    def to_json(self) -> dict[str, Json]:
        if self.study is not None:
            return {"study": self.study, "change": self.change}
        if self.component is None:
            return {"field": self.field, "from": self.old, "to": self.new}
        found: dict[str, Json] = {"component": self.component, "change": self.change}
        if self.field is not None:
            found["field"] = self.field
        if self.field is not None or self.change == "moved":
            found.update({"from": self.old, "to": self.new})
        if self.results is not None:
            found["results"] = self.results
        return found


def describe(change: Change, *, dry_run: bool) -> str:
    """One change in words, for a terminal."""
    will = "would be " if dry_run else ""
    if change.study is not None:
        return f"study {change.study!r} {will}{change.change}"
    if change.component is None:
        verb = "would change" if dry_run else "changed"
        return f"{verb} {change.field}: {_shown(change.old)} → {_shown(change.new)}"
    name = f"component {change.component!r}"
    if change.field is not None:
        verb = "would change" if dry_run else "changed"
        return f"{name}: {verb} {change.field}: {_shown(change.old)} → {_shown(change.new)}"
    if change.change == "moved":
        return f"{name} {will}moved from position {change.old} to {change.new}"
    if change.results is not None:
        results = f"{change.results} result{'s' if change.results != 1 else ''}"
        if change.change == "deletion withheld":
            return (
                f"{name}: deleting it would destroy {results}; withheld until "
                "`jatos-sync sync --yes`"
            )
        return f"{name} {will}{change.change}, with its {results}"
    return f"{name} {will}{change.change}"


def _shown(value: Json) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return repr(text[:77] + "…") if len(text) > 80 else repr(text)


@dataclass(frozen=True)
class DefinitionPlan:
    """What to do so that the server's study is the definition.

    With `reimport`, one `.jas` re-import (`keepProperties=false&keepAssets=true`) sets the
    properties and the components in declared order, each with `component_uuids[i]` (None:
    a new UUID); the others (leftovers) are deactivated and moved to the end by JATOS
    (docs/jatos-api.md §11.3). Otherwise `study_patch` (a PATCH body that names `active`,
    docs/jatos-api.md §10.4), `creates` (appended in order), `updates` (component ID → PATCH
    body) and `deactivates` do it (3.10, docs/jatos-api.md §12.2). `deletes` come last either
    way; `withheld` deletions wait for `--yes`.
    """

    changes: tuple[Change, ...] = ()
    reimport: bool = False
    component_uuids: tuple[str | None, ...] = ()
    study_patch: Mapping[str, Json] = field(default_factory=dict)
    creates: tuple[ComponentDef, ...] = ()
    updates: tuple[tuple[int, Mapping[str, Json]], ...] = ()
    deactivates: tuple[int, ...] = ()
    deletes: tuple[ServerComponent, ...] = ()
    withheld: tuple[ServerComponent, ...] = ()

    @property
    def writes(self) -> bool:
        """Whether carrying the plan out sends any write request."""
        return bool(
            self.reimport
            or self.study_patch
            or self.creates
            or self.updates
            or self.deactivates
            or self.deletes
        )


def match_components(
    declared: Sequence[ComponentDef], server: Sequence[ServerComponent]
) -> tuple[list[ServerComponent | None], list[ServerComponent]]:
    """For each declared component its server component (None: a new one), and the server
    components no declared one claims (in server order).

    A declared `uuid` claims the component with that UUID, and only it. A component without
    one claims a component with its HTML file that no other claimed: an active one first,
    then the first in study order (two components may share a page).
    """
    left = list(server)
    found: list[ServerComponent | None] = [None] * len(declared)
    for i, component in enumerate(declared):
        if component.uuid is not None:
            match = next((s for s in left if s.uuid == component.uuid.lower()), None)
            if match is not None:
                found[i] = match
                left.remove(match)
    for i, component in enumerate(declared):
        if component.uuid is None:
            candidates = [s for s in left if s.html == component.html]
            if candidates:
                match = next((s for s in candidates if s.active), candidates[0])
                found[i] = match
                left.remove(match)
    return found, left


# (definition attribute, JATOS key)
_STUDY_FIELDS = (
    ("title", "title"),
    ("description", "description"),
    ("comments", "comments"),
    ("input", "studyInput"),
    ("end_redirect_url", "endRedirectUrl"),
    ("entry_message", "studyEntryMsg"),
    ("linear", "linearStudy"),
    ("allow_preview", "allowPreview"),
    ("group_study", "groupStudy"),
)
_COMPONENT_FIELDS = (
    ("title", "title"),
    ("html", "htmlFilePath"),
    ("input", "componentInput"),
    ("reloadable", "reloadable"),
    ("active", "active"),
    ("comments", "comments"),
)
HIDDEN_DESCRIPTION = "(not shown by JATOS 3.9 and older)"


def description_hash(text: str | None) -> str | None:
    """JATOS's `descriptionHash`: SHA-256 hex of the description, null when empty
    (docs/jatos-api.md §10.2)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


def _study_changes(definition: Definition, study: ServerStudy) -> list[tuple[str, str, Json, Json]]:
    """(field, JATOS key, server value, declared value) of each property that differs."""
    found = []
    for name, key in _STUDY_FIELDS:
        want, have = getattr(definition, name), getattr(study, name)
        if name == "description" and not study.description_shown:
            if description_hash(optional_text(want)) == study.description_hash:
                continue
            have = HIDDEN_DESCRIPTION if study.description_hash else None
        elif _same_value(name, want, have):
            continue
        found.append((name, key, have, want))
    return found


def _component_changes(
    component: ComponentDef, server: ServerComponent
) -> list[tuple[str, str, Json, Json]]:
    found = []
    for name, key in _COMPONENT_FIELDS:
        want, have = getattr(component, name), getattr(server, name)
        if not _same_value(name, want, have):
            found.append((name, key, have, want))
    return found


def _same_value(name: str, want: Json, have: Json) -> bool:
    """Whether a declared property and the server's mean the same: inputs as JSON, flags
    as they are, texts with "" and None alike."""
    if name == "input":
        return same_input(want, have)
    if isinstance(want, bool):
        return bool(want == have)
    return optional_text(want) == optional_text(have)


def _shown_value(name: str, value: Json) -> Json:
    """A value for the change list: inputs as JSON values, not text."""
    return json_value(value) if name == "input" else value


def _wire(value: Json) -> Json:
    """A declared value as a PATCH or POST body carries it: inputs stay JSON text
    (docs/jatos-api.md §10.3, §10.4), an empty text is null."""
    return optional_text(value) if isinstance(value, str) or value is None else value


def plan_definition(
    definition: Definition,
    study: ServerStudy,
    *,
    api_version: str,
    delete_components: bool = False,
    allow_delete: bool = False,
    results: Mapping[int, int] | None = None,
) -> DefinitionPlan:
    """What it takes to make `study` what `definition` says (docs/jatos-api.md §10-§12).

    On 3.10 (`apiVersion` 1.1.0) properties go through PATCH and components through their
    endpoints, unless the order must change, a component is to get a chosen UUID, or a component
    without an HTML path is to get one (a PATCH fails there, docs/jatos-api.md §12.2): then, as
    on 3.8.2-3.9 for every change, one `.jas` re-import does it all. Components the definition
    no longer lists are deactivated; with `delete_components` they are deleted, which needs
    `allow_delete` (`--yes`) and JATOS 3.8.3 or newer; `results` (component ID → count) says
    what each deletion destroys.
    """
    patchable = api_version == API_VERSION_310
    found, leftovers = match_components(definition.components, study.components)
    study_fields = _study_changes(definition, study)
    changes = [
        Change("changed", name, _shown_value(name, have), _shown_value(name, want))
        for name, _key, have, want in study_fields
    ]
    position = {c.id: n for n, c in enumerate(study.components, start=1)}
    reimport_needed = False
    updates: list[tuple[int, Mapping[str, Json]]] = []
    creates: list[ComponentDef] = []
    for component, match in zip(definition.components, found, strict=True):
        if match is None:
            changes.append(Change("created", component=component.title))
            creates.append(component)
            reimport_needed |= component.uuid is not None  # only an import chooses a UUID
            continue
        body: dict[str, Json] = {}
        for name, key, have, want in _component_changes(component, match):
            shown = (_shown_value(name, have), _shown_value(name, want))
            changes.append(Change("updated", name, *shown, component=component.title))
            body[key] = _wire(want)
        if "htmlFilePath" in body and not match.html:
            reimport_needed = True  # a PATCH of a null path fails (docs/jatos-api.md §12.2)
        if body:
            updates.append((match.id, body))
    # The declared components must stand in declared order; new ones can only be appended.
    matched = [m for m in found if m is not None]
    ranks = sorted(matched, key=lambda m: position[m.id])
    last_matched = max((i for i, m in enumerate(found) if m is not None), default=-1)
    first_new = min((i for i, m in enumerate(found) if m is None), default=len(found))
    reorder = ranks != matched or first_new < last_matched
    if reorder:
        for new_position, (component, m) in enumerate(
            zip(definition.components, found, strict=True), start=1
        ):
            if m is not None and position[m.id] != new_position:
                changes.append(Change("moved", None, position[m.id], new_position, component.title))
    # 3.8.2 has no component endpoints (docs/jatos-api.md §12.3)
    can_delete = api_version != API_VERSION_382
    deleting = delete_components and can_delete
    deletes = tuple(leftovers) if deleting and allow_delete else ()
    withheld = tuple(leftovers) if deleting and not allow_delete else ()
    deactivates = tuple(c.id for c in leftovers if c.active and c not in deletes)
    for leftover in leftovers:
        count = None if results is None else results.get(leftover.id, 0)
        if leftover in deletes:
            changes.append(Change("deleted", component=leftover.title, results=count))
            continue
        if leftover.active:
            changes.append(Change("deactivated", component=leftover.title))
        if leftover in withheld:
            changes.append(Change("deletion withheld", component=leftover.title, results=count))
    component_changes = creates or updates or deactivates or reorder
    reimport = (reorder or reimport_needed or not patchable) and bool(
        study_fields or component_changes
    )
    uuids = tuple(
        m.uuid if m is not None else c.uuid
        for c, m in zip(definition.components, found, strict=True)
    )
    if reimport:
        return DefinitionPlan(
            changes=tuple(changes),
            reimport=True,
            component_uuids=uuids,
            deletes=deletes,
            withheld=withheld,
        )
    patch: dict[str, Json] = {key: _wire(want) for _name, key, _have, want in study_fields}
    if patch:
        # A PATCH without it re-activates the study (docs/jatos-api.md §10.4).
        patch["active"] = study.active
    return DefinitionPlan(
        changes=tuple(changes),
        component_uuids=uuids,
        study_patch=patch,
        creates=tuple(creates),
        updates=tuple(updates),
        deactivates=deactivates,
        deletes=deletes,
        withheld=withheld,
    )


# ============================================================================ request bodies


def component_body(component: ComponentDef) -> dict[str, Json]:
    """The body of 3.10's `POST /studies/{id}/components`: the HTML path is set at creation,
    as a later PATCH of a null path fails (docs/jatos-api.md §12.2, §15.2 item 6)."""
    return {
        "title": component.title,
        "htmlFilePath": component.html,
        "reloadable": component.reloadable,
        "active": component.active,
        "comments": optional_text(component.comments),
        "componentInput": component.input,
    }


def jas_document(
    definition: Definition, *, study_uuid: str, dir_name: str, component_uuids: Sequence[str]
) -> dict[str, Json]:
    """The `.jas` of a definition, as every version reads it (docs/jatos-api.md §11.6, §15.2
    item 4): `version` first, then `data`; inputs as JSON text under `jsonData` (≤3.9 drop
    3.10's names); the study's UUID, title and dirName and each component's UUID always; never
    `id`, `locked` or the study's `active`; no `batchList` (a new study gets a default batch, an
    existing one keeps its batches, docs/jatos-api.md §11.3)."""
    data: dict[str, Json] = {
        "uuid": study_uuid,
        "title": definition.title,
        "description": optional_text(definition.description),
        "groupStudy": definition.group_study,
        "linearStudy": definition.linear,
        "allowPreview": definition.allow_preview,
        "dirName": dir_name,
        "comments": optional_text(definition.comments),
        "jsonData": definition.input,
        "endRedirectUrl": optional_text(definition.end_redirect_url),
        "studyEntryMsg": optional_text(definition.entry_message),
        "componentList": [
            {
                "uuid": uuid,
                "title": c.title,
                "htmlFilePath": c.html,
                "reloadable": c.reloadable,
                "active": c.active,
                "comments": optional_text(c.comments),
                "jsonData": c.input,
            }
            for c, uuid in zip(definition.components, component_uuids, strict=True)
        ],
    }
    return {"version": "3", "data": data}


def is_json_text(text: str) -> bool:
    return _parsed(text) is not _NOT_JSON


_NOT_JSON = object()


def _parsed(text: str) -> Json:
    """The JSON value of `text`, or `_NOT_JSON` (not JSON, or a number JSON cannot hold)."""
    try:
        value = json.loads(text)
    except ValueError:
        return _NOT_JSON
    return value if _finite(value) else _NOT_JSON


def _finite(value: Json) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True
