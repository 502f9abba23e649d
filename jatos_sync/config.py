"""The configuration file (PRODUCT.md §4) and the API token.

This module owns reading `jatos-sync.yaml` into frozen dataclasses, validating every key, and
finding and checking the API token. Every problem becomes a `ConfigError` whose message names
the file, the 1-based line and the key path (`mappings[1].study`, list indexes count from 0)
and says what was expected. No input — broken YAML, odd types, huge numbers, alias bombs,
bytes that are not UTF-8 — may end in anything else.

How: `yaml.compose()` with the safe loader gives a node tree with line marks; this module
walks that tree itself (it never calls `yaml.load`, so no Python object is ever built from
tags). YAML merge keys (`<<: *base`) are honoured, so anchors can share settings.

What it must not do: talk to the server, create folders or state, configure logging, or ever
put a token into a message, a `repr` or an exception. Token *format* is checked offline here
(JATOS_ASSETS_API.md §1.1); whether the server accepts the token is `client.py`'s business.

Semantics worth knowing:
- An optional key whose value is empty (`key:` or `key: null`) takes its default.
- `defaults:` supplies delete/backup/ignore/max_delete/max_delete_percent for every mapping;
  a mapping's own `ignore` patterns are added after the default ones (so a mapping can
  re-include a file with `!pattern`), the other keys replace the default.
- Relative paths (folder, token_file, ca_bundle, state_dir) are relative to the directory
  of the configuration file; `~` is expanded. Paths are stored absolute and normalised.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import hmac
import math
import os
import re
import stat
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pathspec
import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from jatos_sync.errors import ConfigError
from jatos_sync.paths import is_inside, resolved

CONFIG_ENV = "JATOS_SYNC_CONFIG"
DEFAULT_CONFIG_NAME = "jatos-sync.yaml"
DEFAULT_TOKEN_ENV = "JATOS_TOKEN"  # noqa: S105 -- a variable name, not a secret
CREDENTIAL_NAME = "jatos-token"  # systemd: LoadCredential=jatos-token:/path/to/file

TOKEN_PREFIX = "jap_"  # noqa: S105 -- the public prefix, not a secret
TOKEN_LENGTH = 41  # "jap_" + 31 random + 6 checksum (JATOS_ASSETS_API.md §1.1)
_TOKEN_RANDOM_LENGTH = 31
_COPY_AGAIN = "copy it again from JATOS: your user menu → API tokens"

# Reading a file may visit at most this many nodes. Aliases share nodes, so a small file can
# stand for an enormous tree (a "billion laughs" document); the budget stops the walk early.
NODE_BUDGET = 100_000
_MAX_CONFIG_BYTES = 1024 * 1024
_MAX_TOKEN_FILE_BYTES = 4096
_MAX_STUDY_ID = 2**63 - 1  # JATOS study IDs are Java longs (JATOS_ASSETS_API.md §1.5)
_MAX_NAME_LENGTH = 100

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_MERGE = _TAG + "merge"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_STUDY_ID = re.compile(r"[0-9]{1,19}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN_BODY = re.compile(r"[A-Za-z0-9]{31}")  # _TOKEN_RANDOM_LENGTH characters
_DURATION_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*(ms|s|m|h)\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")

_TOP_KEYS = ("server", "state_dir", "watch", "defaults", "mappings")
_SERVER_KEYS = (
    "url",
    "token_env",
    "token_file",
    "token",
    "timeout",
    "retries",
    "concurrency",
    "verify_tls",
    "ca_bundle",
)
_WATCH_KEYS = ("debounce", "delete_delay", "reconcile_interval", "polling", "poll_interval")
_POLICY_KEYS = ("delete", "backup", "ignore", "max_delete", "max_delete_percent")
_MAPPING_KEYS = ("name", "folder", "study", *_POLICY_KEYS)
_POLLING = ("auto", "always", "never")


# --------------------------------------------------------------------------------------------
# The token
# --------------------------------------------------------------------------------------------


class Token:
    """An API token. Only `reveal()` gives the secret; every other view hides it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the Authorization header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        shown = f"{TOKEN_PREFIX}…" if self._value.startswith(TOKEN_PREFIX) else "…"
        return f"Token({shown}, {len(self._value)} chars)"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        # f"{token}" and format(token, "s") must not reach the str's own __format__.
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return hmac.compare_digest(
            self._value.encode("utf-8", "surrogatepass"),
            other._value.encode("utf-8", "surrogatepass"),
        )

    def __hash__(self) -> int:
        return hash(self._value)


def token_checksum(random_part: str) -> str:
    """The 6-character checksum JATOS appends to the random part (JATOS_ASSETS_API.md §1.1)."""
    return hashlib.md5(random_part.encode("utf-8"), usedforsecurity=False).hexdigest()[:6]


def check_token_format(value: str, *, source: str) -> Token:
    """Check offline that `value` has the shape of a JATOS API token; never echo it.

    Surrounding whitespace (a trailing newline in a file) is stripped. `source` says where
    the value came from ("$JATOS_TOKEN", "token file /x/y", ...) and starts the message.
    """
    token = value.strip()
    why: str | None = None
    if not token:
        why = "it is empty"
    elif token.startswith("Bearer "):
        why = "it starts with 'Bearer '; give only the token, which starts with jap_"
    elif not token.startswith(TOKEN_PREFIX):
        why = "it does not start with jap_ (JATOS API tokens do)"
    elif len(token) != TOKEN_LENGTH:
        why = f"it has {len(token)} characters instead of {TOKEN_LENGTH}"
    else:
        random_part = token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _TOKEN_RANDOM_LENGTH]
        checksum = token[len(TOKEN_PREFIX) + _TOKEN_RANDOM_LENGTH :]
        if not _TOKEN_BODY.fullmatch(random_part):
            why = "it contains characters other than letters and digits"
        elif not hmac.compare_digest(checksum, token_checksum(random_part)):
            why = "its checksum does not match, so it was mistyped or truncated"
    if why is not None:
        raise ConfigError(f"{source}: not a valid JATOS API token: {why}; {_COPY_AGAIN}.")
    return Token(token)


# --------------------------------------------------------------------------------------------
# The configuration values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    url: str  # base URL, no trailing "/", may have a path prefix
    token_env: str
    token_file: Path | None
    inline_token: Token | None
    timeout_s: float  # per request, connect and read
    retries: int  # for connection errors, timeouts, 502/503/504
    concurrency: int  # parallel uploads
    verify_tls: bool
    ca_bundle: Path | None


@dataclass(frozen=True)
class WatchConfig:
    debounce_s: float = 0.3  # quiet period before a pass
    delete_delay_s: float = 2.0  # deletions wait this long (an editor may recreate the file)
    reconcile_interval_s: float = 600.0  # full reconcile even without events
    polling: str = "auto"  # auto | always | never
    poll_interval_s: float = 1.0


@dataclass(frozen=True)
class MappingConfig:
    name: str
    folder: Path  # absolute; not required to exist (a missing folder is a safety stop, §7)
    study: str  # numeric ID ("42") or lower-case UUID
    ignore: tuple[str, ...]  # gitignore patterns, defaults' patterns first
    delete: bool
    backup: bool
    max_delete: int
    max_delete_percent: float
    line: int  # line of this mapping in the file, for messages


@dataclass(frozen=True)
class Config:
    path: Path  # absolute path of the configuration file
    server: ServerConfig
    mappings: tuple[MappingConfig, ...]
    state_dir: Path | None  # None: state.py picks the default
    watch: WatchConfig

    def select(self, names: Sequence[str]) -> tuple[MappingConfig, ...]:
        """The mappings named in `names` (in file order); all of them when `names` is empty."""
        if not names:
            return self.mappings
        known = [m.name for m in self.mappings]
        unknown = [n for n in dict.fromkeys(names) if n not in known]
        if unknown:
            listed = ", ".join(_quote(n) for n in unknown)
            noun = "mapping" if len(unknown) == 1 else "mappings"
            raise ConfigError(
                f"{self.path}: no {noun} named {listed}; the mappings are: "
                + ", ".join(_quote(n) for n in known)
            )
        wanted = set(names)
        return tuple(m for m in self.mappings if m.name in wanted)


@dataclass(frozen=True)
class _Policy:
    delete: bool = True
    backup: bool = True
    ignore: tuple[str, ...] = ()
    max_delete: int = 500
    max_delete_percent: float = 50.0


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """`$JATOS_SYNC_CONFIG` if set, else `./jatos-sync.yaml` (PRODUCT.md §3)."""
    value = environ.get(CONFIG_ENV, "")
    if value:
        return Path(value).expanduser()
    return Path(DEFAULT_CONFIG_NAME)


def load_config(path: Path) -> Config:
    """Read and validate the configuration file at `path`."""
    shown = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"{shown}: no such configuration file; create one with `jatos-sync init`, "
            f"or name another with -c FILE or ${CONFIG_ENV}"
        ) from None
    except PermissionError:
        raise ConfigError(f"{shown}: cannot be read: permission denied") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{shown}: cannot be read: {_os_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{shown}: is a directory; expected a YAML configuration file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{shown}: is not a regular file; expected a YAML configuration file")
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_CONFIG_BYTES + 1)
    except PermissionError:
        raise ConfigError(f"{shown}: cannot be read: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot be read: {_os_reason(exc)}") from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown}: is larger than 1 MiB; that is not a configuration file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{shown}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} in column {column}); "
            "save the file as UTF-8"
        ) from None
    # Windows reports synthetic mode bits that say nothing about who can read the file, so
    # the group/other rule for an inline token applies to POSIX systems only.
    mode = stat.S_IMODE(info.st_mode) if os.name == "posix" else 0o600
    return parse_config(text, path=path, mode=mode)


def parse_config(text: str, *, path: Path, mode: int = 0o600) -> Config:
    """Validate configuration `text` as if read from `path` with permission bits `mode`.

    Relative paths in the text are resolved against `path`'s directory; `mode` decides
    whether an inline token is accepted (only when group and others have no permission).
    """
    absolute = Path(os.path.abspath(path))
    reader = _Reader(shown=str(path), base_dir=absolute.parent, mode=mode)
    root = reader.compose(text)
    try:
        return reader.config(root, absolute)
    except RecursionError:
        # Only merge keys can nest the walk deeper than the schema: `<<: *a` where a merges b...
        raise reader.error(None, "", "merge keys (<<) are chained too deeply") from None


def load_token(server: ServerConfig, *, environ: Mapping[str, str] = os.environ) -> Token:
    """Find the API token: inline token, token_file, systemd credential, then the env var.

    The first source that is configured or present is used; if it is broken, that is an
    error (never a silent fall-through to the next source). PRODUCT.md §4 gives the order.
    """
    if server.inline_token is not None:
        return server.inline_token
    if server.token_file is not None:
        return token_from_file(server.token_file)
    credentials_dir = environ.get("CREDENTIALS_DIRECTORY", "")
    if credentials_dir:
        credential = Path(credentials_dir) / CREDENTIAL_NAME
        if os.path.lexists(credential):
            # systemd makes credentials readable by the service user only; no mode check.
            text = _read_secret_file(credential, what="systemd credential", check_mode=False)
            return check_token_format(text, source=f"the systemd credential {CREDENTIAL_NAME}")
    value = environ.get(server.token_env)
    if value is not None:
        return check_token_format(value, source=f"${server.token_env}")
    raise ConfigError(
        "no JATOS API token found. Give it in one of three ways: "
        f"`export {server.token_env}=…` (the variable named by server.token_env); "
        "a file readable only by you (chmod 600) named by server.token_file; "
        f"or, for a systemd service, LoadCredential={CREDENTIAL_NAME}:/path/to/token. "
        "Create a token in JATOS: your user menu → API tokens"
    )


def _keep_out(mapping: MappingConfig, paths: Sequence[Path]) -> MappingConfig:
    """Add ignore rules for each of `paths` that lies inside the mapping's folder.

    Study assets are served to anyone who runs the study: the config file (which may hold
    an inline token) and the token file must never become one, nor must copies of them kept
    next to them (`jatos-sync.yaml.bak`, which `init --force` writes, or `token.old`), so
    the rule covers the file's name followed by anything.

    "Inside" is decided resolved, symlinks followed (docs/safety.md, rule 9): a file spelled
    through a symlink to the folder, or in a folder spelled through one, is inside. The
    rules name the file as the scan sees it, relative to the folder as configured: by its
    resolved path, and by its path as spelled wherever that lies lexically below the folder
    as spelled or resolved (the scan also sees a file through a symlinked directory inside
    the folder). A hard link, or a link inside the folder that no spelling passes through,
    is not caught here; the upload refuses any file that holds the token
    (`client.JatosClient`).
    """
    folder, real_folder = Path(os.path.abspath(mapping.folder)), resolved(mapping.folder)
    names: list[str] = []
    for path in paths:
        spelled = Path(os.path.abspath(path))
        real = resolved(spelled)
        if is_inside(spelled, folder):
            names.append(real.relative_to(real_folder).as_posix())
        # The other names the scan may see it by (through a link inside the folder).
        for outer in (folder, real_folder):
            if spelled.is_relative_to(outer):
                names.append(spelled.relative_to(outer).as_posix())
    extra = [
        # An anchored, literal gitignore pattern for the name, then anything after it.
        "/" + re.sub(r"([\\*?\[\]!# ])", r"\\\1", name) + "*"
        for name in dict.fromkeys(names)
        if name != "."
    ]
    if not extra:
        return mapping
    return dataclasses.replace(mapping, ignore=tuple(dict.fromkeys((*mapping.ignore, *extra))))


def token_from_file(path: Path) -> Token:
    """The token in `path`, a file that group and others must not be able to read."""
    text = _read_secret_file(path, what="token file", check_mode=True)
    return check_token_format(text, source=f"token file {path}")


def _read_secret_file(path: Path, *, what: str, check_mode: bool) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"{what} {path} does not exist; put the token there (chmod 600) "
            "or remove token_file from the configuration"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {_os_reason(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if check_mode and os.name == "posix" and info.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} can be accessed by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
        )
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {_os_reason(exc)}") from None
    if len(data) > _MAX_TOKEN_FILE_BYTES:
        raise ConfigError(f"{what} {path} is too large to hold just a token")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text; it should hold just the token"
        ) from None
    if not text.strip():
        raise ConfigError(f"{what} {path} is empty; put the token (jap_…) in it")
    return text


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc)


# --------------------------------------------------------------------------------------------
# Walking the YAML node tree
# --------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    """A value for a message: short, escaped, and never a token."""
    if TOKEN_PREFIX in text:
        return "a value that looks like an API token (not shown)"
    if len(text) > 60:
        text = text[:57] + "…"
    return repr(text)


def _key_label(name: str) -> str:
    if _SIMPLE_KEY.fullmatch(name) and TOKEN_PREFIX not in name:
        return name
    return f"[{_quote(name)}]"


def _join(path: str, key: str) -> str:
    label = _key_label(key)
    if not path:
        return label
    return path + label if label.startswith("[") else f"{path}.{label}"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 1


def _describe(node: Node, *, secret: bool = False) -> str:
    """What the file holds at `node`, for "expected X, got Y"."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag, raw = node.tag, str(node.value)
    if tag == _NULL:
        return "nothing (an empty value)"
    if secret:
        return "text" if tag == _STR else "a value of the wrong type"
    if tag == _STR:
        return f"the text {_quote(raw)}" if raw else "an empty text"
    if tag in (_BOOL, _INT, _FLOAT):
        shown = raw if len(raw) <= 40 else raw[:37] + "…"
        if tag == _BOOL and raw not in ("true", "false"):
            meaning = "true" if raw.lower() in ("yes", "on", "true") else "false"
            return f"{shown} (which YAML reads as {meaning})"
        return shown
    if tag == _TAG + "timestamp":
        return f"the date {_quote(raw)}"
    return f"{_quote(raw)} tagged {tag.replace(_TAG, '!!')}"


def _seconds(value: float) -> str:
    if value >= 3600 and value % 3600 == 0:
        return f"{value / 3600:g} h"
    if value >= 60 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"


@dataclass
class _Section:
    """One mapping of the file, with its key path and where a missing key is reported."""

    reader: _Reader
    path: str
    line: int
    entries: dict[str, tuple[Node, Node]]

    def key(self, name: str) -> str:
        return _join(self.path, name)

    def get(self, name: str) -> Node | None:
        """The value node of `name`, or None when it is absent or empty (null)."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        value = entry[1]
        if isinstance(value, ScalarNode) and value.tag == _NULL:
            return None
        return value

    def require(self, name: str, expected: str) -> Node:
        value = self.get(name)
        if value is not None:
            return value
        entry = self.entries.get(name)
        if entry is not None:
            raise self.reader.error(entry[1], self.key(name), f"expected {expected}, got nothing")
        raise self.reader.error(
            self.line, self.key(name), f"required key is missing; expected {expected}"
        )


# Where a key belongs, for "unknown key" messages about keys put at the wrong level.
_HOMES = {
    **dict.fromkeys(_SERVER_KEYS, "under server:"),
    **dict.fromkeys(_WATCH_KEYS, "under watch:"),
    **dict.fromkeys(_POLICY_KEYS, "in an entry of mappings: (or under defaults:)"),
    **dict.fromkeys(("name", "folder", "study"), "in an entry of mappings:"),
    **dict.fromkeys(_TOP_KEYS, "at the top level of the file"),
}


class _Reader:
    """Validates one document; knows the file's name, directory and permission bits."""

    def __init__(self, *, shown: str, base_dir: Path, mode: int) -> None:
        self.shown = shown
        self.base_dir = base_dir
        self.mode = mode
        self.visits = 0
        self._constructor = SafeConstructor()

    # -- errors and the node budget ------------------------------------------------------

    def error(self, where: Node | int | None, path: str, message: str) -> ConfigError:
        line = _line(where) if isinstance(where, Node) else where
        parts = [f"{self.shown}:{line}" if line else self.shown]
        if path:
            parts.append(path)
        parts.append(message)
        return ConfigError(": ".join(parts))

    def visit(self, node: Node) -> None:
        self.visits += 1
        if self.visits > NODE_BUDGET:
            raise self.error(
                node,
                "",
                f"too many nested aliases: reading this file means visiting more than "
                f"{NODE_BUDGET} values; use fewer anchors (&) and aliases (*)",
            )

    # -- YAML ----------------------------------------------------------------------------

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            raise self._syntax_error(exc) from None
        except ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            character = exc.character
            code = character if isinstance(character, int) else ord(str(character)[:1] or " ")
            raise self.error(
                line,
                "",
                f"YAML cannot contain the character U+{code:04X} "
                "(a control character or an unpaired surrogate); remove it",
            ) from None
        except yaml.YAMLError as exc:
            raise self.error(None, "", f"not valid YAML: {type(exc).__name__}") from None
        except RecursionError:
            raise self.error(None, "", "the YAML is nested too deeply") from None

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> ConfigError:
        # Built from the parts, never str(exc): the snippet it quotes could hold a token.
        mark = exc.problem_mark or exc.context_mark
        where = f"{self.shown}:{mark.line + 1}:{mark.column + 1}" if mark else self.shown
        problem = exc.problem or "invalid YAML"
        if exc.context:
            context_line = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
            problem = f"{exc.context}{context_line}, {problem}"
        if "expected a single document" in problem:
            problem += "; the file must hold exactly one YAML document (no second '---')"
        return ConfigError(f"{where}: YAML syntax error: {problem}")

    def scalar(self, node: Node, path: str) -> object:
        """The Python value of a scalar node (str, None, bool, int, float), else `node`."""
        if not isinstance(node, ScalarNode):
            return node
        tag = node.tag
        try:
            if tag == _STR:
                return str(node.value)
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return self._constructor.construct_yaml_bool(node)
            if tag == _INT:
                return self._constructor.construct_yaml_int(node)
            if tag == _FLOAT:
                return self._constructor.construct_yaml_float(node)
        except (ValueError, ArithmeticError, LookupError, TypeError):
            # An integer with more digits than Python converts, or an explicit tag on a value
            # that does not fit it (`!!int abc`, `!!bool maybe`).
            kind = "true or false" if tag == _BOOL else "a number (too large or malformed)"
            raise self.error(
                node, path, f"cannot read {_quote(str(node.value))} as {kind}"
            ) from None
        return node  # a date, !!binary, a custom tag...: never what a key expects

    def mapping(
        self, node: Node, path: str, line: int, known: Sequence[str], expected: str
    ) -> _Section:
        if not isinstance(node, MappingNode):
            raise self.error(node, path, f"expected {expected}, got {_describe(node)}")
        entries = self._flatten(node, path, set())
        for name, (key_node, _value) in sorted(entries.items(), key=lambda e: _line(e[1][0])):
            if name not in known:
                raise self.error(key_node, _join(path, name), self._unknown(name, known))
        return _Section(self, path, line, entries)

    def _unknown(self, name: str, known: Sequence[str]) -> str:
        home = _HOMES.get(name)
        if home is not None:
            return f"unknown key here; {name} belongs {home}"
        close = difflib.get_close_matches(name.lower().replace("-", "_"), known, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean '{close[0]}'?"
        return "unknown key; the keys allowed here are: " + ", ".join(known)

    def _flatten(
        self, node: MappingNode, path: str, active: set[int]
    ) -> dict[str, tuple[Node, Node]]:
        """Key name → (key node, value node), resolving merge keys (`<<: *anchor`)."""
        if id(node) in active:
            raise self.error(node, path, "a merge key (<<) refers to a mapping that contains it")
        active.add(id(node))
        merged: dict[str, tuple[Node, Node]] = {}
        explicit: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            self.visit(key_node)
            self.visit(value_node)
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    self.visit(source)
                    if not isinstance(source, MappingNode):
                        raise self.error(
                            source,
                            path,
                            "a merge key (<<) takes a mapping or a list of mappings, "
                            f"got {_describe(source)}",
                        )
                    for name, entry in self._flatten(source, path, active).items():
                        merged.setdefault(name, entry)  # earlier sources win (YAML merge spec)
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.error(
                    key_node, path, f"keys must be plain names, got {_describe(key_node)}"
                )
            name = str(key_node.value)
            if name in explicit:
                first = _line(explicit[name][0])
                raise self.error(
                    key_node, _join(path, name), f"duplicate key (first given on line {first})"
                )
            explicit[name] = (key_node, value_node)
        active.discard(id(node))
        return {**merged, **explicit}

    def sequence(self, node: Node, path: str, expected: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, path, f"expected {expected}, got {_describe(node)}")
        items: list[Node] = list(node.value)
        for item in items:
            self.visit(item)
        return items

    # -- typed values --------------------------------------------------------------------

    def string(self, node: Node, path: str, expected: str, *, secret: bool = False) -> str:
        value = self.scalar(node, path)
        if not isinstance(value, str):
            raise self.error(
                node, path, f"expected {expected}, got {_describe(node, secret=secret)}"
            )
        return value

    def boolean(self, node: Node, path: str) -> bool:
        value = self.scalar(node, path)
        if isinstance(value, bool):
            return value
        hint = ""
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            hint = " (remove the quotes)"
        raise self.error(node, path, f"expected true or false, got {_describe(node)}{hint}")

    def integer(self, node: Node, path: str, low: int, high: int | None) -> int:
        value = self.scalar(node, path)
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and value >= low and (high is None or value <= high):  # type: ignore[operator]
            return value  # type: ignore[return-value]
        span = f"from {low} to {high}" if high is not None else f"of {low} or more"
        raise self.error(node, path, f"expected a whole number {span}, got {_describe(node)}")

    def number(self, node: Node, path: str, low: float, high: float, expected: str) -> float:
        value = self.scalar(node, path)
        if isinstance(value, str) and value.strip().endswith("%"):
            value = _to_float(value.strip()[:-1])
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _to_float(value)
            if number is not None and low <= number <= high:
                return number
        raise self.error(node, path, f"expected {expected}, got {_describe(node)}")

    def duration(self, node: Node, path: str, low: float, high: float) -> float:
        value = self.scalar(node, path)
        seconds: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = _to_float(value)
        elif isinstance(value, str):
            seconds = _parse_duration(value)
        if seconds is not None and low <= seconds <= high:
            return seconds
        raise self.error(
            node,
            path,
            f"expected a duration from {_seconds(low)} to {_seconds(high)}: a number of seconds "
            f'such as 30, or text such as "500ms", "30s", "2m", got {_describe(node)}',
        )

    def path(self, node: Node, path: str, what: str) -> Path:
        text = self.string(node, path, what)
        if not text.strip():
            raise self.error(node, path, f"expected {what}, got an empty text")
        if "\x00" in text:
            raise self.error(node, path, "a path cannot contain a NUL character")
        try:
            result = Path(text).expanduser()
        except RuntimeError:
            raise self.error(
                node, path, f"cannot expand ~ in {_quote(text)}: unknown user or no home directory"
            ) from None
        if not result.is_absolute():
            result = self.base_dir / result
        return Path(os.path.normpath(result))

    # -- sections ------------------------------------------------------------------------

    def config(self, root: Node | None, absolute: Path) -> Config:
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL):
            raise self.error(
                None,
                "",
                "the file is empty; expected server: and mappings: (PRODUCT.md §4), "
                "or write a new one with `jatos-sync init`",
            )
        top = self.mapping(
            root, "", _line(root), _TOP_KEYS, "a mapping with the keys server: and mappings:"
        )
        server_node = top.require("server", "a mapping with at least url:")
        server = self.server(server_node, _key_line(top, "server"))
        state_dir_node = top.get("state_dir")
        state_dir = (
            None if state_dir_node is None else self.path(state_dir_node, "state_dir", "a folder")
        )
        watch_node = top.get("watch")
        watch = (
            WatchConfig() if watch_node is None else self.watch(watch_node, _key_line(top, "watch"))
        )
        defaults_node = top.get("defaults")
        defaults = _Policy()
        if defaults_node is not None:
            section = self.mapping(
                defaults_node,
                "defaults",
                _key_line(top, "defaults"),
                _POLICY_KEYS,
                "a mapping of " + ", ".join(_POLICY_KEYS),
            )
            defaults = self.policy(section, defaults)
        mappings_node = top.require("mappings", "a list of mappings (each with folder: and study:)")
        mappings = self.mappings(mappings_node, defaults)
        secrets = [absolute] + ([server.token_file] if server.token_file else [])
        mappings = tuple(_keep_out(m, secrets) for m in mappings)
        return Config(absolute, server, mappings, state_dir, watch)

    def server(self, node: Node, line: int) -> ServerConfig:
        sec = self.mapping(node, "server", line, _SERVER_KEYS, "a mapping with at least url:")
        url = self.url(sec.require("url", "the base URL of JATOS, e.g. https://jatos.example.org"))

        token_env = DEFAULT_TOKEN_ENV
        env_node = sec.get("token_env")
        if env_node is not None:
            token_env = self.string(
                env_node, "server.token_env", "the name of an environment variable", secret=True
            )
            if TOKEN_PREFIX in token_env:
                raise self.error(
                    env_node,
                    "server.token_env",
                    "this looks like the token itself; token_env takes the *name* of the "
                    "environment variable that holds it (e.g. JATOS_TOKEN)",
                )
            if not _ENV_NAME.fullmatch(token_env):
                raise self.error(
                    env_node,
                    "server.token_env",
                    f"expected the name of an environment variable (letters, digits, _), "
                    f"got {_describe(env_node)}",
                )

        token_file_node = sec.get("token_file")
        token_file = (
            None
            if token_file_node is None
            else self.path(
                token_file_node, "server.token_file", "the path of a file holding the token"
            )
        )

        inline_token = None
        token_node = sec.get("token")
        if token_node is not None:
            inline_token = self.inline_token(token_node)

        timeout_node = sec.get("timeout")
        timeout_s = (
            30.0
            if timeout_node is None
            else self.duration(timeout_node, "server.timeout", 0.001, 3600.0)
        )
        retries_node = sec.get("retries")
        retries = (
            4 if retries_node is None else self.integer(retries_node, "server.retries", 0, 100)
        )
        concurrency_node = sec.get("concurrency")
        concurrency = (
            4
            if concurrency_node is None
            else self.integer(concurrency_node, "server.concurrency", 1, 32)
        )
        verify_node = sec.get("verify_tls")
        verify_tls = True if verify_node is None else self.boolean(verify_node, "server.verify_tls")

        ca_bundle = None
        ca_node = sec.get("ca_bundle")
        if ca_node is not None:
            ca_bundle = self.path(
                ca_node, "server.ca_bundle", "the path of a CA certificate file (PEM)"
            )
            try:
                exists = ca_bundle.exists()
            except (OSError, ValueError):
                exists = False
            if not exists:
                raise self.error(ca_node, "server.ca_bundle", f"{ca_bundle} does not exist")

        return ServerConfig(
            url=url,
            token_env=token_env,
            token_file=token_file,
            inline_token=inline_token,
            timeout_s=timeout_s,
            retries=retries,
            concurrency=concurrency,
            verify_tls=verify_tls,
            ca_bundle=ca_bundle,
        )

    def url(self, node: Node) -> str:
        key = "server.url"
        raw = self.string(node, key, "the base URL of JATOS, e.g. https://jatos.example.org")
        # A URL with "@" may carry a password: never echo it.
        got = _describe(node) if "@" not in raw else "a URL with '@' (not shown)"
        bad = f"expected the base URL of JATOS, e.g. https://jatos.example.org, got {got}"
        if not raw or not raw.isprintable() or any(c.isspace() for c in raw):
            raise self.error(node, key, bad + " (no spaces or control characters allowed)")
        try:
            parts = urlsplit(raw)
            _port = parts.port  # raises ValueError for a port that is not a number
            host = parts.hostname
        except ValueError:
            raise self.error(node, key, bad) from None
        if "@" in parts.netloc:
            raise self.error(
                node,
                key,
                "the URL must not contain a user name or password (user:pass@); "
                "the API token authenticates",
            )
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise self.error(node, key, bad)
        if parts.query or parts.fragment or "?" in raw or "#" in raw:
            raise self.error(
                node, key, "the URL must not contain a ?query or #fragment; give the base URL"
            )
        prefix = parts.path.rstrip("/")
        at = prefix.lower().find("/jatos/api")
        if at >= 0:
            base = f"{parts.scheme.lower()}://{parts.netloc}{prefix[:at]}"
            raise self.error(
                node,
                key,
                f"give the base URL of JATOS, without /jatos/api…: {_quote(base)}",
            )
        return f"{parts.scheme.lower()}://{parts.netloc}{prefix}"

    def inline_token(self, node: Node) -> Token:
        key = "server.token"
        value = self.string(node, key, "the API token as text (jap_…)", secret=True)
        if self.mode & 0o077:
            raise self.error(
                node,
                key,
                "an inline token is accepted only from a file that group and others cannot "
                f"read, and this file has mode {self.mode & 0o777:04o}; run "
                f"`chmod 600 {self.shown}`, or move the token to a file named by token_file "
                "(or to $JATOS_TOKEN)",
            )
        return check_token_format(value, source=f"{self.shown}:{_line(node)}: {key}")

    def watch(self, node: Node, line: int) -> WatchConfig:
        sec = self.mapping(
            node, "watch", line, _WATCH_KEYS, "a mapping of " + ", ".join(_WATCH_KEYS)
        )
        default = WatchConfig()

        def duration(key: str, fallback: float, low: float, high: float) -> float:
            value_node = sec.get(key)
            if value_node is None:
                return fallback
            return self.duration(value_node, sec.key(key), low, high)

        polling = default.polling
        polling_node = sec.get("polling")
        if polling_node is not None:
            value = self.scalar(polling_node, "watch.polling")
            if not isinstance(value, str) or value not in _POLLING:
                raise self.error(
                    polling_node,
                    "watch.polling",
                    f"expected one of {', '.join(_POLLING)}, got {_describe(polling_node)}",
                )
            polling = value
        return WatchConfig(
            debounce_s=duration("debounce", default.debounce_s, 0.0, 60.0),
            delete_delay_s=duration("delete_delay", default.delete_delay_s, 0.0, 3600.0),
            reconcile_interval_s=duration(
                "reconcile_interval", default.reconcile_interval_s, 1.0, 7 * 24 * 3600.0
            ),
            polling=polling,
            poll_interval_s=duration("poll_interval", default.poll_interval_s, 0.01, 3600.0),
        )

    def policy(self, sec: _Section, base: _Policy) -> _Policy:
        delete_node = sec.get("delete")
        backup_node = sec.get("backup")
        ignore_node = sec.get("ignore")
        max_node = sec.get("max_delete")
        percent_node = sec.get("max_delete_percent")
        return _Policy(
            delete=base.delete
            if delete_node is None
            else self.boolean(delete_node, sec.key("delete")),
            backup=base.backup
            if backup_node is None
            else self.boolean(backup_node, sec.key("backup")),
            ignore=base.ignore
            + (() if ignore_node is None else self.ignore(ignore_node, sec.key("ignore"))),
            max_delete=base.max_delete
            if max_node is None
            else self.integer(max_node, sec.key("max_delete"), 0, None),
            max_delete_percent=base.max_delete_percent
            if percent_node is None
            else self.number(
                percent_node,
                sec.key("max_delete_percent"),
                0.0,
                100.0,
                "a percentage from 0 to 100",
            ),
        )

    def ignore(self, node: Node, path: str) -> tuple[str, ...]:
        expected = 'a gitignore pattern or a list of them, e.g. ["*.psd", "drafts/"]'
        if isinstance(node, SequenceNode):
            items = [
                (item, f"{path}[{i}]") for i, item in enumerate(self.sequence(node, path, expected))
            ]
        else:
            items = [(node, path)]
        patterns: list[str] = []
        for item, item_path in items:
            pattern = self.string(item, item_path, "a gitignore pattern (text)")
            problem = _pattern_problem(pattern)
            if problem is not None:
                raise self.error(
                    item,
                    item_path,
                    f"{_quote(pattern)} is not a valid gitignore pattern: {problem}",
                )
            patterns.append(pattern)
        return tuple(patterns)

    def mappings(self, node: Node, defaults: _Policy) -> tuple[MappingConfig, ...]:
        expected = "a list of mappings, each starting with '- ' and holding folder: and study:"
        items = self.sequence(node, "mappings", expected)
        if not items:
            raise self.error(node, "mappings", f"expected {expected}, got an empty list")
        result: list[MappingConfig] = []
        by_name: dict[str, int] = {}
        by_study: dict[str, int] = {}
        for index, item in enumerate(items):
            path = f"mappings[{index}]"
            mapping, sec = self.mapping_entry(item, path, defaults)
            if mapping.name in by_name:
                other = by_name[mapping.name]
                explicit = "name" in sec.entries
                raise self.error(
                    _key_line(sec, "name"),
                    sec.key("name") if explicit else path,
                    f"{'the name' if explicit else 'the name taken from its folder,'} "
                    f"{_quote(mapping.name)} is already used by mappings[{other}] "
                    f"(line {result[other].line}); give each mapping its own name:",
                )
            if mapping.study in by_study:
                other = by_study[mapping.study]
                raise self.error(
                    _key_line(sec, "study"),
                    sec.key("study"),
                    f"study {mapping.study} is already synced by mappings[{other}] "
                    f"(line {result[other].line}); two folders cannot share one study",
                )
            by_name[mapping.name] = index
            by_study[mapping.study] = index
            result.append(mapping)
        return tuple(result)

    def mapping_entry(
        self, node: Node, path: str, defaults: _Policy
    ) -> tuple[MappingConfig, _Section]:
        sec = self.mapping(
            node, path, _line(node), _MAPPING_KEYS, "a mapping with folder: and study:"
        )
        folder_what = "the path of the local folder to sync"
        folder = self.path(sec.require("folder", folder_what), sec.key("folder"), folder_what)
        study = self.study(sec.require("study", _STUDY_EXPECTED), sec.key("study"))
        name_node = sec.get("name")
        if name_node is None:
            name = folder.name
            problem = _name_problem(name)
            if problem is not None:
                raise self.error(
                    sec.line,
                    path,
                    f"cannot use the folder's name {_quote(name)} as the mapping's name "
                    f"({problem}); add name:",
                )
        else:
            name = self.string(name_node, sec.key("name"), "a name (text)")
            problem = _name_problem(name)
            if problem is not None:
                raise self.error(
                    name_node, sec.key("name"), f"{_quote(name)} cannot be a name: {problem}"
                )
        policy = self.policy(sec, defaults)
        mapping = MappingConfig(
            name=name,
            folder=folder,
            study=study,
            ignore=policy.ignore,
            delete=policy.delete,
            backup=policy.backup,
            max_delete=policy.max_delete,
            max_delete_percent=policy.max_delete_percent,
            line=sec.line,
        )
        return mapping, sec

    def study(self, node: Node, path: str) -> str:
        value = self.scalar(node, path)
        if isinstance(value, int) and not isinstance(value, bool):
            if 1 <= value <= _MAX_STUDY_ID:
                return str(value)
        elif isinstance(value, str):
            text = value.strip()
            if _STUDY_ID.fullmatch(text) and 1 <= int(text) <= _MAX_STUDY_ID:
                return str(int(text))
            if _UUID.fullmatch(text):
                # JATOS generates lower-case UUIDs; the lookup compares strings.
                return text.lower()
        raise self.error(node, path, f"expected {_STUDY_EXPECTED}, got {_describe(node)}")


_STUDY_EXPECTED = "a study ID (a whole number) or a study UUID"


def _key_line(sec: _Section, name: str) -> int:
    entry = sec.entries.get(name)
    return _line(entry[0]) if entry is not None else sec.line


def _to_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (ValueError, OverflowError, TypeError):
        return None
    return number if math.isfinite(number) else None


def _parse_duration(text: str) -> float | None:
    """Seconds in "500ms", "30s", "2m", "1h", "1m30s" or a bare "30"; None if malformed."""
    plain = _to_float(text) if re.fullmatch(r"\s*[0-9.]+\s*", text) else None
    if plain is not None:
        return plain
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text) or not math.isfinite(total):
        return None
    return total


def _name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > _MAX_NAME_LENGTH:
        return f"it is longer than {_MAX_NAME_LENGTH} characters"
    if name != name.strip():
        return "it starts or ends with a space"
    if not name.isprintable():
        return "it contains a control character"
    if "/" in name or "\\" in name:
        return "it contains a slash"
    if name.startswith("-"):
        return "it starts with '-', which the command line reads as an option"
    return None


def _pattern_problem(pattern: str) -> str | None:
    if "\n" in pattern or "\r" in pattern:
        return "a pattern is one line"
    if "\x00" in pattern:
        return "it contains a NUL character"
    try:
        with warnings.catch_warnings():
            # `re` warns (FutureWarning) about constructs pathspec cannot translate, such as
            # the POSIX class "[[:alpha:]]"; treat those as errors, but do not let a library
            # deprecation notice turn every pattern into one.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("error", FutureWarning)
            pathspec.GitIgnoreSpec.from_lines([pattern])
    except Exception as exc:  # pathspec raises ValueError, re.error and others for bad input
        reason = str(exc).strip() or type(exc).__name__
        if isinstance(exc, FutureWarning):
            reason = "it uses a construct pathspec cannot match, such as [[:alpha:]]"
        elif pattern.endswith("\\") and not pattern.endswith("\\\\"):
            reason = "it ends with a lone backslash"
        elif pattern.strip() == "!":
            reason = "'!' needs a pattern after it"
        return reason if TOKEN_PREFIX not in reason else "pathspec cannot read it"
    return None
