"""Log events in words, for a person at a terminal.

The program logs facts (`upload_done path=… bytes=…`); JSON lines carry them unchanged to
pipes, CI logs and the journal. On an interactive terminal this renderer turns each event
into a short sentence with a symbol (and colour, unless `NO_COLOR` is set): `↑ img/a.png
176 B`, `⚠ stroop paused: …`. With `-v` the technical fields follow in grey. Events that
the command prints itself in words (its final error, a mapping's stop in the summary) and
per-file lines while a progress bar shows the same are left out, so nothing is said twice.

It also knows how a command's summary line for a mapping looks on a terminal (`marked`:
`✓`, `⚠` or `✖` and their colours, by exit code), and holds the text the `watch` command
gives its greeting (`GREETING`), which the daemon's `watch_ready` event does not carry.

Must not: decide what is logged, or write anything itself; it returns one line per event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from structlog import DropEvent

# What the command prints itself (jatos_sync.cli): logging it too would say everything twice.
SAID_BY_THE_COMMAND = frozenset({"command_failed", "mapping_failed", "mapping_stopped"})
# Per-file events that a progress bar stands in for while it is drawn.
PER_FILE = frozenset({"upload_done", "delete_done", "download_done", "backup_saved"})
# Fields that are for machines (or repeat the sentence): shown only with -v, in grey.
_PLUMBING = frozenset({"timestamp", "level", "event", "elapsed_s", "pid", "hint"})

_RESET, _DIM = "\x1b[0m", "\x1b[2m"
_COLOURS = {"ok": "\x1b[32m", "warn": "\x1b[33m", "error": "\x1b[31m", "info": ""}
_LEVEL_KIND = {"warning": "warn", "error": "error", "critical": "error"}


class Bar:
    """Whether a progress bar is drawn right now (set by progress.py), shared with the
    renderer, which then leaves per-file lines to the bar."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0

    def shown(self) -> bool:
        with self._lock:
            return self._active > 0

    def started(self) -> None:
        with self._lock:
            self._active += 1

    def ended(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)


BAR = Bar()


class Greeting:
    """What `watch_ready` says on a terminal: set by the `watch` command, which knows the
    folders, studies and server, so the daemon's event need not carry them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text: str | None = None

    def set(self, text: str | None) -> None:
        with self._lock:
            self._text = text

    def get(self) -> str | None:
        with self._lock:
            return self._text


GREETING = Greeting()


def human_size(size: object) -> str:
    """`176 B`, `1.4 KB`, `3.2 MB` (powers of 1000, as file managers show them)."""
    if not isinstance(size, int) or isinstance(size, bool):
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def _count(n: object, one: str, many: str | None = None) -> str:
    number = n if isinstance(n, int) else 0
    return f"{number} {one if number == 1 else (many or one + 's')}"


# event -> (kind, sentence). The sentence gets the event's fields; a missing field reads "".
_Sentence = Callable[[Mapping[str, Any]], str]
_SENTENCES: dict[str, tuple[str, _Sentence]] = {
    "upload_done": ("ok", lambda e: f"↑ {e['path']}  {human_size(e.get('bytes'))}"),
    "download_done": ("ok", lambda e: f"↓ {e['path']}  {human_size(e.get('bytes'))}"),
    "delete_done": ("ok", lambda e: f"✗ {e['path']}  deleted on the server"),
    "backup_saved": ("info", lambda e: f"⤓ saved a copy of {e['path']} in {e.get('dest')}"),
    "pass_done": (
        "ok",
        lambda e: (
            f"✓ {e['mapping']}: {_count(e.get('uploaded'), 'file')} uploaded, "
            f"{e.get('deleted', 0)} deleted"
            + (f", {e['failed']} failed" if e.get("failed") else "")
        ),
    ),
    "http_retry": (
        "warn",
        lambda e: (
            f"↻ {e['what']}: {e.get('reason')}; trying again "
            f"in {float(e.get('delay_s') or 0):.1f} s"
        ),
    ),
    "watch_running": (
        "info",
        lambda e: f"Starting to watch {_count(e.get('mappings'), 'mapping')}…",
    ),
    "watch_started": ("info", lambda e: f"· {e['mapping']}: watching {e['folder']}"),
    "watch_ready": (
        "ok",
        lambda e: (
            f"✓ {GREETING.get() or 'Watching'}. Save a file and it is uploaded; Ctrl-C stops."
        ),
    ),
    "watch_stopping": ("info", lambda e: "Stopping…"),
    "watch_stopped": ("ok", lambda e: "✓ Stopped."),
    "mapping_paused": ("warn", lambda e: f"⚠ {e['mapping']} is paused: {e.get('reason')}"),
    "mapping_resumed": ("ok", lambda e: f"✓ {e['mapping']} syncs again"),
    "nothing_syncing": ("error", lambda e: f"✖ Nothing is being synced: {e.get('reasons')}"),
    "deletions_withheld": (
        "warn",
        lambda e: (
            f"⚠ {e.get('mapping')}: {_count(e.get('count'), 'deletion')} withheld: "
            f"{e.get('reason')}"
        ),
    ),
    "deletions_held_back": (
        "warn",
        lambda e: (
            f"⚠ {_count(e.get('count'), 'deletion')} wait for the next pass: {e.get('reason')}"
        ),
    ),
    "file_failed": ("error", lambda e: f"✖ {e['path']}: {e.get('error')}"),
    "download_failed": ("error", lambda e: f"✖ {e['path']}: {e.get('error')}"),
    "backup_failed": (
        "error",
        lambda e: f"✖ could not save a copy of {e['path']}: {e.get('error')}",
    ),
    "insecure_url": (
        "warn",
        lambda e: f"⚠ {e['url']} is plain http: the token travels unencrypted; use https://",
    ),
    "token_expiring": ("warn", lambda e: f"⚠ {e.get('message')}"),
    "polling_fallback": (
        "warn",
        lambda e: (
            f"⚠ {e['mapping']}: checking for changes by polling, because "
            f"{e.get('reason')}" + (f"; {e['hint']}" if e.get("hint") else "")
        ),
    ),
    "server_unreachable": ("warn", lambda e: f"⚠ {e.get('error')} The mappings are retried."),
    "state_rebuilt": (
        "warn",
        lambda e: f"⚠ the record of what was synced was rebuilt: {e.get('reason')}",
    ),
    "config_reloaded": ("ok", lambda e: "✓ The configuration was read again."),
    "config_reload_failed": (
        "error",
        lambda e: f"✖ The changed configuration was not used: {e.get('message')}",
    ),
    "scan_done": (
        "info",
        lambda e: (
            f"· {e['mapping']}: {_count(e.get('files'), 'file')} in the folder"
            + (f", {human_size(e['bytes_hashed'])} read" if e.get("bytes_hashed") else "")
        ),
    ),
    "study_created": (
        "ok",
        lambda e: (
            f"✓ created study {e.get('id')} ({e['study']}) with {_count(e.get('files'), 'file')}"
        ),
    ),
    "definition_changed": (
        "ok",
        lambda e: (
            "✓ "
            + (
                f"{e['mapping']}: component {e['component']} {e.get('change', 'changed')}"
                if e.get("component")
                else f"{e['mapping']}: {e['field']} set"
            )
        ),
    ),
    "study_locked": (
        "warn",
        lambda e: f"⚠ study {e['study']} is locked: unlock it on its page in JATOS",
    ),
    "component_deleted": (
        "warn",
        lambda e: f"⚠ deleted component {e['component']!r} of study {e['study']}, with its results",
    ),
    "folder_created": ("info", lambda e: f"· created the folder {e['folder']}"),
    "leftover_removed": ("info", lambda e: f"· removed {e['path']}, left by an interrupted pull"),
    "study_exported": ("ok", lambda e: f"✓ exported study {e['study']} to {e['path']}"),
    "links_inactive": ("warn", lambda e: f"⚠ {e['hint']}"),
    "general_link": ("info", lambda e: f"· {e['hint']}"),
    "state_not_saved": (
        "warn",
        lambda e: (
            f"⚠ {e['mapping']}: the record of what was synced was not saved: {e.get('error')}"
        ),
    ),
    "results_failed": ("error", lambda e: f"✖ {e['mapping']}: results: {e.get('error')}"),
    "watch_restarting": (
        "warn",
        lambda e: f"⚠ {e['mapping']}: watching the folder again ({e.get('reason')})",
    ),
    "watch_events_lost": (
        "warn",
        lambda e: (
            f"⚠ {e['mapping']}: some changes were missed ({e.get('reason')}); checking everything"
        ),
    ),
    "worker_restarted": ("warn", lambda e: f"⚠ {e['mapping']}: started again after a failure"),
    "server_ignores_case": (
        "warn",
        lambda e: (
            "⚠ This JATOS ignores letter case in file names (macOS or Windows): names "
            "that differ only in case are one file there"
        ),
    ),
}

SYMBOLS = {"info": "·", "ok": "✓", "warn": "⚠", "error": "✖"}


def paint(kind: str, text: str, *, colours: bool) -> str:
    """`text` in the colour of `kind` (ok, warn, error, info, dim) when `colours`."""
    if not colours:
        return text
    code = _DIM if kind == "dim" else _COLOURS.get(kind, "")
    return f"{code}{text}{_RESET}" if code else text


def outcome_kind(exit_code: int) -> str:
    """How a command's result for one mapping looks: ok (0); warn when nothing failed but
    a person must act — a guard withheld something (4), the token or the study's lock or
    membership stands in the way (3); error when something failed (1, 2, 5)."""
    if exit_code == 0:
        return "ok"
    return "warn" if exit_code in (3, 4) else "error"


def marked(text: str, *, exit_code: int, colours: bool) -> str:
    """A result's summary line for a terminal: `✓ stroop → study 42: 9 uploaded, …`."""
    kind = outcome_kind(exit_code)
    return paint(kind, f"{SYMBOLS[kind]} {text}", colours=colours)


class HumanRenderer:
    """A structlog renderer: one sentence per event (see the module docstring)."""

    def __init__(self, *, colours: bool, verbose: bool, bar: Bar = BAR) -> None:
        self._colours = colours
        self._verbose = verbose
        self._bar = bar

    def __call__(self, _logger: Any, method: str, event: dict[str, Any]) -> str:
        name = str(event.get("event", ""))
        if name in SAID_BY_THE_COMMAND or (name in PER_FILE and self._bar.shown()):
            raise DropEvent
        known = _SENTENCES.get(name)
        try:
            kind, text = (
                (known[0], known[1](event)) if known else self._generic(name, method, event)
            )
        except (KeyError, TypeError, ValueError):  # an event without the expected fields
            kind, text = self._generic(name, method, event)
        kind = _LEVEL_KIND.get(method, kind)
        line = self._paint(kind, text)
        if self._verbose:
            details = " ".join(
                f"{k}={v}" for k, v in event.items() if k not in ("event", "timestamp", "level")
            )
            line += self._paint("dim", f"  [{name}{' ' + details if details else ''}]")
        return line

    def _generic(self, name: str, method: str, event: Mapping[str, Any]) -> tuple[str, str]:
        kind = _LEVEL_KIND.get(method, "info")
        words = name.replace("_", " ")
        fields = [f"{v}" for k, v in event.items() if k not in _PLUMBING]
        return kind, f"{SYMBOLS[kind]} {words}{': ' + ', '.join(fields) if fields else ''}"

    def _paint(self, kind: str, text: str) -> str:
        return paint(kind, text, colours=self._colours)
