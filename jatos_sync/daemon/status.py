"""The daemon's status: what each mapping is doing, as `jatos-sync status` and systemd see it.

Owns `MappingStatus` (one mapping's published state), `ResultsStatus` (its results
mirror's), the status document and its file in the state directory (one per daemon,
`daemons/<pid>.json`, written atomically, mode 0600 through `mkstemp`), `read_status` for
the one-shot `status` command, and the one-line summary for `systemctl status`. It must not
run passes, start threads or decide when to write (the supervisor does); apart from writing
and reading the status file it does no I/O.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jatos_sync.logs import redact
from jatos_sync.notify import summary_line
from jatos_sync.state import StateStore, replace_file

if TYPE_CHECKING:  # jatos_sync.watch imports watchdog; `status` needs no watcher
    from jatos_sync.watch import Mode


@dataclass(frozen=True)
class MappingStatus:
    """One mapping as the status file and `systemctl status` show it."""

    name: str
    study: str
    folder: str
    state: str = "starting"  # starting | syncing | idle | paused | stopped
    mode: Mode | None = None
    pending: int = 0
    oldest_pending_since: float | None = None  # on the daemon's clock
    last_sync: float | None = None  # wall-clock time of the last successful pass
    last_error: str | None = None
    failing: int = 0  # files that failed and wait for a retry
    # Linked folders or files whose changes the watcher cannot follow, in words.
    not_followed: tuple[str, ...] = ()
    withheld: int = 0  # deletions the deletion guard withheld
    server_only: int = 0  # server files never synced from here: kept (docs/safety.md, rule 5)
    uploaded: int = 0  # since the daemon started
    deleted: int = 0


@dataclass(frozen=True)
class ResultsStatus:
    """One mapping's results mirror as the status file and `systemctl status` show it."""

    folder: str
    state: str = "starting"  # starting | fetching | idle | paused | stopped
    last_pass: float | None = None  # wall-clock time of the last pass that completed
    last_error: str | None = None
    failing: int = 0  # study results the last pass could not write
    final: int = 0  # component results in the folder, by status
    running: int = 0
    withdrawn: int = 0
    deleted_on_server: int = 0

    def document(self, *, wall: float, final: bool = False) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "state": "stopped" if final else self.state,
            "last_pass": _iso(self.last_pass),
            "last_pass_age_s": None if self.last_pass is None else round(wall - self.last_pass, 3),
            "last_error": None if self.last_error is None else redact(self.last_error),
            "failing": self.failing,
            "final": self.final,
            "running": self.running,
            "withdrawn": self.withdrawn,
            "deleted_on_server": self.deleted_on_server,
        }


def status_document(
    statuses: Iterable[MappingStatus],
    *,
    config_path: Path,
    started_at: float,
    now: float,
    wall: float,
    final: bool = False,
    pid: int | None = None,
    results: Mapping[str, ResultsStatus] | None = None,
) -> dict[str, Any]:
    """What the status file holds (ages as of `wall`; `read_status` refreshes them).

    `now` is the daemon's monotonic clock (on which `oldest_pending_since` is measured),
    `wall` the wall clock at the same moment. `results` holds the results mirror of each
    mapping that has one, by mapping name.
    """
    results = results or {}
    mappings = []
    for s in statuses:
        since = None if s.oldest_pending_since is None else wall - (now - s.oldest_pending_since)
        mappings.append(
            {
                "name": s.name,
                "study": s.study,
                "folder": s.folder,
                "state": "stopped" if final else s.state,
                "mode": s.mode,
                "pending": s.pending,
                "oldest_pending_since": _iso(since),
                "oldest_pending_age_s": None if since is None else round(wall - since, 3),
                "last_sync": _iso(s.last_sync),
                "last_sync_age_s": None if s.last_sync is None else round(wall - s.last_sync, 3),
                "last_error": None if s.last_error is None else redact(s.last_error),
                "failing": s.failing,
                "not_followed": list(s.not_followed),
                "withheld": s.withheld,
                "server_only": s.server_only,
                "uploaded": s.uploaded,
                "deleted": s.deleted,
                "results": (
                    results[s.name].document(wall=wall, final=final) if s.name in results else None
                ),
            }
        )
    return {
        "pid": os.getpid() if pid is None else pid,
        "state": "stopped" if final else "running",
        "config": str(config_path),
        "started_at": _iso(started_at),
        "updated_at": _iso(wall),
        "mappings": mappings,
    }


def summary(
    statuses: Iterable[MappingStatus],
    *,
    wall: float,
    results: Iterable[ResultsStatus] = (),
) -> str:
    """The one-line STATUS= text for systemd; with results mirrors, their counts, their last
    pass and how many are in trouble follow the file sync's."""
    statuses = list(statuses)
    syncs = [s.last_sync for s in statuses if s.last_sync is not None]
    line = summary_line(
        mappings=len(statuses),
        pending=sum(s.pending for s in statuses),
        paused=sum(s.state == "paused" for s in statuses),
        last_sync_age_s=wall - max(syncs) if syncs else None,
        errors=sum(s.failing for s in statuses),
    )
    mirrors = list(results)
    if not mirrors:
        return line
    passes = [r.last_pass for r in mirrors if r.last_pass is not None]
    parts = [
        f"results: {sum(r.final for r in mirrors)} final",
        f"{sum(r.running for r in mirrors)} running",
        f"{sum(r.withdrawn for r in mirrors)} withdrawn",
        f"last pass {_ago(wall - max(passes))}" if passes else "no results pass yet",
    ]
    troubled = sum(r.state == "paused" or bool(r.last_error) for r in mirrors)
    if troubled:
        parts.append(f"{troubled} with errors")
    return f"{line}; {', '.join(parts)}"


def _ago(age_s: float) -> str:
    if age_s < 1:
        return "just now"
    if age_s < 120:
        return f"{age_s:.0f} s ago"
    if age_s < 7200:
        return f"{age_s / 60:.0f} min ago"
    return f"{age_s / 3600:.0f} h ago"


def write_status(path: Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` atomically; raises OSError."""
    # Atomic (rename), not durable: a status file lost in a crash is simply rewritten, and
    # an fsync twice a second would wear an SD card for nothing.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    payload = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
    replace_file(path, payload, mode=0o600, durable=False)


def read_status(
    store: StateStore, *, now: Callable[[], float] = time.time
) -> dict[str, Any] | None:
    """What the running daemons of `store` report, merged, with ages as of `now` (`pids`
    lists them, `mappings` holds all their mappings); None when no daemon is running (no
    file, a damaged one, a clean stop, or its process is gone)."""
    running = [doc for path in _status_files(store) if (doc := _running(path)) is not None]
    if not running:
        return None
    wall = now()
    data = dict(running[0])
    data["pids"] = [doc["pid"] for doc in running]
    data["mappings"] = [m for doc in running for m in doc.get("mappings") or []]
    for mapping in data["mappings"]:
        if isinstance(mapping, dict):
            mapping["oldest_pending_age_s"] = _age_s(mapping.get("oldest_pending_since"), wall)
            mapping["last_sync_age_s"] = _age_s(mapping.get("last_sync"), wall)
            if isinstance(mapping.get("results"), dict):
                results = mapping["results"]
                results["last_pass_age_s"] = _age_s(results.get("last_pass"), wall)
    return data


def remove_stale_status(store: StateStore) -> None:
    """Remove the status files of daemons that are gone (killed without a clean stop)."""
    for path in _status_files(store):
        if _running(path) is None:
            with contextlib.suppress(OSError):
                path.unlink()


def _status_files(store: StateStore) -> list[Path]:
    try:
        return sorted(store.status_dir().glob("*.json"))
    except OSError:
        return []


def _running(path: Path) -> dict[str, Any] | None:
    """The document in `path` if it is a running daemon's, whose process is alive."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("state") != "running":
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not _pid_alive(pid):
        return None
    return data


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")


def _age_s(stamp: object, wall: float) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return round(wall - datetime.fromisoformat(stamp).timestamp(), 3)
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name != "posix":
        return True  # no cheap, safe check on Windows (os.kill would signal the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, run by another user
    return True
