"""`StandInServer`: a faithful local double of JATOS's HTTP API.

Owns the public face of the stand-in (lifecycle, data directory, users/tokens/studies,
components and batches, participant runs and results, request log, faults) and wires
together `state.py` (records), `app.py` (JATOS behaviour per personality), `runs.py`
(participant runs) and `transport.py` (HTTP on loopback). Behaviour follows
docs/jatos-api.md, whose sections the comments cite.

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
from jatos_sync.testing.props import worker_type
from jatos_sync.testing.runs import RunError
from jatos_sync.testing.state import (
    Batch,
    Component,
    ComponentResult,
    JatosState,
    RequestRecord,
    Study,
    StudyResult,
)
from jatos_sync.testing.transport import StandInHTTPServer
from jatos_sync.testing.wire import Request, Response

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "RequestRecord",
    "RunError",
    "StandInServer",
    "Study",
    "standin",
]

# Play.http.parser.maxDiskBuffer = 2048MB (docs/jatos-api.md §5.1).
DEFAULT_MAX_BODY_BYTES = 2 * 1024**3
_JOIN_TIMEOUT_S = 5.0


class StandInServer:
    """A local JATOS in one of its personalities, for tests, demos and users' CI.

    `personality`: "3.10" (JATOS 3.10.5), "3.9" (3.9.8), "3.8.2" (alias "3.8") or "3.8.1".
    `data_dir` holds the study assets as `<data_dir>/study_assets_root/<dirName>` and the
    result files as `<data_dir>/result_uploads/`; None means a private temp dir that
    `stop()` removes. `prefix` is a URL path prefix such as "/jatos-prefix".
    `max_body_bytes` is JATOS's own request body limit (→ the version's 413). `database`
    ("h2" or "mysql") decides whether result `data.size` counts characters or bytes;
    `path_separator` is the server's file separator in ≤3.9 result paths ("\\" for a
    Windows server); `keepalive_s` is the results stream's keep-alive interval (30 s).
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
        database: str = "h2",
        path_separator: str = "/",
        keepalive_s: float = 30.0,
        result_id_seed: int = 0,
    ) -> None:
        if database not in {"h2", "mysql"}:
            raise ValueError(f"database must be 'h2' or 'mysql', not {database!r}")
        self.personality: Personality = get_personality(personality)
        self.api_version: str = self.personality.api_version
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.faults = Faults()
        self.database = database
        self.path_separator = path_separator
        self.keepalive_s = keepalive_s
        #: Convenience slots filled by `populate()` and the pytest fixtures.
        self.token: str | None = None
        self.study: Study | None = None

        self._port = port
        self._data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self._owns_data_dir = data_dir is None
        self._state = JatosState(result_id_seed=result_id_seed)
        self._app = JatosApp(
            self._state, self.personality, prefix=self.prefix, api_allowed=api_allowed, site=self
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
    def uploads_root(self) -> Path:
        """JATOS's result uploads directory: `study_result_<id>/comp-result_<id>/<file>`."""
        return self._ensure_data_dir() / "result_uploads"

    @property
    def api_allowed(self) -> bool:
        """JATOS's `jatos.api.allowed` (docs/jatos-api.md §2.2); may be changed while running."""
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
        (self._data_dir / "result_uploads").mkdir(exist_ok=True)
        return self._data_dir

    def tmp_dir(self) -> Path:
        """Where request bodies and archives wait; beside the assets root, so moving an
        upload into place is a rename (docs/jatos-api.md §9.5)."""
        tmp = self._ensure_data_dir() / ".upload-tmp"
        tmp.mkdir(exist_ok=True)
        return tmp

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the server is stopping."""
        return self._stop_event.wait(seconds)

    # ------------------------------------------------------------------ users and tokens

    def add_user(self, username: str, *, roles: tuple[str, ...] = ("USER",)) -> None:
        """Add a user with JATOS roles such as "USER", "ADMIN", "VIEWER"
        (docs/jatos-api.md §7.2)."""
        self._state.add_user(username, roles)

    def set_user_active(self, username: str, active: bool) -> None:
        """Deactivate (or reactivate) a user, as an admin would (docs/jatos-api.md §2.2)."""
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
        """Create a study (IDs count from 1) with its assets directory (kept if it exists)
        and a default batch allowing the version's default worker types
        (docs/jatos-api.md §13.3)."""
        study = self._state.add_study(
            title,
            members=members,
            locked=locked,
            dir_name=dir_name,
            assets_root=self.assets_root,
            batch_worker_types=self.personality.default_worker_types,
        )
        study.assets_dir.mkdir(parents=True, exist_ok=True)
        return study

    def find_study(self, study_uuid: str) -> Study | None:
        """The study with this UUID (e.g. one a client created by an import), or None."""
        return self._state.study_by_uuid(study_uuid.lower())

    def add_member(self, study: Study | int, username: str) -> None:
        with self._state.lock:
            self._state.user(username)
            self._state.study(study).members.add(username)

    def set_locked(self, study: Study | int, locked: bool) -> None:
        with self._state.lock:
            self._state.study(study).locked = locked

    def assets_dir(self, study: Study | int) -> Path:
        """The study's assets directory on the stand-in's disk (to fill it in bulk)."""
        return self._state.study(study).assets_dir

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

    # ------------------------------------------------------------------ components, batches

    def add_component(
        self,
        study: Study | int,
        title: str = "Component",
        *,
        html_file_path: str | None = "index.html",
        active: bool = True,
        reloadable: bool = False,
        comments: str | None = None,
        component_input: str | None = None,
    ) -> Component:
        """Append a component, as the GUI would (no validation)."""
        with self._state.lock:
            component = self._state.add_component(self._state.study(study))
            component.title = title
            component.html_file_path = html_file_path
            component.active = active
            component.reloadable = reloadable
            component.comments = comments
            component.input = component_input
            return component

    def add_batch(
        self, study: Study | int, title: str = "Batch", *, worker_types: Iterable[str] | None = None
    ) -> Batch:
        """Add a batch allowing `worker_types` (default: the version's default types)."""
        types = self.personality.default_worker_types if worker_types is None else worker_types
        with self._state.lock:
            batch = self._state.add_batch(self._state.study(study))
            batch.title = title
            batch.allowed_worker_types = {_worker_type(t) for t in types}
            return batch

    def set_allowed_worker_types(self, batch: Batch | int | Study, types: Iterable[str]) -> None:
        """Change which worker types may run in a batch (a study: its default batch), as the
        GUI can in every version (docs/jatos-api.md §13.3). Abbreviations such as "gs" are
        accepted."""
        with self._state.lock:
            target = self._batch(batch)
            target.allowed_worker_types = {_worker_type(t) for t in types}

    def _batch(self, batch: Batch | int | Study) -> Batch:
        if isinstance(batch, Study):
            default = self._state.study(batch).default_batch
            if default is None:
                raise ValueError(f"study {batch.id} has no batch")
            return default
        batch_id = batch.id if isinstance(batch, Batch) else batch
        try:
            return self._state.batches[batch_id]
        except KeyError:
            raise ValueError(f"unknown batch {batch_id}") from None

    # ------------------------------------------------------------------ participant runs

    def study_link(
        self,
        study: Study | int,
        worker_type: str = "PersonalMultiple",
        *,
        batch: Batch | int | None = None,
        comment: str | None = None,
    ) -> str:
        """A study code, as the API would make one (personal: a new worker each time;
        general: the batch's one code for that type)."""
        wtype = _worker_type(worker_type)
        with self._state.lock:
            target = self._batch(batch if batch is not None else self._state.study(study))
            if wtype in {"PersonalSingle", "PersonalMultiple"}:
                return self._state.add_personal_link(target, wtype, comment).code
            return self._state.general_link(target, wtype).code

    def link_url(self, code: str) -> str:
        """The participant URL of a study code: `<base>/publix/<code>` (docs/jatos-api.md §13.3)."""
        return f"{self.url}/publix/{code}"

    def open_link(self, code: str, query: dict[str, str] | None = None) -> StudyResult:
        """What opening the link does: a new study result (STARTED), or RunError."""
        return self._app.runs.open_link(code, query or {})

    def start_run(
        self,
        study: Study | int,
        worker_type: str = "PersonalMultiple",
        *,
        batch: Batch | int | None = None,
        comment: str | None = None,
        query: dict[str, str] | None = None,
    ) -> StudyResult:
        """A new link for `worker_type`, opened: the batch must allow the type."""
        code = self.study_link(study, worker_type, batch=batch, comment=comment)
        return self.open_link(code, query)

    def start_component(
        self, run: StudyResult | int, component: Component | int | str | None = None
    ) -> ComponentResult:
        """Start a component of a run (default: the next active one)."""
        ref = component.id if isinstance(component, Component) else component
        return self._app.runs.start_component(_srid(run), ref)

    def put_data(self, run: StudyResult | int, data: str, *, append: bool = False) -> None:
        """Replace (or append to) the data of the run's current component result."""
        self._app.runs.put_data(_srid(run), data, append=append)

    def add_result_file(self, run: StudyResult | int, filename: str, content: bytes) -> None:
        """Upload a result file to the run's current component result."""
        self._app.runs.add_file(_srid(run), filename, content)

    def finish_run(self, run: StudyResult | int, message: str | None = None) -> None:
        self._app.runs.finish(_srid(run), message=message)

    def fail_run(self, run: StudyResult | int, message: str | None = None) -> None:
        self._app.runs.finish(_srid(run), successful=False, message=message)

    def abort_run(self, run: StudyResult | int, message: str | None = None) -> None:
        """Abort: the data and files of every component result of the run are purged."""
        self._app.runs.abort(_srid(run), message)

    def study_results(self, study: Study | int | None = None) -> list[StudyResult]:
        """The study results (of one study), by ID."""
        with self._state.lock:
            wanted = None if study is None else self._state.study(study).id
            return sorted(
                (r for r in self._state.study_results.values() if wanted in (None, r.study_id)),
                key=lambda r: r.id,
            )

    def result_files(self, result: ComponentResult) -> dict[str, bytes]:
        """The uploaded files of a component result (for assertions)."""
        directory = self._app.runs.upload_dir(result.study_result_id, result.id)
        if not directory.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}

    def delete_results(self, *results: ComponentResult | StudyResult) -> None:
        """Delete results as the GUI would (files too; emptied study results go)."""
        doomed: list[ComponentResult] = []
        for result in results:
            if isinstance(result, StudyResult):
                doomed += result.component_results
            else:
                doomed.append(result)
        self._app.runs.delete(doomed)

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


def _srid(run: StudyResult | int) -> int:
    return run.id if isinstance(run, StudyResult) else run


def _worker_type(name: str) -> str:
    normalised = worker_type(name)
    if normalised is None:
        raise ValueError(f"unknown worker type {name!r}")
    return normalised


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
