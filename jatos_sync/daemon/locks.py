"""Which daemon follows which mapping: one lock file per mapping in the state folder.

Two `jatos-sync watch` processes on the same mapping would upload every edit twice and
overwrite each other's record of what was synced. A daemon therefore claims each mapping it
follows with an exclusive, non-blocking `flock` on `<state>/locks/<mapping key>.lock`, and
writes its pid into the file so a second daemon can name it. The kernel drops the lock when
the process ends, however it ends, so a crashed daemon never blocks its successor. Daemons
on other mappings of the same configuration (or of the same state folder) do not collide.

Where `fcntl` is missing (Windows) nothing is locked: the daemon warns once. Must not: start
threads, talk to the server or decide anything about syncing.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from jatos_sync.errors import ConfigError
from jatos_sync.state import make_private_dirs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = structlog.get_logger("jatos_sync.daemon")


class MappingLocks:
    """The locks this process holds, by mapping key."""

    def __init__(self, root: Path) -> None:
        self._folder = root / "locks"
        self._held: dict[str, int] = {}  # key -> open file descriptor

    def __repr__(self) -> str:
        return f"MappingLocks({sorted(self._held)})"

    def claim(self, key: str, *, name: str) -> None:
        """Hold the lock of mapping `key` (named `name` in messages), or raise ConfigError
        naming the process that holds it."""
        if key in self._held:
            return
        if fcntl is None:  # pragma: no cover - Windows
            log.warning("watch_not_locked", mapping=name, hint="no flock on this platform")
            return
        try:
            make_private_dirs(self._folder)
            fd = os.open(self._folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the lock of mapping {name!r} in {self._folder} "
                f"({exc.strerror or exc}); make the state folder writable."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise ConfigError(
                f"Another `jatos-sync watch` ({who}) already follows the mapping {name!r} with "
                "this state folder; two would upload every edit twice. Stop it first "
                f"({f'`kill {holder}`, or ' if holder else ''}`systemctl stop jatos-sync` for the "
                "service), or watch other mappings: `jatos-sync watch NAME …`."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._held[key] = fd

    def release(self, key: str) -> None:
        fd = self._held.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the file drops the lock

    def release_all(self) -> None:
        for key in list(self._held):
            self.release(key)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
