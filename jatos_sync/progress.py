"""A progress bar on a terminal for passes with many files or bytes (issue 6 part 4).

Owns how progress looks (files done/total, bytes, rate, ETA, drawn with rich) and when it is
shown at all: only on an interactive terminal, never with `--json`, never for a pipe, a CI
log or the journal, and only for a pass of at least `MIN_FILES` files or `MIN_BYTES` bytes —
a small pass is over before a bar could say anything. It implements
`jatos_sync.apply.ProgressSink`, is safe to call from the upload threads, draws on stderr
and removes itself when done, so the terminal holds only the command's own output.

Log lines written while a bar is drawn would be torn by the bar's redraws; `bar_safe()`
wraps the log stream so such lines are printed above the bar instead.

Must not: decide what to sync, log, or touch process-global streams (`sys.stderr` stays
untouched: rich's own redirection is switched off).
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO, cast

from jatos_sync.apply import ProgressSink
from jatos_sync.logs import is_terminal
from jatos_sync.model import RelPath
from jatos_sync.sentences import BAR

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

# A pass smaller than both limits is not worth a bar: it ends within a second or two.
MIN_FILES = 20
MIN_BYTES = 5_000_000  # 5 MB
REFRESH_S = 0.1


class _BarSafeStream(io.TextIOBase):
    """Passes writes through to `target`; while a bar is live, prints whole lines above it."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._lock = threading.Lock()
        self._console: Console | None = None
        self._partial = ""

    def attach(self, console: Console | None) -> None:
        """Route lines above the bar drawn by `console`; None: straight through again."""
        with self._lock:
            self._console = console
            if console is None and self._partial:
                self.target.write(self._partial)  # the unfinished line, in its place
                self._partial = ""

    def write(self, text: str) -> int:
        with self._lock:
            console = self._console
            if console is None:
                self.target.write(text)
                return len(text)
            # Complete lines only: a line is printed above the bar in one piece.
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            if lines:
                from rich.text import Text

                for line in lines:
                    console.print(Text.from_ansi(line), soft_wrap=True, highlight=False)
            return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._console is None:
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


class TerminalProgress:
    """A rich progress bar on `stream` (normally stderr), shown for big passes only.

    `start` decides: fewer than `min_files` files and fewer than `min_bytes` bytes → nothing
    is drawn. Otherwise one line shows the label, a bar, files done/total, bytes done/total,
    the transfer rate and the time left; it is redrawn `1 / REFRESH_S` times a second by a
    thread of its own (joined by `close`), and erased by `close`. The bar measures bytes
    when the pass moves any, files otherwise (a pass of deletions only).
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
        self._stream = stream
        self.label = label
        self.min_files = min_files
        self.min_bytes = min_bytes
        self._clock = clock
        self._refresh_s = refresh_s
        self._width = width
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._by_bytes = False
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
        return self._progress is not None

    def start(self, *, files: int, total_bytes: int) -> None:
        with self._lock:
            if self._progress is not None:
                return  # one bar per pass; a second start is a caller's slip, not a crash
            self.files, self.total_bytes = files, total_bytes
            self.files_done = self.bytes_done = 0
            if files == 0 or (files < self.min_files and total_bytes < self.min_bytes):
                return
            self._by_bytes = total_bytes > 0
            self._progress, self._task = self._open()
            BAR.started()  # per-file log lines give way to the bar (sentences.py)
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
            if self._progress is None or self._task is None:
                return
            self._progress.update(
                self._task,
                completed=self.bytes_done if self._by_bytes else self.files_done,
                files_done=self.files_done,
            )

    def close(self) -> None:
        with self._lock:
            progress, self._progress = self._progress, None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if progress is None:
            return
        BAR.ended()
        try:
            progress.stop()  # transient: erases the bar and leaves the cursor where it began
        finally:
            if isinstance(self._stream, _BarSafeStream):
                self._stream.attach(None)

    def _open(self) -> tuple[Progress, TaskID]:
        # Imported here: rich costs ~60 ms to import, and most commands never draw a bar.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        target = self._stream.target if isinstance(self._stream, _BarSafeStream) else self._stream
        console = Console(file=target, width=self._width, highlight=False)
        columns = [
            TextColumn(self.label, markup=False),
            BarColumn(),
            TextColumn("{task.fields[files_done]}/{task.fields[files]} files", markup=False),
        ]
        if self._by_bytes:
            columns += [DownloadColumn(), TransferSpeedColumn()]
        columns += [TextColumn("ETA", markup=False), TimeRemainingColumn()]
        progress = Progress(
            *columns,
            console=console,
            auto_refresh=False,  # our own thread refreshes, so close() can join it
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            get_time=self._clock,
        )
        task = progress.add_task(
            self.label,
            total=self.total_bytes if self._by_bytes else self.files,
            files=self.files,
            files_done=0,
        )
        progress.start()
        if isinstance(self._stream, _BarSafeStream):
            self._stream.attach(console)
        progress.refresh()
        return progress, task

    def refresh(self) -> None:
        """Redraw the bar now (the refresh thread does this every `refresh_s`)."""
        with self._lock:
            if self._progress is not None:
                self._progress.refresh()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh()


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
