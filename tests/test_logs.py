"""Logging: format choice, journald priorities, token redaction, verbosity."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from jatos_sync.logs import choose_format, configure_logging, redact
from jatos_sync.testing import make_token


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("fmt", "stream", "environ", "expected"),
    [
        ("auto", Tty(), {}, "console"),
        ("auto", io.StringIO(), {}, "json"),
        ("auto", Tty(), {"JOURNAL_STREAM": "8:1"}, "json"),
        ("console", io.StringIO(), {}, "console"),
        ("json", Tty(), {}, "json"),
    ],
)
def test_format_choice(
    fmt: str, stream: io.StringIO, environ: dict[str, str], expected: str
) -> None:
    assert choose_format(fmt, stream, environ) == expected


def test_json_lines_carry_a_journald_priority_under_systemd() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, environ={"JOURNAL_STREAM": "8:1"})
    structlog.get_logger().warning("mapping_paused", mapping="x")
    structlog.get_logger().error("mapping_failed", mapping="x")
    first, second = buf.getvalue().splitlines()
    assert first.startswith("<4>{") and second.startswith("<3>{")
    assert json.loads(first[3:])["event"] == "mapping_paused"


def test_plain_json_lines_have_no_prefix() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, environ={})
    structlog.get_logger().info("upload_done", path="a.js", bytes=3)
    assert json.loads(buf.getvalue())["path"] == "a.js"


def test_console_lines_are_sentences_and_colourless_without_a_tty() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, fmt="console", environ={})
    structlog.get_logger().info("upload_done", path="img/fixation.svg", bytes=176, elapsed_s=0.01)
    assert buf.getvalue() == "↑ img/fixation.svg  176 B\n"


def test_on_a_terminal_sentences_are_coloured_unless_no_color() -> None:
    for environ, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        buf = Tty()
        configure_logging(stream=buf, environ=environ)
        structlog.get_logger().warning("mapping_paused", mapping="stroop", reason="locked")
        line = buf.getvalue()
        assert "⚠ stroop is paused: locked" in line
        assert ("\x1b[" in line) is coloured


def test_verbose_adds_the_technical_fields() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, fmt="console", verbosity=1, environ={})
    structlog.get_logger().info("upload_done", path="a.js", bytes=3, elapsed_s=0.01)
    line = buf.getvalue()
    assert (
        line.startswith("↑ a.js  3 B") and "[upload_done path=a.js bytes=3 elapsed_s=0.01" in line
    )


def test_what_the_command_says_itself_is_not_logged_twice_on_a_terminal() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, fmt="console", environ={})
    structlog.get_logger().error("command_failed", error="no such study", exit_code=2)
    assert buf.getvalue() == ""
    configure_logging(stream=buf, fmt="json", environ={})
    structlog.get_logger().error("command_failed", error="no such study", exit_code=2)
    assert json.loads(buf.getvalue())["event"] == "command_failed"  # machines still get it


def test_an_unknown_event_is_shown_in_words() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, fmt="console", environ={})
    structlog.get_logger().warning("leftover_not_removed", path="x.part", error="busy")
    assert buf.getvalue() == "⚠ leftover not removed: x.part, busy\n"


def test_tokens_are_redacted_wherever_they_appear() -> None:
    token = make_token()
    buf = io.StringIO()
    configure_logging(stream=buf, environ={})
    structlog.get_logger().error("oops", error=f"header was Bearer {token}", obj=[token])
    assert token not in buf.getvalue() and "jap_[redacted]" in buf.getvalue()
    assert token not in redact(f"x {token} y")


def test_quiet_keeps_warnings_only() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, verbosity=-1, environ={})
    structlog.get_logger().info("upload_done")
    structlog.get_logger().warning("deletions_withheld")
    assert "upload_done" not in buf.getvalue() and "deletions_withheld" in buf.getvalue()
