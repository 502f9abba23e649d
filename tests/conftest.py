"""Shared fixtures: guards against leaked threads and stray files for every test, and a
ready-made sync "world"."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.cli import main
from jatos_sync.testing import StandInServer


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (bounded wait for ones that are finishing)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
def _nothing_left_in_the_working_directory() -> Iterator[None]:
    """Fail a test that creates files where it was started (the checkout, in CI): a command
    run without --folder or -c works relative to the current directory."""
    before = set(os.listdir("."))
    yield
    stray = sorted(set(os.listdir(".")) - before)
    assert not stray, f"test left {stray} in the working directory {os.getcwd()}"


# ---------------------------------------------------------------- an end-to-end "world"


def assert_no_token(tokens: set[str], text: str, where: str) -> None:
    """Fail if any token, or the random middle part of one, appears in `text`."""
    for token in filter(None, tokens):
        for secret in (token, token[4:35]):
            assert secret not in text, f"a token leaked into {where}"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class World:
    """A stand-in server with a user, a token and a study, a local folder and a config."""

    server: StandInServer
    token: str
    study: Any
    folder: Path
    config_path: Path
    state_dir: Path
    study_ref: str
    env: dict[str, str] = field(default_factory=dict)
    tokens_used: set[str] = field(default_factory=set)

    def write_config(
        self,
        *,
        mapping_extra: str = "",
        server_extra: str = "",
        url: str | None = None,
        study: str | None = None,
    ) -> None:
        self.config_path.write_text(
            f"server:\n"
            f"  url: {url or self.server.url}\n"
            f"  retries: 1\n"
            f"  timeout: 5\n"
            f"{server_extra}"
            f"state_dir: {self.state_dir}\n"
            f"mappings:\n"
            f"  - name: exp\n"
            f"    folder: {self.folder}\n"
            f"    study: {study or self.study_ref}\n"
            f"{mapping_extra}",
            encoding="utf-8",
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        environ = {"JATOS_TOKEN": self.token, **self.env, **(env or {})}
        code = main(["-c", str(self.config_path), *args], environ=environ, stdout=out, stderr=err)
        self.tokens_used.add(environ["JATOS_TOKEN"])
        assert_no_token(self.tokens_used, out.getvalue() + err.getvalue(), "CLI output")
        return Run(code, out.getvalue(), err.getvalue())

    def assert_no_token_on_disk(self) -> None:
        """Neither the state (incl. backups) nor the synced folder may hold a token."""
        for root in (self.state_dir, self.folder):
            for path in root.rglob("*") if root.is_dir() else ():
                if path.is_file() and not path.is_symlink():
                    text = path.read_bytes().decode("utf-8", "replace")
                    assert_no_token(self.tokens_used, text, str(path))

    def remote(self) -> dict[str, bytes]:
        return self.server.files(self.study)

    def local(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.folder).as_posix(): p.read_bytes()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file()
        }

    def put(self, rel: str, content: bytes | str) -> Path:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path


def make_world(
    tmp_path: Path, *, personality: str = "3.10", prefix: str = "", by_uuid: bool = False
) -> Iterator[World]:
    server = StandInServer(personality=personality, prefix=prefix, data_dir=tmp_path / "server")
    server.start()
    try:
        server.add_user("alice")
        token = server.add_token("alice")
        study = server.add_study("Stroop", members=["alice"])
        folder = tmp_path / "experiment"
        folder.mkdir()
        world = World(
            server=server,
            token=token,
            study=study,
            folder=folder,
            config_path=tmp_path / "jatos-sync.yaml",
            state_dir=tmp_path / "state",
            study_ref=study.uuid if by_uuid else str(study.id),
        )
        world.write_config()
        world.tokens_used.add(token)
        yield world
        world.assert_no_token_on_disk()
    finally:
        server.stop()


@pytest.fixture(
    params=[
        ("3.9", "", False),
        ("3.10", "", False),
        ("3.9", "/jatos-pfx", True),
        ("3.10", "/sub/dir", True),
    ],
    ids=["3.9", "3.10", "3.9-prefix-uuid", "3.10-prefix-uuid"],
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    personality, prefix, by_uuid = request.param
    yield from make_world(tmp_path, personality=personality, prefix=prefix, by_uuid=by_uuid)


@pytest.fixture
def world310(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, personality="3.10")


@pytest.fixture(params=["3.9", "3.10"])
def world_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, personality=request.param)
