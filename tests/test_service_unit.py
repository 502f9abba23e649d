"""The units' ExecStart, run the way systemd runs it: credentials and state directories from
the environment, no terminal, JOURNAL_STREAM and NOTIFY_SOCKET set. Checked: readiness, the
synced result, an edit followed, a clean stop, and journal-ready log lines."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jatos_sync.testing import StandInServer
from tests.daemon_lab import wait_for
from tests.test_systemd_units import load

UNITS = Path(__file__).resolve().parent.parent / "systemd"


def expand(value: str, instance: str) -> str:
    """The few unit specifiers our units use."""
    return value.replace("%i", instance).replace("%%", "%")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("unit_name", "instance"), [("jatos-sync.service", ""), ("jatos-sync@.service", "lab-a")]
)
def test_execstart_as_systemd_runs_it(tmp_path: Path, unit_name: str, instance: str) -> None:
    service = load(UNITS / unit_name)["Service"]
    argv = shlex.split(expand(service["ExecStart"][-1], instance))
    config_in_unit = argv[argv.index("-c") + 1]
    credential_name, _, _source = expand(service["LoadCredential"][0], instance).partition(":")
    state_name = expand(service["StateDirectory"][0], instance)

    with StandInServer(personality="3.10", data_dir=tmp_path / "server") as server:
        server.add_user("lab")
        token = server.add_token("lab")
        study = server.add_study("Flanker", members=["lab"])
        folder = tmp_path / "srv" / "flanker"
        folder.mkdir(parents=True)
        (folder / "index.html").write_text("<html></html>\n")
        (folder / "js").mkdir()
        (folder / "js" / "task.js").write_text("task();\n")

        # The admin's files, where the unit expects them (here under tmp_path).
        config = tmp_path / config_in_unit.lstrip("/")
        config.parent.mkdir(parents=True)
        config.write_text(
            f"server:\n  url: {server.url}\nmappings:\n"
            f"  - name: flanker\n    folder: {folder}\n    study: {study.id}\n"
        )
        credentials = tmp_path / "run" / "credentials" / "unit"
        credentials.mkdir(parents=True, mode=0o700)
        (credentials / credential_name).write_text(token + "\n")
        state = tmp_path / "var" / "lib" / state_name

        directory = tempfile.mkdtemp(prefix="js-", dir="/tmp")  # AF_UNIX paths are short
        notify_path = os.path.join(directory, "notify")
        messages: list[str] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(notify_path)
            sock.settimeout(0.2)

            def heard(line: str) -> bool:
                with contextlib.suppress(TimeoutError):
                    messages.extend(sock.recv(4096).decode().splitlines())
                return line in messages

            environ = {
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path / "nohome"),
                "CREDENTIALS_DIRECTORY": str(credentials),
                "STATE_DIRECTORY": str(state),
                "JOURNAL_STREAM": "8:123456",
                "NOTIFY_SOCKET": notify_path,
                "INVOCATION_ID": "0123456789abcdef",
            }
            for assignment in service.get("Environment", []):
                key, _, value = assignment.partition("=")
                environ[key] = value
            state.mkdir(parents=True, mode=0o700)  # systemd creates StateDirectory= first
            log_path = tmp_path / "journal.log"
            command = [sys.executable, "-m", "jatos_sync", *argv[1:]]
            command[command.index(config_in_unit)] = str(config)
            with log_path.open("wb") as journal:
                proc = subprocess.Popen(
                    command,
                    env=environ,
                    stdin=subprocess.DEVNULL,
                    stdout=journal,
                    stderr=journal,
                )
                try:
                    wait_for("READY=1", lambda: heard("READY=1"))
                    assert server.files(study) == {
                        "index.html": b"<html></html>\n",
                        "js/task.js": b"task();\n",
                    }
                    (folder / "js" / "task.js").write_text("task(2);\n")
                    wait_for("the edit", lambda: server.files(study)["js/task.js"] == b"task(2);\n")
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(timeout=15) == 0
                    wait_for("STOPPING=1", lambda: heard("STOPPING=1"), timeout_s=5)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
        os.unlink(notify_path)
        os.rmdir(directory)

    assert any(m.startswith("STATUS=") for m in messages)
    lines = log_path.read_text().splitlines()
    assert lines, "the service logged nothing"
    events = []
    for line in lines:
        # One event per line, a syslog priority the journal understands, no colours.
        assert line[:3] in {"<7>", "<6>", "<4>", "<3>", "<2>"}, line
        assert "\x1b[" not in line
        events.append(json.loads(line[3:]))
    names = [e["event"] for e in events]
    assert "upload_done" in names and names[-1] == "watch_stopped"
    assert token not in log_path.read_text() and token[4:35] not in log_path.read_text()
    # State went to the StateDirectory systemd provided, nowhere else.
    assert (state / "mappings").is_dir()
    assert oct(state.stat().st_mode & 0o777) == "0o700"
