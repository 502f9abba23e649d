"""The configuration file and the API token: the public surface of reading `jatos-sync.yaml`.

This module owns the values the rest of the program uses (frozen dataclasses: `Config`,
`ServerConfig`, `WatchConfig`, `MappingConfig`), loading the file (size, encoding, permission
bits), and finding and checking the API token. The keys themselves are declared once in
config_spec.py; config_reader.py turns YAML into these values. Both import msgspec and
PyYAML, so they are imported only when a configuration is read, never by `--version`.

Every problem becomes a `ConfigError` whose message names the file, the 1-based line and the
key path (`mappings[1].study`, list indexes count from 0) and says what was expected. No
input — broken YAML, odd types, huge numbers, alias bombs, bytes that are not UTF-8 — may
end in anything else.

What it must not do: talk to the server, create folders or state, configure logging, or ever
put a token into a message, a `repr` or an exception. Token *format* is checked offline here
(docs/jatos-api.md §2); whether the server accepts the token is `client.py`'s business.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
# The JSON Schema of the file (derived from config_spec.py by config_doc.py), for editors.
SCHEMA_PATH = Path(__file__).with_name("jatos-sync.schema.json")
_MAX_TOKEN_FILE_BYTES = 4096
_TOKEN_BODY = re.compile(r"[A-Za-z0-9]{31}")  # _TOKEN_RANDOM_LENGTH characters


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
class WatchConfig:  # config_spec.Watch declares the meanings and the defaults
    debounce_s: float
    delete_delay_s: float
    reconcile_interval_s: float
    polling: str
    poll_interval_s: float


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
    from jatos_sync.config_reader import read  # msgspec and PyYAML: only when a file is read

    return read(text, path=path, mode=mode)


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


def _quote(text: str) -> str:
    """A value for a message: short, escaped, and never a token."""
    if TOKEN_PREFIX in text:
        return "a value that looks like an API token (not shown)"
    if len(text) > 60:
        text = text[:57] + "…"
    return repr(text)
