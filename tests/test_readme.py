"""The README's Quick start is true: its commands, run as it shows them in a fresh folder with
a new HOME against the stand-in (the example server and study replaced by the stand-in's),
take a researcher from an experiment folder to a synced study and a running watch; and the
`init` dialogue it shows is the one the program holds, question by question.

The install steps (git clone, venv, pip, activate) are run by CI on a fresh clone
(.ci/readme_demo.py)."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jatos_sync.cli import main
from jatos_sync.config import load_config
from jatos_sync.testing import StandInServer
from tests.test_init import Pty

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE_URL = "https://jatos.example.org"
EXAMPLE_HOME = "/home/ann"


def quick_start() -> str:
    return README[README.index("\n## Quick start\n") : README.index("\n## Commands\n")]


def blocks(text: str, language: str) -> list[list[str]]:
    """The fenced blocks of `language` ("" for none) in `text`, as lists of lines."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is None and line.startswith("```"):
            current = [] if line[3:].strip() == language else None
            if current is None:
                current = ["<other>"]
        elif current is not None and line == "```":
            if current[:1] != ["<other>"]:
                found.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return found


def commands() -> list[list[str]]:
    """The jatos-sync commands of the Quick start's shell blocks, comments left out."""
    found = []
    for block in blocks(quick_start(), "sh"):
        for line in block:
            words = line.split("#")[0].split()
            if words and words[0] == "jatos-sync":
                found.append(words[1:])
    return found


@dataclass
class Lab:
    server: StandInServer
    token: str
    study_id: int
    study_uuid: str
    home: Path
    folder: Path
    env: dict[str, str]

    def instead_of_the_example(self, words: list[str]) -> list[str]:
        swap = {EXAMPLE_URL: self.server.url, "42": str(self.study_id)}
        return [swap.get(word, word) for word in words]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    home = tmp_path / "home"
    folder = home / "experiments" / "stroop"
    shutil.copytree(ROOT / "jatos_sync" / "sample_project", folder)
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm",
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
        "NO_COLOR": "1",
    }
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "JATOS_SYNC_STATE_DIR", "JATOS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))  # the default state directory is found through it
    monkeypatch.chdir(folder)
    with StandInServer(personality="3.10", data_dir=tmp_path / "server") as server:
        server.populate("alice", study_title="Stroop task")
        server.add_study("Flanker task", members=["alice"])
        assert server.token is not None and server.study is not None
        yield Lab(server, server.token, server.study.id, server.study.uuid, home, folder, env)


def test_the_quick_start_shows_init_check_sync_and_watch_in_this_order() -> None:
    shown = [words[0] if words else "" for words in commands()]
    assert shown == ["--version", "init", "init", "check", "sync", "sync", "watch"]
    text = quick_start()
    assert "source .venv/bin/activate" in text and ".venv/bin/pip install ." in text
    assert "API tokens" in text and "ID and UUID" in text


def test_the_quick_start_commands_take_a_folder_to_a_synced_study(lab: Lab) -> None:
    env = {**lab.env, "JATOS_TOKEN": lab.token}
    ran = []
    for words in commands():
        if words in (["init"], ["watch"]):
            continue  # asked on a terminal, and a daemon: the tests below
        argv = lab.instead_of_the_example(words)
        out, err = io.StringIO(), io.StringIO()
        code = main(argv, environ=env, stdout=out, stderr=err)
        assert code == 0, (argv, out.getvalue(), err.getvalue())
        ran.append(argv[0])
    assert ran == ["--version", "init", "check", "sync", "sync"]
    config = load_config(lab.folder / "jatos-sync.yaml")
    assert config.mappings[0].study == str(lab.study_id)
    assert lab.server.study is not None
    served = lab.server.files(lab.server.study)
    assert served and set(served) <= {
        p.relative_to(lab.folder).as_posix() for p in lab.folder.rglob("*") if p.is_file()
    }
    assert "index.html" in served

    # `jatos-sync watch`: ready, an edit uploaded, Ctrl-C stops it with exit 0.
    with subprocess.Popen(
        [sys.executable, "-m", "jatos_sync", "watch"],
        cwd=lab.folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as watch:
        try:
            assert watch.stderr is not None
            deadline = time.monotonic() + 30
            lines: list[str] = []
            while not any('"watch_ready"' in line for line in lines):
                assert time.monotonic() < deadline and watch.poll() is None, lines
                lines.append(watch.stderr.readline())
            (lab.folder / "index.html").write_text("<p>edited</p>\n")
            while served_index(lab) != b"<p>edited</p>\n":
                assert time.monotonic() < deadline, "the edit was not uploaded"
                time.sleep(0.05)
            watch.send_signal(signal.SIGINT)
            assert watch.wait(timeout=20) == 0
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()


def served_index(lab: Lab) -> bytes | None:
    assert lab.server.study is not None
    return lab.server.files(lab.server.study).get("index.html")


def transcript() -> list[str]:
    """The README's `init` dialogue, up to the check's first lines."""
    for block in blocks(quick_start(), ""):
        if block and block[0].startswith("Let's connect"):
            return block
    raise AssertionError("the Quick start shows no init dialogue")


def test_the_init_dialogue_in_the_quick_start_is_the_real_one(lab: Lab, tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(  # the terminal becomes the controlling one, so getpass reads it
        "import fcntl, os, sys, termios\n"
        "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'jatos_sync', 'init'])\n"
    )
    session = Pty([sys.executable, str(driver)], cwd=lab.folder, env=lab.env)
    try:
        session.expect("JATOS address")
        session.send(lab.server.url)
        session.expect("Paste the token")
        session.send(lab.token)
        session.expect("Store the token in")
        session.send("")
        session.expect("Local folder to sync [.]")
        session.send("")
        session.expect("Which study?")
        session.send("b")
        session.expect("Sync with")
        session.send("")
        code = session.finish()
    finally:
        session.close()
    real = [line.rstrip() for line in session.text.replace("\r\n", "\n").splitlines()]
    assert code == 0, "\n".join(real)
    assert lab.token not in session.text

    swaps = {
        EXAMPLE_URL: lab.server.url,
        EXAMPLE_HOME: str(lab.home),
        "ID 42": f"ID {lab.study_id}",
        "study 42": f"study {lab.study_id}",
        "0410b4be-eeb6-4d3b-9e92-2ee16a64685e": lab.study_uuid,
    }
    at = 0
    for shown in transcript():
        if re.match(r"\s+([a-z]\s+\d+|ID)\s", shown) or shown.strip() in ("", "…"):
            continue  # the table's rows (their widths vary) and what the README leaves out
        line = shown
        for example, real_value in swaps.items():
            line = line.replace(example, real_value)
        if shown.startswith("JATOS address"):  # the README types https://…; here, http://
            line = shown.split("): ")[0] + "):"
        found = [i for i in range(at, len(real)) if real[i].startswith(line.rstrip())]
        assert found, f"the README shows {shown!r}; the program says:\n" + "\n".join(real[at:])
        at = found[0] + 1
