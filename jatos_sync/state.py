"""What each mapping last synced, and its checksum cache, kept outside the synced folders.

Owns the state directory: one JSON file per mapping (written atomically, mode 0600, in 0700
directories), the location of backups and of the daemon's status file. A state file that is
missing, damaged or of an unknown schema yields an empty state and a warning: the state is a
hint that makes passes cheaper and safer, never something to trust blindly or to die on
(docs/safety.md, rule 11). An empty state is the safe direction: every server file then
counts as "not put there by this tool", so it is backed up before being overwritten or
deleted.

Must not: decide what to sync, talk to the server, or write inside a synced folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path

import structlog

from jatos_sync.errors import EXIT_PARTIAL, ConfigError, JatosSyncError, UnsafePathError
from jatos_sync.model import FileInfo, RelPath
from jatos_sync.paths import how_inside, is_inside, server_path
from jatos_sync.scan import ChecksumCache, digest_from_hex

STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # 1: no digests, no folder identity; read, then written as 2

_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._-]+")


class StateWriteError(JatosSyncError):
    """The state file could not be written (disk full, read-only or unwritable directory)."""

    exit_code = EXIT_PARTIAL


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where state lives unless configured: first match of

    $JATOS_SYNC_STATE_DIR; $STATE_DIRECTORY (set by systemd's `StateDirectory=`, first entry
    of a colon-separated list); $XDG_STATE_HOME/jatos-sync; ~/.local/state/jatos-sync.
    """
    explicit = environ.get("JATOS_SYNC_STATE_DIR", "")
    if explicit:
        return Path(explicit).expanduser()
    systemd = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative path there is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "jatos-sync"
    home = environ.get("HOME", "")
    base = Path(home) if home else Path.home()
    return base / ".local" / "state" / "jatos-sync"


def mapping_key(server_url: str, study: str, folder: Path) -> str:
    """A stable, file-name-safe key for one (server, study, folder) mapping.

    Readable prefix (the folder's name) plus a hash of all three, so two mappings never
    share state even when their folders have the same name.
    """
    absolute = os.path.abspath(folder)
    digest = sha256(f"{server_url.rstrip('/')}\n{study}\n{absolute}".encode()).hexdigest()
    name = _UNSAFE_CHARS_RE.sub("_", os.path.basename(absolute)).strip("._-")[:40]
    return f"{name or 'folder'}-{digest[:16]}"


@dataclass
class MappingState:
    """What this tool last put on the server (or found identical there), per path.

    `synced` entries carry the digest of the bytes this tool sent or read, when it knows
    them. `root` is the (device, inode) of the folder as last synced: a different folder at
    the same path (an unmounted drive, a replaced folder) is recognised by it
    (docs/safety.md, rule 1). `folds_case` is learnt once a pass sees that the server's
    file system ignores letter case (a JATOS on macOS or Windows, docs/jatos-api.md §9.4).
    `in_doubt` holds uploads whose answer never came (the connection was lost): the next
    listing tells whether the server stored them (`MappingSync._settle_in_doubt`).
    """

    synced: dict[RelPath, FileInfo] = field(default_factory=dict)
    cache: ChecksumCache = field(default_factory=ChecksumCache)
    root: tuple[int, int] | None = None
    folds_case: bool = False
    in_doubt: dict[RelPath, FileInfo] = field(default_factory=dict)


class StateStore:
    """The state directory. `root=None` means `default_state_dir()`.

    Nothing is created until the first `save`; directories it creates get mode 0700.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = default_state_dir() if root is None else root
        # Per key, the state as last read or written (synced entries, the cache object and
        # its change count), so an unchanged state is recognised without serialising it.
        self._clean: dict[str, tuple[object, ChecksumCache, int]] = {}

    def __repr__(self) -> str:
        return f"StateStore({str(self.root)!r})"

    def state_path(self, key: str) -> Path:
        return self.root / "mappings" / f"{_checked_key(key)}.json"

    def backup_dir(self, key: str) -> Path:
        """Where copies of server files are saved before they are overwritten or deleted."""
        return self.root / "backups" / _checked_key(key)

    def status_path(self, name: str | int | None = None) -> Path:
        """A `watch` daemon's status file, by `name` (default: this process's pid): each
        daemon has its own, so daemons on different mappings of one state folder coexist."""
        return self.status_dir() / f"{os.getpid() if name is None else name}.json"

    def status_dir(self) -> Path:
        return self.root / "daemons"

    def ensure_outside(self, folder: Path) -> None:
        """Raise `ConfigError` if the state directory lies inside the synced `folder`.

        State inside the folder would be uploaded as study assets and rewritten on every
        pass, which would trigger the next pass. Compared resolved, symlinks followed, so a
        state directory spelled through a link into the folder (or a folder spelled through
        a link) is caught too (docs/safety.md, rule 11).
        """
        if not is_inside(self.root, folder):
            return
        how = how_inside(self.root, folder)
        raise ConfigError(
            f"The state directory {self.root} is inside the synced folder {folder}{how}, so "
            "it would be uploaded to the study. Set state_dir in the configuration (or the "
            "environment variable JATOS_SYNC_STATE_DIR, when state_dir is not set) to a "
            "directory outside it."
        )

    def load(self, key: str) -> MappingState:
        """The saved state, or an empty one (logged as `state_rebuilt`) if it is unusable."""
        path = self.state_path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return MappingState()
        except OSError as exc:
            return _rebuilt(key, f"cannot read {path}: {exc.strerror or exc}")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return _rebuilt(key, f"{path} is not valid JSON ({exc.__class__.__name__})")
        problem, synced = _parse_synced(data)
        if problem is not None:
            return _rebuilt(key, f"{path}: {problem}")
        assert isinstance(data, dict)  # checked by _parse_synced
        state = MappingState(
            synced=synced,
            cache=ChecksumCache.from_json(data.get("cache"), paths={p: p for p in synced}),
            root=_parse_root(data.get("root")),
            folds_case=data.get("folds_case") is True,
            in_doubt=_parse_in_doubt(data.get("in_doubt")),
        )
        self._clean[key] = self._snapshot(state)
        return state

    @staticmethod
    def _fingerprint(state: MappingState) -> object:
        """What tells a changed `synced` from the one last read or written: the sum of a
        hash of every entry (digests too, which `==` on FileInfo leaves out), not a copy,
        which for a large folder would take more memory than the state itself."""
        total = 0
        for path, info in state.synced.items():
            total += hash((path, info.size, info.checksum, info.digest))
        doubts = sorted((p, i.size, i.checksum, i.digest) for p, i in state.in_doubt.items())
        return len(state.synced), total, state.root, state.folds_case, doubts

    def _snapshot(self, state: MappingState) -> tuple[object, ChecksumCache, int]:
        return self._fingerprint(state), state.cache, state.cache.generation

    def save(self, key: str, state: MappingState) -> None:
        """Replace the state file atomically (temp file, fsync, rename); mode 0600."""
        now, clean = self._snapshot(state), self._clean.get(key)
        if clean is not None and clean[0] == now[0] and clean[1] is now[1] and clean[2] == now[2]:
            return  # as last read or written: spare the serialising and the fsync
        path = self.state_path(key)
        document: dict[str, object] = {
            "version": STATE_VERSION,
            "synced": _entries_json(state.synced),
            "cache": state.cache.to_json(),
        }
        if state.in_doubt:
            document["in_doubt"] = _entries_json(state.in_doubt)
        if state.root is not None:
            document["root"] = list(state.root)
        if state.folds_case:
            document["folds_case"] = True
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            make_private_dirs(path.parent)
            write_private(path, payload)
        except OSError as exc:
            raise StateWriteError(
                f"Could not save the sync state to {path} ({exc.strerror or exc}). Free disk "
                f"space or make {path.parent} writable, or set JATOS_SYNC_STATE_DIR to a "
                "writable directory."
            ) from exc
        self._clean[key] = now


def _checked_key(key: str) -> str:
    # Keys come from mapping_key(); refuse anything that could escape the state directory.
    if not _KEY_RE.match(key):
        raise ValueError(f"not a valid state key: {key!r}")
    return key


def _rebuilt(key: str, reason: str) -> MappingState:
    structlog.get_logger().warning("state_rebuilt", key=key, reason=reason)
    return MappingState()


def _parse_synced(data: object) -> tuple[str | None, dict[RelPath, FileInfo]]:
    """(problem, synced): a problem means the whole file is distrusted."""
    if not isinstance(data, dict):
        return "not a JSON object", {}
    if data.get("version") not in _READABLE_VERSIONS:
        return f"unknown version {data.get('version')!r}", {}
    entries = data.get("synced")
    if not isinstance(entries, dict):
        return "'synced' is not an object", {}
    synced: dict[RelPath, FileInfo] = {}
    for name, value in entries.items():
        path = _clean_path(name)
        if path is None:
            return f"bad path {name!r} in 'synced'", {}
        info = _parse_entry(value)
        if info is None:
            return f"bad entry for {name!r} in 'synced'", {}
        synced[path] = info
    return None, synced


def _parse_entry(value: object) -> FileInfo | None:
    """`[size, adler32]` or `[size, adler32, digest hex]`, checked; None when malformed."""
    if type(value) is not list or not 2 <= len(value) <= 3:
        return None
    size, checksum = value[0], value[1]
    if not (type(size) is int and type(checksum) is int and size >= 0):
        return None
    if not 0 <= checksum <= 0xFFFFFFFF:
        return None
    if len(value) == 2:
        return FileInfo(size, checksum)
    digest = digest_from_hex(value[2])
    return FileInfo(size, checksum, digest) if digest else None


def _clean_path(name: object) -> RelPath | None:
    """A plain relative path, as the server's are checked (`paths.server_path`), or None."""
    if not isinstance(name, str) or name.endswith("/"):
        return None
    try:
        return server_path(name)
    except UnsafePathError:
        return None


def _parse_in_doubt(data: object) -> dict[RelPath, FileInfo]:
    """Malformed entries are dropped: the worst that follows is a question a sync asks."""
    found: dict[RelPath, FileInfo] = {}
    if isinstance(data, dict):
        for name, value in data.items():
            path, info = _clean_path(name), _parse_entry(value)
            if path is not None and info is not None:
                found[path] = info
    return found


def _entries_json(entries: dict[RelPath, FileInfo]) -> dict[str, list[int | str]]:
    return {
        rel: [info.size, info.checksum, *([info.digest.hex()] if info.digest else [])]
        for rel, info in sorted(entries.items())
    }


def _parse_root(value: object) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return value[0], value[1]
    return None


def new_backup_folder(root: Path, *, prefix: str, now: datetime) -> Path:
    """A new private folder below `root` for the backups of one pass.

    Named by time, made unique by `mkdtemp`, so two passes within one second never write
    into the same folder and no earlier backup is ever replaced.
    """
    make_private_dirs(root)
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{stamp}-", dir=root))


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and missing parents with mode 0700 (umask notwithstanding)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o700)
        except FileExistsError:
            continue  # created concurrently; not ours to chmod
        os.chmod(new, 0o700)


def write_private(path: Path, payload: bytes) -> None:
    """Replace `path` atomically and durably; mode 0600 (state, results' record and CSV,
    the token file)."""
    replace_file(path, payload, mode=0o600)


def replace_file(path: Path, payload: bytes, *, mode: int, durable: bool = True) -> None:
    """Replace `path` with `payload` atomically: a new file with `mode` (less the umask)
    beside it, renamed over it, so a reader (or a crash) sees the old file or the new one,
    never a mix. `durable`: the data and the rename are on disk before it returns."""
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with open(fd, "wb") as stream:
            stream.write(payload)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable on POSIX; not possible (nor needed) on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
