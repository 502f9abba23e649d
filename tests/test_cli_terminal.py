"""The real command line in a pseudo-terminal, as a researcher sees it: sentences with
symbols and colour (none with NO_COLOR), a summary line per mapping, the watch greeting,
errors said once, no `key=value` records, no log line between init's questions — and
through a pipe the same commands still write the JSON lines scripts and journald read.

Each test runs `python -m jatos_sync` in a subprocess (so that isatty() is true for it)
against the stand-in server of the test process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jatos_sync.config import load_config
from tests.conftest import World
from tests.test_init import Pty

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

REPO = Path(__file__).resolve().parents[1]
# A log record as JSON lines or key=value renderers write it: `path=a.js`, `bytes=176`.
RECORD = re.compile(r"\b[a-z_]+=\S")
COLOUR = "\x1b["


def environment(world: World, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(world.folder.parent / "home"),
        "PYTHONPATH": str(REPO),
        "JATOS_TOKEN": world.token,
        "TERM": "xterm",
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
    }
    env.update(extra)
    return env


def in_terminal(world: World, *argv: str, **extra: str) -> tuple[int, str]:
    """Run `jatos-sync -c CONFIG ARGV` with a pseudo-terminal as stdin, stdout and stderr."""
    session = start(world, *argv, **extra)
    try:
        code = session.finish()
    finally:
        session.close()
    world.tokens_used.add(world.token)
    assert world.token not in session.text
    return code, session.text.replace("\r\n", "\n")


def start(world: World, *argv: str, **extra: str) -> Pty:
    command = [sys.executable, "-m", "jatos_sync", "-c", str(world.config_path), *argv]
    return Pty(command, cwd=world.folder.parent, env=environment(world, **extra))


def through_a_pipe(world: World, *argv: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "jatos_sync", "-c", str(world.config_path), *argv],
        env=environment(world),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def no_records(text: str) -> None:
    assert not [line for line in text.splitlines() if RECORD.search(line)], text


# ---------------------------------------------------------------- sentences


def test_sync_speaks_in_sentences_and_ends_with_a_summary_line(world310: World) -> None:
    world310.put("a.js", "a")
    world310.put("index.html", "<p>")
    code, text = in_terminal(world310, "sync")
    assert code == 0, text
    assert "↑ a.js  1 B" in text and "↑ index.html  3 B" in text
    summary = f"✓ exp → study {world310.study_ref}: 2 uploaded, 0 deleted, 0 unchanged"
    assert text.rstrip().splitlines()[-1] == f"\x1b[32m{summary}\x1b[0m"
    assert "· exp: 2 files in the folder" in text
    no_records(text)


def test_no_color_keeps_the_words_and_symbols_without_colour(world310: World) -> None:
    world310.put("a.js", "a")
    code, text = in_terminal(world310, "sync", NO_COLOR="1")
    assert code == 0, text
    assert COLOUR not in text
    assert "↑ a.js  1 B" in text
    assert f"✓ exp → study {world310.study_ref}: 1 uploaded" in text


def test_quiet_after_the_command_keeps_only_the_summary(world310: World) -> None:
    world310.put("a.js", "a")
    code, text = in_terminal(world310, "sync", "-q", NO_COLOR="1")
    assert code == 0, text
    assert text.strip() == f"✓ exp → study {world310.study_ref}: 1 uploaded, 0 deleted, 0 unchanged"


def test_status_and_pull_end_with_a_summary_line(world310: World) -> None:
    world310.put("a.js", "a")
    code, text = in_terminal(world310, "status", NO_COLOR="1")
    assert code == 0, text
    assert f"✓ exp → study {world310.study_ref}: 1 would upload, 0 would delete" in text
    assert in_terminal(world310, "sync")[0] == 0
    (world310.folder / "a.js").unlink()
    code, text = in_terminal(world310, "pull", NO_COLOR="1")
    assert code == 0, text
    assert f"✓ exp ← study {world310.study_ref}: 1 downloaded" in text
    assert "↓ a.js  1 B" in text
    no_records(text)


def test_a_locked_study_is_said_once_with_what_to_do(world310: World) -> None:
    world310.put("a.js", "a")
    world310.server.set_locked(world310.study, True)
    code, text = in_terminal(world310, "sync")
    assert code == 3, text
    assert f"\x1b[33m⚠ exp → study {world310.study_ref}: stopped." in text
    assert text.count("The study is locked in JATOS") == 1 and "unlock it" in text
    no_records(text)


def test_a_yaml_mistake_is_said_once_in_words(world310: World) -> None:
    world310.config_path.write_text("server:\n\turl: http://h\nmappings: []\n")
    code, text = in_terminal(world310, "sync", NO_COLOR="1")
    assert code == 2
    assert text.count("tabs are not allowed in YAML; use spaces") == 1, text
    assert f"{world310.config_path}:2" in text
    assert "while scanning" not in text and "Traceback" not in text


# ---------------------------------------------------------------- watch


def test_watch_greets_once_it_is_ready_and_stops_on_ctrl_c(world310: World) -> None:
    world310.put("index.html", "<p>")
    session = start(world310, "watch", NO_COLOR="1")
    try:
        session.expect(
            f"✓ Watching {world310.folder} → study {world310.study_ref} on "
            f"{world310.server.url}. Save a file and it is uploaded; Ctrl-C stops."
        )
        os.killpg(session.proc.pid, signal.SIGINT)
        code = session.finish()
    finally:
        session.close()
    assert code == 0, session.text
    assert "✓ Stopped." in session.text
    no_records(session.text)


def test_watch_with_every_mapping_paused_says_so_on_the_terminal(world310: World) -> None:
    world310.write_config(mapping_extra="")
    world310.folder.rename(world310.folder.with_name("moved"))
    session = start(world310, "watch", NO_COLOR="1")
    try:
        session.expect("✖ Nothing is being synced: exp:")
        os.killpg(session.proc.pid, signal.SIGINT)
        code = session.finish()
    finally:
        session.close()
    assert code == 0, session.text
    assert "does not exist" in session.text


# ---------------------------------------------------------------- init


def test_init_keeps_log_lines_out_of_its_questions(world310: World) -> None:
    """A wrong address (https:// to a server that speaks http://): the hint and the
    question again, and not one log line or retry between the questions."""
    host = world310.server.url.removeprefix("http://")
    new = world310.folder.parent / "new.yaml"
    command = [sys.executable, "-m", "jatos_sync", "-c", str(new), "init"]
    session = Pty(command, cwd=world310.folder, env=environment(world310, NO_COLOR="1"))
    try:
        session.expect("JATOS address")
        session.send(host)
        session.expect("Use the API token in $JATOS_TOKEN? [Y/n]")
        session.send("")
        session.expect("may speak plain http://")
        session.expect(f"JATOS address (e.g. https://jatos.example.org) [{world310.server.url}]")
        session.send("")
        session.expect("Local folder to sync [.]")
        session.send("")
        session.expect("Which study?")
        session.send("a")
        session.expect("Sync with")
        session.send("")
        code = session.finish()
    finally:
        session.close()
    text = session.text.replace("\r\n", "\n")
    assert code == 0, text
    dialogue = text[: text.index("Wrote ")]
    assert "↻" not in dialogue and "trying again" not in dialogue
    assert [line for line in dialogue.splitlines() if line.startswith(("·", "⚠", "✖", "{"))] == []
    no_records(dialogue)
    assert "ok: ready to sync" in text
    assert load_config(new).server.url == world310.server.url


# ---------------------------------------------------------------- through a pipe

# The JSON lines (event, keys) these commands wrote before the terminal learned to speak:
# scripts, CI logs and journald read them, so they stay as they are.
SCAN = ("scan_done", ["bytes_hashed", "cache_hits", "event", "files", "level", "mapping"])
UPLOAD = ("upload_done", ["bytes", "elapsed_s", "event", "level", "path"])
STOPPED = ("mapping_failed", ["error", "event", "level", "mapping"])
FAILED = ("command_failed", ["command", "error", "event", "exit_code", "level"])


def json_lines(stderr: str) -> list[tuple[str, list[str]]]:
    lines = [json.loads(line) for line in stderr.splitlines()]
    return [(d["event"], sorted(k for k in d if k != "timestamp")) for d in lines]


def test_through_a_pipe_the_same_commands_write_the_same_json_lines(world310: World) -> None:
    world310.put("a.js", "a")
    world310.put("index.html", "<p>")
    code, out, err = through_a_pipe(world310, "sync")
    assert code == 0
    assert json_lines(err) == [SCAN, UPLOAD, UPLOAD]
    assert out == f"exp → study {world310.study_ref}: 2 uploaded, 0 deleted, 0 unchanged\n"
    assert COLOUR not in out + err

    code, out, err = through_a_pipe(world310, "status")
    assert (code, json_lines(err)) == (0, [SCAN])
    assert out.startswith(f"exp → study {world310.study_ref}: 0 would upload")

    world310.server.set_locked(world310.study, True)
    world310.put("b.js", "b")
    code, _out, err = through_a_pipe(world310, "sync")
    assert (code, json_lines(err)) == (3, [SCAN, STOPPED])

    world310.config_path.write_text("server: {url: http://h}\n")
    code, _out, err = through_a_pipe(world310, "sync")
    assert code == 2
    assert json_lines(err.splitlines()[0]) == [FAILED]
    assert err.splitlines()[1].startswith("jatos-sync: ")
