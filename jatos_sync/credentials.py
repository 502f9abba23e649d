"""Finding and checking the API token; keeping secrets out of synced folders.

This module owns the token (`Token`, which never shows the secret), the offline check of
its format (docs/jatos-api.md §2.1), the order of its sources (`load_token`: inline token,
token_file, the systemd credential, then the variable named by token_env), reading the
secret files, and `keep_out`, the rule that keeps the configuration file and the token file
out of the folders it syncs (docs/safety.md, rule 9).

What it must not do: talk to the server (whether JATOS accepts the token is `client.py`'s
business), read the configuration file (config.py), or ever put a token into a message, a
`repr` or an exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jatos_sync.errors import ConfigError
from jatos_sync.paths import is_inside, resolved

if TYPE_CHECKING:
    from jatos_sync.config import MappingConfig, ServerConfig

DEFAULT_TOKEN_ENV = "JATOS_TOKEN"  # noqa: S105 -- a variable name, not a secret
CREDENTIAL_NAME = "jatos-token"  # systemd: LoadCredential=jatos-token:/path/to/file

TOKEN_PREFIX = "jap_"  # noqa: S105 -- the public prefix, not a secret
TOKEN_LENGTH = 41  # "jap_" + 31 random + 6 checksum (docs/jatos-api.md §2.1)
_TOKEN_RANDOM_LENGTH = 31
_COPY_AGAIN = "copy it again from JATOS: your user menu → API tokens"
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
    """The 6-character checksum JATOS appends to the random part (docs/jatos-api.md §2.1)."""
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


def load_token(server: ServerConfig, *, environ: Mapping[str, str] = os.environ) -> Token:
    """Find the API token: inline token, token_file, systemd credential, then the env var.

    The first source that is configured or present is used; if it is broken, that is an
    error (never a silent fall-through to the next source).
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


def keep_out(mapping: MappingConfig, paths: Sequence[Path]) -> MappingConfig:
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
    from jatos_sync.ignore import literal_pattern  # pathspec: only when a file is read

    # The name as a literal pattern, then anything after it (copies such as `.bak`).
    extra = [literal_pattern(name) + "*" for name in dict.fromkeys(names) if name != "."]
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
        raise ConfigError(f"{what} {path} cannot be read: {os_reason(exc)}") from None
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
        raise ConfigError(f"{what} {path} cannot be read: {os_reason(exc)}") from None
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


def os_reason(exc: BaseException) -> str:
    """What went wrong with a file, for a message: the OS's reason in lower case."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc)
