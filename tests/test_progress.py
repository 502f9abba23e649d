"""Progress on a terminal: shown only where it helps, correct under threads, and gone
without a trace when the pass ends. A tiny terminal emulator replays what was written."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading

import pytest

from jatos_sync.model import RelPath
from jatos_sync.progress import (
    MIN_BYTES,
    MIN_FILES,
    TerminalProgress,
    bar_line,
    bar_safe,
    progress_for,
)


class FakeTTY(io.StringIO):
    """Collects output and claims to be a terminal."""

    def isatty(self) -> bool:
        return True


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


# ---------------------------------------------------------------- the line itself


@pytest.mark.parametrize("width", [20, 40, 60, 80, 200])
def test_the_line_never_fills_the_terminal_so_it_cannot_wrap(width: int) -> None:
    line = bar_line(
        "a-long-mapping-name",
        files_done=1234,
        files=5000,
        bytes_done=123_456_789,
        total_bytes=987_654_321,
        elapsed_s=12.5,
        width=width,
    )
    assert len(line) <= width - 1
    assert line.startswith("a-long-mapping-name"[: width - 1])


def test_the_line_before_anything_is_done_has_no_time_left_yet() -> None:
    line = bar_line(
        "exp", files_done=0, files=30, bytes_done=0, total_bytes=0, elapsed_s=0.0, width=80
    )
    assert line == "exp [----------------------------------------] 0/30 files  ETA -:--:--"


def test_a_finished_pass_fills_the_bar() -> None:
    line = bar_line(
        "exp", files_done=30, files=30, bytes_done=600, total_bytes=600, elapsed_s=2.0, width=120
    )
    assert "[" + "#" * 40 + "]" in line and "600/600 B" in line and "300 B/s" in line


def test_no_rich_is_needed_to_draw_a_bar() -> None:
    code = (
        "import sys, io\n"
        "sys.modules['rich'] = None  # importing it would fail\n"
        "from jatos_sync.progress import TerminalProgress\n"
        "class T(io.StringIO):\n"
        "    def isatty(self): return True\n"
        "p = TerminalProgress(T(), width=80)\n"
        "p.start(files=50, total_bytes=0); p.refresh(); p.close()\n"
        "print('rich' in sys.modules and sys.modules['rich'] is not None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
