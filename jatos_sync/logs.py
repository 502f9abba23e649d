"""structlog configuration for the program, and token redaction.

Log events are snake_case facts with consistent keys (`upload_done path=… bytes=…`). On a
terminal they are sentences for a person (sentences.py); otherwise (a pipe, a CI log, the
journal) one JSON object per line. Any string that looks like a JATOS token is masked before
it is written, whatever its source. Only the command line (`jatos_sync.cli`) calls
`configure_logging`; importing this module does nothing and imports no structlog, so that
`--version`, `--help` and a usage error stay quick (structlog is imported when logging is
configured).

Must not: decide what is logged, or print anything itself.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

# "jap_" + 31 alphanumerics + 6 hex (docs/jatos-api.md §2.1); also catch partial or mangled
# ones.
TOKEN_RE = re.compile(r"jap_[A-Za-z0-9]{8,}")
REDACTED = "jap_[redacted]"


def redact(text: str) -> str:
    """Mask anything that looks like a JATOS token."""
    return TOKEN_RE.sub(REDACTED, text)


def _redact_rendered(_logger: Any, _method: str, line: str) -> str:
    # Runs on the finished line, so values, keys and formatted tracebacks are all covered.
    return redact(line)


# syslog priorities; journald reads a "<N>" prefix on each stdout/stderr line as the
# line's priority (sd-daemon(3)), so `journalctl -p warning` works on JSON lines too.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def _journal_priority(_logger: Any, method: str, line: str) -> str:
    return f"<{_PRIORITY.get(method, 6)}>{line}"


def choose_format(fmt: str, stream: TextIO, environ: Mapping[str, str] = os.environ) -> str:
    """`auto` means console on an interactive terminal, JSON lines otherwise (and under
    systemd, where `JOURNAL_STREAM` is set)."""
    if fmt != "auto":
        return fmt
    if environ.get("JOURNAL_STREAM") or not is_terminal(stream):
        return "json"
    return "console"


def configure_logging(
    *,
    verbosity: int = 0,
    fmt: str = "auto",
    stream: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """verbosity: -1 quiet (warnings), 0 normal (info), 1 verbose (debug)."""
    import structlog

    stream = stream or sys.stderr
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    chosen = choose_format(fmt, stream, environ)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if chosen == "json":
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
            _redact_rendered,
        ]
        if environ.get("JOURNAL_STREAM"):
            processors.append(_journal_priority)
    else:
        # Words for a person (sentences.py); the same facts stay JSON everywhere else.
        from jatos_sync.sentences import HumanRenderer

        colours = is_terminal(stream) and not environ.get("NO_COLOR")
        processors += [
            HumanRenderer(colours=colours, verbose=verbosity > 0),
            _redact_rendered,
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


@contextmanager
def silenced() -> Iterator[None]:
    """No log line at all while the block runs: a dialogue on the terminal (`init`) must
    not be interrupted by a request's or a retry's log line between its questions. The
    configuration of before is restored afterwards, also when the block reconfigured it."""
    import structlog

    def drop(_logger: Any, _method: str, _event: Any) -> Any:
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[drop])
    try:
        yield
    finally:
        structlog.configure(**before)


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (False for closed or odd streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
