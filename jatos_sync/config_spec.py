"""The keys of `jatos-sync.yaml`, declared once: type, limits, default and meaning of each.

Validation (`msgspec.convert`), the "expected …" of every message, the JSON Schema and the
README's table are all derived from these classes. A description is a noun phrase, so that
it reads well after "expected" too; `expected=` words a message where it would not.
It imports msgspec, so only code that reads a configuration imports it (`--version` stays
fast). It must not read files or know YAML: config_reader.py does that.
"""

from __future__ import annotations

import functools
import math
import re
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin

from msgspec import Meta, Struct
from msgspec.structs import FieldInfo
from msgspec.structs import fields as _fields

MAX_STUDY_ID = 2**63 - 1  # JATOS study IDs are Java longs
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_NUMBER = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
TEXT_FORMS = {  # what the custom types below accept as text (also their JSON Schema pattern)
    "Seconds": rf"^\s*(?:[0-9]+\.?[0-9]*\s*|(?:{_NUMBER}\s*(?:ms|s|m|h)\s*)+)$",
    "Percent": rf"^\s*{_NUMBER}\s*%\s*$",
    "StudyRef": rf"^\s*(?:[0-9]{{1,19}}|{UUID})\s*$",
}
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

if TYPE_CHECKING:  # to the rest of the program, the values they decode to
    Seconds: TypeAlias = float
    Percent: TypeAlias = float
    StudyRef: TypeAlias = str
else:

    class Seconds(float):
        """A duration: seconds as a number, or text such as "500ms", "30s", "2m", "1m30s"."""

    class Percent(float):
        """A share of 0 to 100: a number, or text such as "50%"."""

    class StudyRef(str):
        """A study ID (a whole number) or a study UUID; stored as text, UUIDs in lower case."""


def decode(kind: type, value: object) -> object:
    """msgspec's dec_hook: check and convert a value given for one of the custom types."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and not re.fullmatch(TEXT_FORMS[kind.__name__], text):
        raise ValueError(kind.__name__)
    if kind is StudyRef:
        if text is not None and not text.isdigit():
            return StudyRef(text.lower())  # JATOS writes UUIDs in lower case
        number = value if text is None else int(text)
        if type(number) is int and 1 <= number <= MAX_STUDY_ID:
            return StudyRef(number)
        raise ValueError(kind.__name__)
    if text is not None:
        plain = re.fullmatch(r"[0-9.]+", text.rstrip("%").strip())
        pairs = [] if plain else re.findall(rf"({_NUMBER})\s*(ms|s|m|h)", text)
        value = float(plain[0]) if plain else sum(float(n) * _UNIT_S[u] for n, u in pairs)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            if math.isfinite(number := float(value)):
                return kind(number)
        except OverflowError:
            pass
    raise ValueError(kind.__name__)


def _d(description: str, expected: str = "", *, secret: bool = False, **checks: Any) -> Meta:
    """A key's meaning; `minimum`/`maximum` bound the custom number types (ge/le cannot)."""
    extra = {k: v for k, v in (("expected", expected), ("secret", secret)) if v}
    bounds: dict[str, Any] = {k: checks.pop(k) for k in ("minimum", "maximum") if k in checks}
    return Meta(description=description, extra=extra, extra_json_schema=bounds, **checks)


Text = Annotated[str, Meta(pattern=r"\S")]  # a path: not empty
Pattern = Annotated[str, _d("a gitignore pattern")]


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
    ] = "JATOS_TOKEN"  # noqa: S105 -- a variable name, not a secret
    token_file: Annotated[
        Text | None, _d("the path of a file that holds only the token (chmod 600)")
    ] = None
    token: Annotated[
        str | None,
        _d("the API token as text (jap_…), only in a file that is chmod 600", secret=True),
    ] = None
    timeout: Annotated[
        Seconds, _d("the time limit of each request", minimum=0.001, maximum=3600)
    ] = 30.0
    retries: Annotated[
        int, _d("retries after a dropped connection, a timeout or HTTP 502/503/504", ge=0, le=100)
    ] = 4
    concurrency: Annotated[int, _d("how many files are uploaded in parallel", ge=1, le=32)] = 4
    verify_tls: Annotated[bool, _d("whether the server's TLS certificate is checked")] = True
    ca_bundle: Annotated[
        Text | None, _d("the path of a CA certificate file (PEM), for a JATOS behind a private CA")
    ] = None


class Watch(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How `jatos-sync watch` follows edits."""

    debounce: Annotated[
        Seconds, _d("the quiet time before an edit is uploaded", minimum=0, maximum=60)
    ] = 0.3
    delete_delay: Annotated[
        Seconds, _d("how long deletions wait (rebuilds, branch switches)", minimum=0, maximum=3600)
    ] = 2.0
    reconcile_interval: Annotated[
        Seconds, _d("how often everything is compared with the server", minimum=1, maximum=604800)
    ] = 600.0
    polling: Annotated[
        Literal["auto", "always", "never"], _d("whether the folder is polled instead of watched")
    ] = "auto"
    poll_interval: Annotated[
        Seconds, _d("how often the folder is polled", minimum=0.01, maximum=3600)
    ] = 1.0


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
        Percent,
        _d(
            "the largest share of the study one pass may delete (from 10 files on)",
            minimum=0,
            maximum=100,
        ),
    ] = 50.0


class Mapping(Policy, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One local folder kept identical to one study's assets."""

    name: Annotated[str | None, _d("a name for the command line (default: the folder's name)")] = (
        None
    )
    folder: Annotated[Text, _d("the path of the local folder to sync (relative to this file)")]
    study: Annotated[StudyRef, _d("a study ID (a whole number) or a study UUID")]


class File(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """jatos-sync.yaml: which folders are kept identical to which JATOS studies."""

    server: Annotated[Server, _d("the JATOS server", "a mapping with at least url:")]
    state_dir: Annotated[
        Text | None,
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


def parts(declared: Any) -> tuple[list[Any], list[Meta]]:
    """The options of a declared type (Annotated and None taken off) and all its Meta."""
    if get_origin(declared) is Annotated:
        options, metas = parts(get_args(declared)[0])
        return options, [*metas, *(m for m in declared.__metadata__ if isinstance(m, Meta))]
    if get_origin(declared) in (Union, UnionType):
        found = [parts(a) for a in get_args(declared) if a is not type(None)]
        return [o for f in found for o in f[0]], [m for f in found for m in f[1]]
    return [declared], []


def info(declared: Any) -> dict[str, Any]:
    """A declared type's description and extra; the outermost Meta wins."""
    found: dict[str, Any] = {}
    for meta in parts(declared)[1]:
        found.update({"description": meta.description} if meta.description else {})
        found.update(meta.extra or {})
    return found


def limits(declared: Any) -> tuple[Any, Any]:
    """The lowest and highest number a declared type allows (None: no limit)."""
    low = high = None
    for meta in parts(declared)[1]:
        bounds = meta.extra_json_schema or {}
        low = next((v for v in (meta.ge, bounds.get("minimum")) if v is not None), low)
        high = next((v for v in (meta.le, bounds.get("maximum")) if v is not None), high)
    return low, high
