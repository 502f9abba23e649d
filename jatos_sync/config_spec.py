"""The keys of `jatos-sync.yaml`, declared once: type, limits, default and meaning of each.

Validation (`msgspec.convert`), the "expected …" of every message, the JSON Schema and the
README's table are all derived from these classes. A description is a noun phrase, so that
it reads well after "expected" too; `expected=` words a message where it would not. A key
that also takes text (`30s`, `50%`, a study ID in quotes) or is a path names its `form`: the
reader turns such text into the value it stands for, then msgspec checks the limits.
It imports msgspec, so only code that reads a configuration imports it (`--version` stays
fast). It must not read files or know YAML: config_reader.py does that.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from msgspec import Meta, Struct
from msgspec.structs import FieldInfo
from msgspec.structs import fields as _fields

from jatos_sync.credentials import DEFAULT_TOKEN_ENV
from jatos_sync.model import MAX_ID, UUID_PATTERN

_NUMBER = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def _seconds(text: str) -> float:
    return sum(float(n) * _UNIT_S[u] for n, u in re.findall(r"([0-9.]+)\s*(ms|s|m|h|)", text))


def duration_text(seconds: float) -> str:
    """`seconds` as a key of the form "duration" may be written: "500ms", "30s", "2m", "1h"."""
    if seconds == 0:
        return "0s"
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def _study(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip().lower()  # as JATOS writes UUIDs


# A form → the text a key of that form also takes (its JSON Schema pattern), and its value.
# The form "path" is the reader's: relative to the configuration file, `~` expanded.
FORMS: dict[str, tuple[str, Callable[[str], object]]] = {
    "duration": (rf"^\s*(?:[0-9]+\.?[0-9]*\s*|(?:{_NUMBER}\s*(?:ms|s|m|h)\s*)+)$", _seconds),
    "percent": (rf"^\s*{_NUMBER}\s*%\s*$", lambda text: float(text.strip().rstrip("%"))),
    "study": (rf"^\s*(?:[0-9]{{1,19}}|{UUID_PATTERN})\s*$", _study),
}


def _d(description: str, expected: str = "", **checks: Any) -> Meta:
    """A key's meaning and msgspec's checks; `expected` words a message where the meaning would
    not, `form` names the text the key also takes, `secret=True` keeps it out of messages."""
    extra: dict[str, Any] = {k: checks.pop(k) for k in ("form", "secret") if k in checks}
    if expected:
        extra["expected"] = expected
    return Meta(description=description, extra=extra, **checks)


Text = Annotated[str, Meta(pattern=r"\S")]  # not empty
LocalPath = Annotated[Text, Meta(extra={"form": "path"})]
Seconds = Annotated[float, Meta(extra={"form": "duration"})]
Pattern = Annotated[str, _d("a gitignore pattern")]
StudyRef = Annotated[int, Meta(ge=1, le=MAX_ID)] | Annotated[str, Meta(pattern=FORMS["study"][0])]


class Server(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How to reach JATOS and where the API token is."""

    url: Annotated[
        str, _d("the base URL of JATOS, e.g. https://jatos.example.org (with its path prefix)")
    ]
    token_env: Annotated[
        str,
        _d(
            "the name of an environment variable that holds the API token",
            "the name of an environment variable (letters, digits, _)",
            pattern="^[A-Za-z_][A-Za-z0-9_]*$",
        ),
    ] = DEFAULT_TOKEN_ENV
    token_file: Annotated[
        LocalPath | None, _d("the path of a file that holds only the token (chmod 600)")
    ] = None
    token: Annotated[
        str | None,
        _d("the API token as text (jap_…), only in a file that is chmod 600", secret=True),
    ] = None
    timeout: Annotated[Seconds, _d("the time limit of each request", ge=0.001, le=3600)] = 30.0
    retries: Annotated[
        int, _d("retries after a dropped connection, a timeout or HTTP 502/503/504", ge=0, le=100)
    ] = 4
    concurrency: Annotated[int, _d("how many files are uploaded in parallel", ge=1, le=32)] = 4
    verify_tls: Annotated[bool, _d("whether the server's TLS certificate is checked")] = True
    ca_bundle: Annotated[
        LocalPath | None,
        _d("the path of a CA certificate file (PEM), for a JATOS behind a private CA"),
    ] = None


class Watch(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How `jatos-sync watch` follows edits."""

    debounce: Annotated[
        Seconds, _d("the quiet time before an edit still open for writing is uploaded", ge=0, le=60)
    ] = 0.3
    delete_delay: Annotated[
        Seconds, _d("how long deletions wait (rebuilds, branch switches)", ge=0, le=3600)
    ] = 2.0
    reconcile_interval: Annotated[
        Seconds, _d("how often everything is compared with the server", ge=1, le=604800)
    ] = 600.0
    polling: Annotated[
        Literal["auto", "always", "never"], _d("whether the folder is polled instead of watched")
    ] = "auto"
    poll_interval: Annotated[Seconds, _d("how often the folder is polled", ge=0.01, le=3600)] = 1.0


class Policy(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What a sync may do; `defaults:` sets it for every mapping, a mapping for itself."""

    delete: Annotated[bool, _d("whether files deleted locally are deleted on the server")] = True
    backup: Annotated[
        bool, _d("whether server content this tool did not write is saved before it is replaced")
    ] = True
    ignore: Annotated[
        Pattern | tuple[Pattern, ...],
        _d(
            "gitignore patterns of files never synced, after the built-in ones, .jatosignore "
            "and those of defaults:",
            'a gitignore pattern or a list of them, e.g. ["*.psd", "drafts/"]',
        ),
    ] = ()
    max_delete: Annotated[int, _d("the most deletions one pass may make", ge=0)] = 500
    max_delete_percent: Annotated[
        float,
        _d(
            "the largest share of the study one pass may delete (from 10 files on)",
            form="percent",
            ge=0,
            le=100,
        ),
    ] = 50.0


Json = Annotated[Any, Meta(extra={"form": "json"})]  # any YAML value that JSON can hold
_A_TITLE = "a title of 1 to 255 characters"


class Component(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One component of the study, in study order."""

    title: Annotated[Text, _d("the component's title", _A_TITLE, max_length=255)]
    html: Annotated[
        Text,
        _d(
            "the component's HTML file, relative to the synced folder",
            "the path of an HTML file in the folder, e.g. index.html",
        ),
    ]
    uuid: Annotated[
        Annotated[str, Meta(pattern=f"^{UUID_PATTERN}$")] | None,
        _d(
            "the component's UUID (init writes it); without one the HTML file identifies it",
            "a UUID such as 3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11",
        ),
    ] = None
    input: Annotated[Json, _d("the component input: any value JSON can hold")] = None
    reloadable: Annotated[bool, _d("whether a participant may reload the component")] = False
    active: Annotated[bool, _d("whether the component is active")] = True
    comments: Annotated[str | None, _d("comments on the component, shown in JATOS only")] = None


class Definition(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The study itself; absent keys take JATOS's defaults, so this is the whole truth."""

    title: Annotated[Text, _d("the study's title", _A_TITLE, max_length=255)]
    description: Annotated[str | None, _d("the study's description")] = None
    comments: Annotated[str | None, _d("comments on the study, shown in JATOS only")] = None
    input: Annotated[Json, _d("the study input (JATOS's Study input): any value JSON can hold")] = (
        None
    )
    end_redirect_url: Annotated[
        str | None, _d("the address participants are sent to when they finish")
    ] = None
    entry_message: Annotated[
        str | None, _d("the message participants see before the study starts")
    ] = None
    linear: Annotated[bool, _d("whether the study flow is linear (no going back)")] = False
    allow_preview: Annotated[bool, _d("whether a link may be previewed before it is used")] = False
    group_study: Annotated[bool, _d("whether the study is a group study")] = False
    components: Annotated[
        tuple[Component, ...],
        _d(
            "the components, in study order; one left out is deactivated",
            "a list of components, each starting with '- ' and holding title: and html:",
        ),
    ] = ()


class Results(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Where the study's results (participant data) are mirrored, and how often."""

    folder: Annotated[
        LocalPath,
        _d(
            "the folder the study's results are mirrored into (relative to this file), "
            "outside every synced folder and the state folder"
        ),
    ]
    every: Annotated[
        Seconds, _d("how often `jatos-sync watch` looks for new results", ge=30, le=604800)
    ] = 300.0
    files: Annotated[
        bool, _d("whether result files (uploads made by the study) are downloaded too")
    ] = True


class Mapping(Policy, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One local folder kept identical to one study's assets."""

    name: Annotated[str | None, _d("a name for the command line (default: the folder's name)")] = (
        None
    )
    folder: Annotated[LocalPath, _d("the path of the local folder to sync (relative to this file)")]
    study: Annotated[StudyRef, _d("a study ID (a whole number) or a study UUID", form="study")]
    create: Annotated[
        bool, _d("whether sync creates the study (with this UUID) when the server has none")
    ] = False
    definition: Annotated[
        Definition | None,
        _d(
            "the study itself (title, input, components …), kept in step by sync and watch",
            "a mapping with title: and optionally description:, input:, components: …",
        ),
    ] = None
    delete_components: Annotated[
        bool,
        _d(
            "whether components left out of the definition are deleted with all their "
            "results (only by sync --yes) instead of deactivated"
        ),
    ] = False
    results: Annotated[
        Results | None,
        _d("mirror the study's results into a local folder", "a mapping with folder:"),
    ] = None


class File(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """jatos-sync.yaml: which folders are kept identical to which JATOS studies."""

    server: Annotated[Server, _d("the JATOS server", "a mapping with at least url:")]
    state_dir: Annotated[
        LocalPath | None,
        _d("the folder for what was last synced and for backups, outside every synced folder"),
    ] = None
    watch: Annotated[Watch, _d("how `jatos-sync watch` follows edits")] = Watch()
    defaults: Annotated[
        Policy, _d("policy keys (delete … max_delete_percent) for every mapping")
    ] = Policy()
    mappings: Annotated[
        list[Mapping],
        _d(
            "the folders and the studies they are synced to",
            "a list of mappings, each starting with '- ' and holding folder: and study:",
            min_length=1,
        ),
    ]


@functools.cache
def fields(struct: type) -> dict[str, FieldInfo]:
    """The fields of a declared class, its own before inherited ones (`name, folder, …`)."""
    infos = {f.name: f for f in _fields(struct)}
    return {n: infos[n] for n in dict.fromkeys([*vars(struct)["__annotations__"], *infos])}


@functools.cache
def parts(declared: Any) -> tuple[list[Any], list[Meta]]:
    """The options of a declared type (Annotated and None taken off) and all its Meta."""
    if get_origin(declared) is Annotated:
        options, metas = parts(get_args(declared)[0])
        return options, [*metas, *(m for m in declared.__metadata__ if isinstance(m, Meta))]
    if get_origin(declared) in (Union, UnionType):
        found = [parts(a) for a in get_args(declared) if a is not type(None)]
        return [o for f in found for o in f[0]], [m for f in found for m in f[1]]
    return [declared], []


@functools.cache
def info(declared: Any) -> dict[str, Any]:
    """A declared type's description, extra and limits (`ge`, `le`); the outermost Meta wins."""
    found: dict[str, Any] = {}
    for meta in parts(declared)[1]:
        found.update(
            {k: v for k in ("description", "ge", "le") if (v := getattr(meta, k)) is not None}
        )
        found.update(meta.extra or {})
    return found


def limits(declared: Any) -> tuple[Any, Any]:
    """The lowest and highest number a declared type allows (None: no limit)."""
    return info(declared).get("ge"), info(declared).get("le")


def struct(declared: Any) -> Any:
    """The declared class (`Server`, `Mapping` …) among the options of `declared`, or None."""
    kinds = [o for o in parts(declared)[0] if isinstance(o, type)]
    return next((o for o in kinds if issubclass(o, Struct)), None)


def step(declared: Any, key: str | int) -> Any:
    """The declared type one key below `declared`, or None where nothing is declared."""
    if isinstance(key, str):
        field = fields(struct(declared)).get(key) if struct(declared) else None
        return field and field.type
    lists = [o for o in parts(declared)[0] if get_origin(o) in (list, tuple)]
    return get_args(lists[0])[0] if lists else None
