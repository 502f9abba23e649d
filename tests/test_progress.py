"""Progress on a terminal: shown only where it helps, correct under threads, and gone
without a trace when the pass ends. A tiny terminal emulator replays what was written."""

from __future__ import annotations

import io
import re
import threading

import pytest

from jatos_sync.model import RelPath
from jatos_sync.progress import MIN_BYTES, MIN_FILES, TerminalProgress, bar_safe, progress_for


class FakeTTY(io.StringIO):
    """Collects output and claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _capable_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich reads these from the process environment; pin a plain, capable terminal.
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(raw: str) -> list[str]:
    """What a terminal shows after `raw`: CR, LF, cursor up, erase line; colours ignored."""
    lines, row, col, i = [""], 0, 0, 0
    while i < len(raw):
        csi = _CSI.match(raw, i)
        if csi:
            params, command = csi.groups()
            if command == "A":
                row = max(0, row - int(params or "1"))
            elif command == "K" and params == "2":
                lines[row] = ""
            i = csi.end()
            continue
        ch = raw[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        i += 1
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bar(stream: FakeTTY | io.StringIO, clock: Clock | None = None) -> TerminalProgress:
    # A long refresh interval: the tests redraw explicitly, so output is deterministic.
    return TerminalProgress(stream, width=120, refresh_s=60.0, clock=clock or Clock())


# ---------------------------------------------------------------- when it is shown


def test_no_progress_unless_enabled_on_an_interactive_terminal() -> None:
    assert progress_for(io.StringIO(), enabled=True, environ={}) is None
    assert progress_for(FakeTTY(), enabled=False, environ={}) is None
    assert progress_for(FakeTTY(), enabled=True, environ={"TERM": "dumb"}) is None
    assert isinstance(progress_for(FakeTTY(), enabled=True, environ={}), TerminalProgress)


def test_a_small_pass_draws_nothing() -> None:
    stream = FakeTTY()
    progress = bar(stream)
    progress.start(files=MIN_FILES - 1, total_bytes=MIN_BYTES - 1)
    for i in range(MIN_FILES - 1):
        progress.advance(RelPath(f"f{i}"), nbytes=1)
    progress.close()
    assert stream.getvalue() == ""
    assert progress.files_done == MIN_FILES - 1


@pytest.mark.parametrize(
    ("files", "total_bytes"), [(MIN_FILES, 0), (2, MIN_BYTES)], ids=["many-files", "many-bytes"]
)
def test_a_big_pass_draws_a_bar(files: int, total_bytes: int) -> None:
    stream = FakeTTY()
    progress = bar(stream)
    progress.start(files=files, total_bytes=total_bytes)
    assert progress.shown
    assert f"0/{files} files" in stream.getvalue()
    progress.close()
    assert not progress.shown


def test_the_bar_shows_files_bytes_rate_and_time_left() -> None:
    stream, clock = FakeTTY(), Clock()
    progress = bar(stream, clock)
    progress.start(files=40, total_bytes=4_000_000)
    for i in range(20):
        clock.now += 0.1
        progress.advance(RelPath(f"f{i}"), nbytes=100_000)
    progress.refresh()
    (line,) = screen(stream.getvalue())
    assert "20/40 files" in line
    assert "2.0/4.0 MB" in line
    assert re.search(r"\d+(\.\d+)? [kM]B/s", line), line
    assert re.search(r"ETA 0:00:0\d", line), line
    progress.close()


def test_a_pass_of_deletions_counts_files() -> None:
    stream = FakeTTY()
    progress = bar(stream)
    progress.start(files=30, total_bytes=0)
    for i in range(10):
        progress.advance(RelPath(f"old{i}"), nbytes=0)
    progress.refresh()
    (line,) = screen(stream.getvalue())
    assert "10/30 files" in line and "B/s" not in line
    progress.close()


# ---------------------------------------------------------------- clean terminal


def test_closing_erases_the_bar_and_keeps_log_lines_written_meanwhile() -> None:
    terminal = FakeTTY()
    terminal.write("before\n")
    log = bar_safe(terminal)
    progress = TerminalProgress(log, width=100, refresh_s=60.0)
    progress.start(files=25, total_bytes=0)
    for i in range(25):
        progress.advance(RelPath(f"f{i}"), nbytes=0)
        if i == 10:
            log.write("upload_done path=f10\n")
            log.write("a line in ")  # written in two pieces, shown as one
            log.write("two parts\n")
        if i % 5 == 0:
            progress.refresh()
    progress.close()
    log.write("after\n")

    assert screen(terminal.getvalue()) == [
        "before",
        "upload_done path=f10",
        "a line in two parts",
        "after",
    ]


def test_an_unfinished_log_line_is_written_when_the_bar_goes() -> None:
    terminal = FakeTTY()
    log = bar_safe(terminal)
    progress = TerminalProgress(log, width=100, refresh_s=60.0)
    progress.start(files=25, total_bytes=0)
    log.write("no newline yet")
    progress.close()
    log.write(" - done\n")
    assert screen(terminal.getvalue()) == ["no newline yet - done"]


def test_bar_safe_leaves_non_terminals_alone() -> None:
    plain = io.StringIO()
    assert bar_safe(plain) is plain
    tty = FakeTTY()
    wrapped = bar_safe(tty)
    assert wrapped is not tty and bar_safe(wrapped) is wrapped
    assert wrapped.isatty()
    wrapped.write("straight through\n")
    assert tty.getvalue() == "straight through\n"


def test_close_is_safe_without_start_and_twice() -> None:
    stream = FakeTTY()
    progress = bar(stream)
    progress.close()
    progress.start(files=50, total_bytes=0)
    progress.close()
    progress.close()
    assert screen(stream.getvalue()) == []


# ---------------------------------------------------------------- threads


def test_advances_from_many_threads_are_all_counted() -> None:
    stream = FakeTTY()
    progress = TerminalProgress(stream, width=100, refresh_s=0.001)  # redraw all the time
    workers, per_worker = 8, 50
    progress.start(files=workers * per_worker, total_bytes=workers * per_worker * 10)
    go = threading.Barrier(workers)

    def work(n: int) -> None:
        go.wait()
        for i in range(per_worker):
            progress.advance(RelPath(f"w{n}/f{i}"), nbytes=10)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress.refresh()
    assert progress.files_done == workers * per_worker
    assert progress.bytes_done == workers * per_worker * 10
    assert f"{workers * per_worker}/{workers * per_worker} files" in stream.getvalue()
    progress.close()  # joins its refresh thread: the leak guard checks
    assert screen(stream.getvalue()) == []
