"""`StandInServer`: a faithful local double of JATOS's study-assets HTTP API.

Owns the public face of the stand-in (lifecycle, data directory, users/tokens/studies,
request log, faults) and wires together `state.py` (records), `app.py` (JATOS behaviour
per personality) and `transport.py` (HTTP on loopback). Behaviour follows
JATOS_ASSETS_API.md (cited as §n).

It must never print or log a token (reprs do not show one), and nothing here keeps a
request body in memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from jatos_sync.testing import assets
from jatos_sync.testing.app import JatosApp, classify
from jatos_sync.testing.faults import Faults
from jatos_sync.testing.personality import ApiError, ErrorKind, Personality, get_personality
from jatos_sync.testing.state import JatosState, RequestRecord, Study
from jatos_sync.testing.transport import StandInHTTPServer
from jatos_sync.testing.wire import Request, Response

__all__ = ["DEFAULT_MAX_BODY_BYTES", "RequestRecord", "StandInServer", "Study", "standin"]

DEFAULT_MAX_BODY_BYTES = 2 * 1024**3  # play.http.parser.maxDiskBuffer = 2048MB (§4.1)
_JOIN_TIMEOUT_S = 5.0


class StandInServer:
    """A local JATOS in one of three personalities, for tests, demos and users' CI.

    `personality`: "3.10" (JATOS 3.10.5), "3.9" (3.9.8) or "3.8.1". `data_dir` holds the
    study assets as `<data_dir>/study_assets_root/<dirName>`; None means a private temp
    dir that `stop()` removes. `prefix` is a URL path prefix such as "/jatos-prefix".
    `max_body_bytes` is JATOS's own request body limit (→ the version's 413).
    """

    def __init__(
        self,
        *,
        personality: str = "3.10",
        data_dir: Path | None = None,
        prefix: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        api_allowed: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.personality: Personality = get_personality(personality)
        self.api_version: str = self.personality.api_version
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.faults = Faults()
        #: Convenience slots filled by `populate()` and the pytest fixtures.
        self.token: str | None = None
        self.study: Study | None = None

        self._port = port
        self._data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self._owns_data_dir = data_dir is None
        self._state = JatosState()
        self._app = JatosApp(
            self._state,
            self.personality,
            prefix=self.prefix,
            api_allowed=api_allowed,
            upload_tmp_dir=self._upload_tmp_dir,
        )
        self._httpd: StandInHTTPServer | None = None
        self._stop_event = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL including the prefix, no trailing slash, e.g. "http://127.0.0.1:41234/pfx"."""
        if not self._port:
            raise RuntimeError("StandInServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}{self.prefix}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def data_dir(self) -> Path:
        return self._ensure_data_dir()

    @property
    def assets_root(self) -> Path:
        """JATOS's `study_assets_root`: one directory per study's `dirName`."""
        return self._ensure_data_dir() / "study_assets_root"

    @property
    def api_allowed(self) -> bool:
        """JATOS's `jatos.api.allowed` (§1.3); may be changed while running."""
        return self._app.api_allowed

    @api_allowed.setter
    def api_allowed(self, value: bool) -> None:
        self._app.api_allowed = value

    @property
    def case_insensitive(self) -> bool:
        """Whether the study assets live on a disk that ignores letter case (JATOS on macOS
        or Windows); may be changed while running."""
        return self._app.case_insensitive

    @case_insensitive.setter
    def case_insensitive(self, value: bool) -> None:
        self._app.case_insensitive = value

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request seen, in order (including faulted and dropped ones)."""
        return self._state.requests

    def start(self) -> StandInServer:
        """Listen (on the same port again after `kill()`) and serve in daemon threads."""
        if self._httpd is not None:
            return self
        self._ensure_data_dir()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._stop_event = threading.Event()
        httpd = StandInHTTPServer((self.host, self._port), _Backend(self), family=family)
        self._port = httpd.port
        self._httpd = httpd
        httpd.start()
        return self

    def kill(self) -> None:
        """Stop listening and cut every open connection; new connections are refused.

        Data, users, tokens and studies stay; `restart()` listens on the same port again.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop_event.set()  # wakes up requests sleeping in injected latency
        httpd.close(join_timeout_s=_JOIN_TIMEOUT_S)

    def restart(self) -> StandInServer:
        """`kill()`, then `start()` on the same port with the same data."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Shut down, join all threads, and remove the private temp dir if there is one."""
        self.kill()
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self.running else "stopped"
        return f"<StandInServer personality={self.personality.name} {where}>"

    def _ensure_data_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="jatos-standin-"))
        (self._data_dir / "study_assets_root").mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def _upload_tmp_dir(self) -> Path:
        # Beside the assets root, so moving an upload into place is a rename (§8.2).
        tmp = self._ensure_data_dir() / ".upload-tmp"
        tmp.mkdir(exist_ok=True)
        return tmp

    # ------------------------------------------------------------------ users and tokens

    def add_user(self, username: str, *, roles: tuple[str, ...] = ("USER",)) -> None:
        """Add a user with JATOS roles such as "USER", "ADMIN", "VIEWER" (§1.4)."""
        self._state.add_user(username, roles)

    def set_user_active(self, username: str, active: bool) -> None:
        """Deactivate (or reactivate) a user, as an admin would (§1.1 step 5)."""
        with self._state.lock:
            self._state.user(username).active = active

    def add_token(
        self,
        username: str,
        *,
        expires_s: int | None = None,
        active: bool = True,
        name: str = "jatos-sync test",
    ) -> str:
        """Mint a fresh token for `username` in the real format; only its hash is kept."""
        return self._state.add_token(username, expires_s=expires_s, active=active, name=name)

    def expire_token(self, token: str) -> None:
        """Make `token` expired, as if its lifetime had run out."""
        self._state.expire_token(token)

    def revoke_token(self, token: str) -> None:
        """Deactivate `token` (the GUI's "deactivate")."""
        with self._state.lock:
            self._state.token(token).active = False

    # ------------------------------------------------------------------ studies and files

    def add_study(
        self,
        title: str = "Test study",
        *,
        members: Iterable[str] = (),
        locked: bool = False,
        dir_name: str | None = None,
    ) -> Study:
        """Create a study (IDs count from 1) with its assets directory (kept if it exists)."""
        study = self._state.add_study(
            title, members=members, locked=locked, dir_name=dir_name, assets_root=self.assets_root
        )
        study.assets_dir.mkdir(parents=True, exist_ok=True)
        return study

    def add_member(self, study: Study | int, username: str) -> None:
        with self._state.lock:
            self._state.user(username)
            self._state.study(study).members.add(username)

    def set_locked(self, study: Study | int, locked: bool) -> None:
        with self._state.lock:
            self._state.study(study).locked = locked

    def files(self, study: Study | int) -> dict[str, bytes]:
        """Relative POSIX path -> content of the study's regular files (for assertions)."""
        return assets.regular_files(self._state.study(study).assets_dir)

    def put_file(self, study: Study | int, path: str, content: bytes) -> None:
        """Write an asset directly, as if someone edited it in the JATOS GUI."""
        target = self._state.study(study).assets_dir.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.put-{uuid.uuid4().hex}")
        tmp.write_bytes(content)
        os.replace(tmp, target)

    def populate(
        self, username: str = "alice", *, study_title: str = "Test study"
    ) -> StandInServer:
        """Add `username` (if new), a token for them (→ `self.token`) and a study they are a
        member of (→ `self.study`). Returns self."""
        with self._state.lock:
            if username not in self._state.users:
                self.add_user(username)
            self.token = self.add_token(username)
            self.study = self.add_study(study_title, members=[username])
        return self

    # ------------------------------------------------------------------ request log

    def clear_requests(self) -> None:
        self._state.clear_requests()

    def count(self, method: str | None = None, *, kind: str | None = None) -> int:
        """Recorded requests matching `method` and/or `kind` ("list", "upload", "delete",
        "download", "token", "properties", "other"); faulted ones count too."""
        return self._state.count(method, kind)


class _Backend:
    """The transport's view of a `StandInServer` (see `transport.Backend`)."""

    def __init__(self, server: StandInServer) -> None:
        self._server = server

    @property
    def faults(self) -> Faults:
        return self._server.faults

    @property
    def max_body_bytes(self) -> int:
        return self._server.max_body_bytes

    @property
    def stop_event(self) -> threading.Event:
        return self._server._stop_event

    def handle(self, req: Request) -> Response:
        return self._server._app.handle(req)

    def too_large(self, req: Request) -> Response:
        return self._server._app.render_error(req, ApiError(ErrorKind.TOO_LARGE))

    def internal_error(self, req: Request) -> Response:
        return self._server._app.render_error(req, ApiError(ErrorKind.INTERNAL))

    def record(self, method: str, target: str, path: str, status: int, bytes_in: int) -> None:
        kind = classify(method, path)
        self._server._state.record(RequestRecord(method, target, status, bytes_in, kind))


@contextlib.contextmanager
def standin(
    personality: str = "3.10", *, username: str = "alice", **kwargs: Any
) -> Iterator[StandInServer]:
    """A started server populated with `username`, `.token` and `.study`; stopped on exit.

    Other keyword arguments go to `StandInServer`.
    """
    with StandInServer(personality=personality, **kwargs) as server:
        server.populate(username)
        yield server
