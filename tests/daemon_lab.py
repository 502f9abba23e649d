"""A daemon lab for the tests of the `watch` daemon (jatos_sync/daemon/): a World with room for
more mappings, short `Timings`, and helpers to run a `Daemon` in a thread and wait for its
status. Used by test_daemon_*.py, test_watch_real.py and test_chaos_daemon.py."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jatos_sync.client import JatosClient
from jatos_sync.config import Config, load_config
from jatos_sync.credentials import Token, load_token
from jatos_sync.daemon.supervisor import Daemon
from jatos_sync.daemon.worker import Timings
from jatos_sync.state import StateStore
from jatos_sync.testing import StandInServer
from jatos_sync.watch import Mode, Observer, default_observer_factory
from tests.conftest import World, make_world

FAST = Timings(
    pause_base_s=0.2,
    pause_max_s=1.0,
    auth_recheck_s=0.5,
    file_retry_base_s=0.2,
    file_retry_max_s=1.0,
    folder_check_s=0.1,
    stop_timeout_s=5.0,
    status_interval_s=0.05,
    tick_s=0.02,
)
FAST_WATCH = "watch:\n  debounce: 0.05\n  delete_delay: 0.4\n"


# ------------------------------------------------------------------------------ helpers


def wait_for(what: str, condition: Callable[[], object], timeout_s: float = 15.0) -> None:
    """Poll `condition` until it is true; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def client_factory(config: Config, token: Token) -> JatosClient:
    return JatosClient.for_server(config.server, token, backoff_base_s=0.05)


def asset_requests(server: StandInServer, kind: str) -> Counter[str]:
    """How often each asset path was uploaded (or deleted, …)."""
    return Counter(
        unquote(r.path.split("/assets/", 1)[1].split("?", 1)[0])
        for r in list(server.requests)
        if r.kind == kind
    )


class Lab:
    """A World (server, token, study, folder) with room for more mappings and a daemon."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.server = world.server
        self.env = {"JATOS_TOKEN": world.token}
        self.folders: dict[str, Path] = {"exp": world.folder}
        self.studies: dict[str, Any] = {"exp": world.study}
        self.watch = FAST_WATCH

    def add_mapping(self, name: str, *, locked: bool = False) -> Path:
        folder = self.world.folder.parent / name
        folder.mkdir(exist_ok=True)
        self.folders[name] = folder
        self.studies[name] = self.server.add_study(name, members=["alice"], locked=locked)
        return folder

    def write_config(self, *names: str, header: str = "") -> None:
        names = names or tuple(self.folders)
        entries = "".join(
            f"  - name: {n}\n    folder: {self.folders[n]}\n    study: {self.studies[n].id}\n"
            for n in names
        )
        self.world.config_path.write_text(
            f"{header}server:\n  url: {self.server.url}\n  retries: 1\n  timeout: 5\n"
            f"state_dir: {self.world.state_dir}\n{self.watch}mappings:\n{entries}",
            encoding="utf-8",
        )

    def config(self) -> Config:
        return load_config(self.world.config_path)

    def daemon(
        self,
        *,
        observer_factory: Callable[[Mode, float], Observer] | None = None,
        timings: Timings = FAST,
    ) -> Daemon:
        config = self.config()
        token = load_token(config.server, environ=self.env)
        return Daemon(
            config,
            token=token,
            client_factory=client_factory,
            environ=self.env,
            observer_factory=observer_factory or default_observer_factory,
            timings=timings,
        )

    def files(self, name: str = "exp") -> dict[str, bytes]:
        return self.server.files(self.studies[name])

    def put(self, rel: str, content: str, name: str = "exp") -> None:
        path = self.folders[name] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def status(self) -> dict[str, Any]:
        # The daemon's own status file (it may run in another process: the newest one).
        files = StateStore(self.world.state_dir).status_dir().glob("*.json")
        newest = max(files, key=lambda p: p.stat().st_mtime_ns)
        data = json.loads(newest.read_text())
        assert isinstance(data, dict)
        return data

    def mapping_status(self, name: str = "exp") -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            for m in self.status()["mappings"]:
                if m["name"] == name:
                    return dict(m)
        return {}


def make_lab(tmp_path: Path) -> Iterator[Lab]:
    """A Lab with one mapping, "exp", configured (for a fixture: `yield from make_lab(…)`)."""
    for world in make_world(tmp_path):
        lab = Lab(world)
        lab.write_config()
        yield lab


@contextlib.contextmanager
def running(daemon: Daemon) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=daemon.run, name="test-daemon")
    thread.start()
    try:
        yield thread
    finally:
        daemon.request_stop()
        thread.join(15)
        assert not thread.is_alive(), "the daemon did not stop"


def idle(lab: Lab, name: str = "exp") -> Callable[[], bool]:
    def check() -> bool:
        m = lab.mapping_status(name)
        return m.get("state") == "idle" and m.get("pending") == 0

    return check
