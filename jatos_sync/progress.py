"""A progress bar on a terminal for passes with many files or bytes.

Owns how progress looks (a label, a bar, files done/total, bytes, rate, time left, on one
line) and when it is shown at all: only on an interactive terminal, never with `--json`,
never for a pipe, a CI log or the journal, and only for a pass of at least `MIN_FILES`
files or `MIN_BYTES` bytes — a small pass is over before a bar could say anything. It
implements `jatos_sync.apply.ProgressSink`, is safe to call from the upload threads, draws
on stderr and erases itself when done, so the terminal holds only the command's own output.

The bar is one line redrawn in place (a carriage return and an erase-line sequence), drawn
here rather than by a library: rich drew it before, and structlog imports rich whenever it
is installed, which cost every command about 30-90 ms at start-up for a bar that most
commands never show.

Log lines written while a bar is drawn would be torn by the bar's redraws; `bar_safe()`
wraps the log stream so such lines are printed above the bar instead.

Must not: decide what to sync, log, or touch process-global streams (`sys.stderr` stays
untouched).
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO, cast

from jatos_sync.logs import is_terminal
from jatos_sync.sentences import BAR, human_size

if TYPE_CHECKING:
    from jatos_sync.apply import ProgressSink
    from jatos_sync.model import RelPath

# A pass smaller than both limits is not worth a bar: it ends within a second or two.
MIN_FILES = 20
MIN_BYTES = 5_000_000  # 5 MB
REFRESH_S = 0.1
_ERASE = "\r\x1b[2K"  # to the line's start, and erase the whole line
_BAR_CELLS = (10, 40)  # the bar itself: at least, at most this many characters


class _BarSafeStream(io.TextIOBase):
    """Passes writes through to `target`; while a bar is drawn, prints whole lines above it
    and draws the bar again below them."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._lock = threading.Lock()
        self._bar: str | None = None  # the bar's line while one is drawn
        self._partial = ""

    def show(self, line: str | None) -> None:
        """Draw `line` as the bar, in place of the previous one; None erases the bar, and
        writes go straight through again."""
        with self._lock:
            if line is not None:
                self.target.write(_ERASE + line)
            elif self._bar is not None:
                self.target.write(_ERASE + self._partial)  # the unfinished line, in its place
                self._partial = ""
            self._bar = line
            self.target.flush()

    def write(self, text: str) -> int:
        with self._lock:
            if self._bar is None:
                self.target.write(text)
                return len(text)
            # Complete lines only: a line is printed above the bar in one piece.
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            if lines:
                self.target.write(_ERASE + "".join(f"{line}\n" for line in lines) + self._bar)
                self.target.flush()
            return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._bar is None:
                if self._partial:
                    self.target.write(self._partial)
                    self._partial = ""
                self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()


def bar_safe(stream: TextIO) -> TextIO:
    """`stream` made safe to write to while a bar drawn on it is live (for the log stream).

    Returns `stream` itself unless it is a terminal. Give the same returned object to
    `configure_logging` and to `progress_for`, so log lines go above the bar.
    """
    if isinstance(stream, _BarSafeStream) or not is_terminal(stream):
        return stream
    # io.TextIOBase provides the text-stream methods; typing.TextIO is nominal.
    return cast(TextIO, _BarSafeStream(stream))


def bar_line(
    label: str,
    *,
    files_done: int,
    files: int,
    bytes_done: int,
    total_bytes: int,
    elapsed_s: float,
    width: int,
) -> str:
    """The bar's line, at most `width - 1` characters (a full line would wrap on some
    terminals): `stroop [####------] 20/40 files  2.0/4.0 MB  1.0 MB/s  ETA 0:00:02`.
    It measures bytes when the pass moves any, files otherwise (a pass of deletions)."""
    by_bytes = total_bytes > 0
    done, total = (bytes_done, total_bytes) if by_bytes else (files_done, files)
    parts = [f"{files_done}/{files} files"]
    if by_bytes:
        number, unit = human_size(total_bytes).split(" ")
        scale = 1000 ** ("B", "KB", "MB", "GB").index(unit)
        parts.append(f"{bytes_done / scale:.{0 if unit == 'B' else 1}f}/{number} {unit}")
        rate = bytes_done / elapsed_s if elapsed_s > 0 else 0.0
        parts.append(f"{human_size(round(rate))}/s")
    left_s = (total - done) * elapsed_s / done if done and elapsed_s > 0 else None
    parts.append("ETA " + ("-:--:--" if left_s is None else _clock_time(left_s)))
    tail = "  ".join(parts)
    cells = min(_BAR_CELLS[1], width - 1 - len(label) - len(tail) - 4)
    if cells < _BAR_CELLS[0]:
        return f"{label} {tail}"[: width - 1]
    filled = min(cells, cells * done // total) if total else cells
    return f"{label} [{'#' * filled}{'-' * (cells - filled)}] {tail}"


def _clock_time(seconds: float) -> str:
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class TerminalProgress:
    """A progress bar on `stream` (normally stderr), shown for big passes only.

    `start` decides: fewer than `min_files` files and fewer than `min_bytes` bytes → nothing
    is drawn. Otherwise one line (`bar_line`) is redrawn `1 / REFRESH_S` times a second by a
    thread of its own (joined by `close`), and erased by `close`.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str = "syncing",
        min_files: int = MIN_FILES,
        min_bytes: int = MIN_BYTES,
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = REFRESH_S,
        width: int | None = None,
    ) -> None:
        # Drawn through a bar-safe stream: the log stream itself, or one of its own.
        self._out = stream if isinstance(stream, _BarSafeStream) else _BarSafeStream(stream)
        self.label = label
        self.min_files = min_files
        self.min_bytes = min_bytes
        self._clock = clock
        self._refresh_s = refresh_s
        self._width = width
        self._lock = threading.Lock()
        self._shown = False
        self._started_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.files = 0
        self.total_bytes = 0
        self.files_done = 0
        self.bytes_done = 0

    def __repr__(self) -> str:
        return f"TerminalProgress({self.files_done}/{self.files} files, shown={self.shown})"

    @property
    def shown(self) -> bool:
        """Whether a bar is drawn right now."""
        return self._shown

    def start(self, *, files: int, total_bytes: int) -> None:
        with self._lock:
            if self._shown:
                return  # one bar per pass; a second start is a caller's slip, not a crash
            self.files, self.total_bytes = files, total_bytes
            self.files_done = self.bytes_done = 0
            if files == 0 or (files < self.min_files and total_bytes < self.min_bytes):
                return
            self._shown = True
            self._started_at = self._clock()
            BAR.started()  # per-file log lines give way to the bar (sentences.py)
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name="jatos-sync-progress", daemon=True
        )
        self._thread.start()

    def advance(self, path: RelPath, *, nbytes: int) -> None:
        del path  # the bar counts; it does not name files (log lines do)
        with self._lock:
            self.files_done += 1
            self.bytes_done += nbytes

    def close(self) -> None:
        with self._lock:
            shown, self._shown = self._shown, False
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if shown:
            BAR.ended()
            self._out.show(None)  # erased; the cursor is where the bar began

    def refresh(self) -> None:
        """Redraw the bar now (the refresh thread does this every `refresh_s`)."""
        with self._lock:
            if not self._shown:
                return
            line = bar_line(
                self.label,
                files_done=self.files_done,
                files=self.files,
                bytes_done=self.bytes_done,
                total_bytes=self.total_bytes,
                elapsed_s=self._clock() - self._started_at,
                width=self._width or _columns(self._out),
            )
            self._out.show(line)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh()


def _columns(stream: _BarSafeStream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, io.UnsupportedOperation):
        return 80


class Tally:
    """Counts a pass's files as they are done, and passes everything on to `bar` (if any):
    after Ctrl-C the command can say how far it got."""

    def __init__(self, bar: ProgressSink | None = None) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self.files = 0
        self.done = 0

    def start(self, *, files: int, total_bytes: int) -> None:
        with self._lock:
            self.files += files
        if self._bar is not None:
            self._bar.start(files=files, total_bytes=total_bytes)

    def advance(self, path: RelPath, *, nbytes: int) -> None:
        with self._lock:
            self.done += 1
        if self._bar is not None:
            self._bar.advance(path, nbytes=nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_for(
    stream: TextIO,
    *,
    enabled: bool,
    label: str = "syncing",
    environ: Mapping[str, str] = os.environ,
) -> ProgressSink | None:
    """A `TerminalProgress` on `stream`, or None: not a terminal, a dumb terminal, or
    `enabled` is false (`--json`, `--quiet`). Nothing is ever drawn on non-TTY output."""
    if not enabled or not is_terminal(stream):
        return None
    if environ.get("TERM", "") in ("dumb", "unknown"):
        return None  # no cursor movement: a bar would print a new line per redraw
    return TerminalProgress(stream, label=label)
