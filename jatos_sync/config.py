"""The configuration's public values, and reading `jatos-sync.yaml` from disk.

This module owns the values the rest of the program uses (frozen dataclasses: `Config`,
`ServerConfig`, `WatchConfig`, `MappingConfig`, `ResultsConfig`) and loading the file
(size, encoding, permission bits). The keys themselves are declared once in config_spec.py;
config_reader.py turns YAML into these values. Both import msgspec and PyYAML, so they are
imported only when a configuration is read, never by `--version`. The API token is
credentials.py's business.

Every problem becomes a `ConfigError` whose message names the file, the 1-based line and the
key path (`mappings[1].study`, list indexes count from 0) and says what was expected. No
input — broken YAML, odd types, huge numbers, alias bombs, bytes that are not UTF-8 — may
end in anything else.

What it must not do: talk to the server, create folders or state, configure logging, or ever
put a token into a message, a `repr` or an exception.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from jatos_sync.credentials import TOKEN_PREFIX, Token, os_reason
from jatos_sync.errors import ConfigError
from jatos_sync.paths import how_inside, is_inside

if TYPE_CHECKING:
    from jatos_sync.definition import Definition

CONFIG_ENV = "JATOS_SYNC_CONFIG"
DEFAULT_CONFIG_NAME = "jatos-sync.yaml"

_MAX_CONFIG_BYTES = 1024 * 1024
# The JSON Schema of the file (derived from config_spec.py by config_doc.py), for editors.
SCHEMA_PATH = Path(__file__).with_name("jatos-sync.schema.json")


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
class ResultsConfig:  # config_spec.Results declares the meanings and the defaults
    folder: Path  # absolute; outside every synced folder and the configured state folder
    every_s: float  # how often `watch` runs a results pass
    files: bool  # whether result files are downloaded too
    where: str  # "file:line: mappings[i].results.folder", for messages about the folder


@dataclass(frozen=True)
class MappingConfig:
    name: str
    folder: Path  # absolute; may be missing (a safety stop then: docs/safety.md, rule 1)
    study: str  # numeric ID ("42") or lower-case UUID
    ignore: tuple[str, ...]  # gitignore patterns, defaults' patterns first
    delete: bool
    backup: bool
    max_delete: int
    max_delete_percent: float
    line: int  # line of this mapping in the file, for messages
    create: bool = False  # create the study (study is a UUID) when the server has none
    definition: Definition | None = None  # the study itself, kept in step after the files
    delete_components: bool = False  # delete left-out components (with --yes), not deactivate
    results: ResultsConfig | None = None  # where its results are mirrored (`results:`)


@dataclass(frozen=True)
class Config:
    path: Path  # absolute path of the configuration file
    server: ServerConfig
    mappings: tuple[MappingConfig, ...]
    state_dir: Path | None  # None: state.py picks the default
    watch: WatchConfig

    def select(self, names: Sequence[str]) -> tuple[MappingConfig, ...]:
        """The mappings named in `names` (in file order); all of them when `names` is empty."""
        known = [m.name for m in self.mappings]
        if unknown := [n for n in dict.fromkeys(names) if n not in known]:
            noun = "mapping" if len(unknown) == 1 else "mappings"
            listed, mappings = ", ".join(map(_quote, unknown)), ", ".join(map(_quote, known))
            raise ConfigError(
                f"{self.path}: no {noun} named {listed}; the mappings are: {mappings}"
            )
        return tuple(m for m in self.mappings if not names or m.name in names)


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """`$JATOS_SYNC_CONFIG` if set, else `./jatos-sync.yaml`."""
    value = environ.get(CONFIG_ENV, "")
    return Path(value).expanduser() if value else Path(DEFAULT_CONFIG_NAME)


def load_config(path: Path) -> Config:
    """Read and validate the configuration file at `path`."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device could block the read
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(f"{path}: is {what}; expected a YAML configuration file")
        with path.open("rb") as stream:
            data = stream.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such configuration file; create one with `jatos-sync init`, "
            f"or name another with -c FILE or ${CONFIG_ENV}"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL character
        raise ConfigError(f"{path}: cannot be read: {os_reason(exc)}") from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: is larger than 1 MiB; that is not a configuration file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = (
            data.count(b"\n", 0, exc.start) + 1,
            exc.start - data.rfind(b"\n", 0, exc.start),
        )
        raise ConfigError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} in column {column}); "
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


def web_address(raw: str) -> tuple[str, str]:
    """(`scheme://host[:port]`, the path without a trailing "/") of an address of JATOS, the
    scheme in lower case; ValueError with the reason, in words, for one that cannot be."""
    if not raw.isprintable() or any(c.isspace() for c in raw):
        raise ValueError("the address must not contain spaces or control characters")
    try:
        parts = urlsplit(raw)
        _port = parts.port  # ValueError for a port that is not a number
    except ValueError:
        raise ValueError("the address has a port that is not a number") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("the address must start with https:// (or http://) and name a host")
    if "@" in parts.netloc:
        raise ValueError(
            "the address must not contain a user name or password; the API token authenticates"
        )
    return f"{parts.scheme.lower()}://{parts.netloc}", parts.path.rstrip("/")


def results_folder_problem(
    folder: Path, synced: Sequence[tuple[str, Path]], state: Path | None
) -> str | None:
    """Why participant data must not be mirrored into `folder`, or None: it lies inside a
    synced folder (`synced`: mapping name, folder) or the state folder, compared resolved,
    symlinks followed as they are now (docs/safety.md, rule 9)."""
    for name, synced_folder in synced:
        if is_inside(folder, synced_folder):
            return (
                f"the results folder {folder} is inside the synced folder {synced_folder} of "
                f"mapping {_quote(name)}{how_inside(folder, synced_folder)}, so participant "
                "data would be uploaded to the study, where anyone who runs it can load it; "
                "choose a folder outside every synced folder"
            )
    if state is not None and is_inside(folder, state):
        return (
            f"the results folder {folder} is inside the state folder {state}"
            f"{how_inside(folder, state)}; choose a folder of its own for the participants' data"
        )
    return None


def _quote(text: str) -> str:
    """A value for a message: short, escaped, and never a token."""
    if TOKEN_PREFIX in text:
        return "a value that looks like an API token (not shown)"
    if len(text) > 60:
        text = text[:57] + "…"
    return repr(text)
