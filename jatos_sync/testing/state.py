"""The stand-in's JATOS database: users, tokens, studies, components, batches, study links,
workers, study and component results, and the request log.

Owns the in-memory records and their thread-safe bookkeeping (one re-entrant lock), and
the ID sequences: one per table, increasing, with gaps in the result tables as a real
database has them (docs/jatos-api.md §14.7). Tokens are kept only as SHA-256 hashes
(docs/jatos-api.md §2.1). No HTTP and no file I/O here: assets directories and result files
are the callers' business.
"""

from __future__ import annotations

import random
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jatos_sync.testing.tokens import make_token, token_hash

StudyState = Literal["PRE", "STARTED", "DATA_RETRIEVED", "FINISHED", "ABORTED", "FAIL"]
ComponentState = Literal[
    "STARTED", "DATA_RETRIEVED", "RESULTDATA_POSTED", "FINISHED", "RELOADED", "ABORTED", "FAIL"
]
# A study result is final in these states; a component result only when its study result is
# (an abort purges finished component results too) (docs/jatos-api.md §14.7).
STUDY_DONE: frozenset[str] = frozenset({"FINISHED", "ABORTED", "FAIL"})
COMPONENT_DONE: frozenset[str] = frozenset({"FINISHED", "RELOADED", "ABORTED", "FAIL"})

_CODE_ALPHABET = string.ascii_letters + string.digits


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_study_code() -> str:
    """`RandomStringUtils.randomAlphanumeric(11)` (docs/jatos-api.md §13.3)."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(11))


class IdSequence:
    """The auto-increment IDs of one table: increasing from 1; with `gaps`, some values are
    skipped (rolled-back inserts), reproducibly for a given `seed`."""

    def __init__(self, *, gaps: bool = False, seed: int = 0) -> None:
        self._last = 0
        self._rng = random.Random(seed) if gaps else None

    def next(self) -> int:
        step = 1
        if self._rng is not None and self._rng.random() < 0.3:
            step += self._rng.randint(1, 3)
        self._last += step
        return self._last


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. `path` is the raw request target (with query).

    `status` is 0 for a connection dropped on purpose or by the client. `kind` is one of
    "list", "upload", "delete", "download", "token", "properties", "import", "export",
    "results", "codes", "components", "publix", "control" or "other".
    """

    method: str
    path: str
    status: int
    bytes_in: int
    kind: str = "other"


@dataclass(eq=False)
class Component:
    """A component; its position is its index in `Study.components` (docs/jatos-api.md §10.2)."""

    id: int
    uuid: str
    study_id: int
    title: str
    html_file_path: str | None = None
    reloadable: bool = False
    active: bool = True
    comments: str | None = None
    input: str | None = None  # minified JSON text, never "" (docs/jatos-api.md §10.2)


@dataclass(eq=False)
class Batch:
    """A batch; the first of `Study.batches` is the default batch (docs/jatos-api.md §10.5)."""

    id: int
    uuid: str
    study_id: int
    title: str = "Default"
    active: bool = True
    max_active_members: int | None = None
    max_total_members: int | None = None
    max_total_workers: int | None = None
    allowed_worker_types: set[str] = field(default_factory=set)
    comments: str | None = None
    input: str | None = None


@dataclass(eq=False)
class Study:
    """A study on the stand-in. `assets_dir` is its study assets directory
    (docs/jatos-api.md §9.9)."""

    id: int
    uuid: str
    title: str
    dir_name: str
    assets_dir: Path
    locked: bool = False
    members: set[str] = field(default_factory=set)
    description: str | None = None
    comments: str | None = None
    input: str | None = None
    end_redirect_url: str | None = None
    study_entry_msg: str | None = None
    linear: bool = False
    allow_preview: bool = False
    group_study: bool = False
    active: bool = True
    components: list[Component] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)

    @property
    def default_batch(self) -> Batch | None:
        return self.batches[0] if self.batches else None


@dataclass(eq=False)
class User:
    id: int
    username: str
    roles: tuple[str, ...]
    active: bool = True


@dataclass(eq=False)
class Token:
    """A token's metadata; the token string itself is never stored (docs/jatos-api.md §2.1)."""

    id: int
    name: str
    username: str
    creation_ms: int
    expires_s: int | None
    active: bool = True

    def is_expired(self, at_ms: int) -> bool:
        # ApiToken.isExpired: `expires` seconds after creation; null/<=0 = never
        # (docs/jatos-api.md §2.2)
        if not self.expires_s or self.expires_s <= 0:
            return False
        return at_ms > self.creation_ms + self.expires_s * 1000

    def expiration_ms(self) -> int:
        """`expirationDate` of the token info: epoch ms, 0 if it never expires
        (docs/jatos-api.md §2.7)."""
        if not self.expires_s or self.expires_s <= 0:
            return 0
        return self.creation_ms + self.expires_s * 1000


@dataclass(eq=False)
class Worker:
    """Who runs a study: personal workers come with their link, general ones per run
    (docs/jatos-api.md §13.1)."""

    id: int
    type: str
    comment: str | None = None


@dataclass(eq=False)
class StudyLink:
    """A study code: one per personal worker, one per batch and type for the others
    (docs/jatos-api.md §13.1)."""

    code: str
    batch_id: int
    worker_type: str
    worker_id: int | None = None  # personal types only
    active: bool = True


@dataclass(eq=False)
class ComponentResult:
    id: int
    study_result_id: int
    component_id: int
    state: str = "STARTED"
    start_ms: int = 0
    end_ms: int | None = None
    data: str | None = None  # None = no data (no data.txt); "" = empty data
    quota_reached: bool = False


@dataclass(eq=False)
class StudyResult:
    id: int
    uuid: str
    study_id: int
    batch_id: int
    worker_id: int
    worker_type: str
    study_code: str
    state: str = "STARTED"
    start_ms: int = 0
    end_ms: int | None = None
    last_seen_ms: int | None = None
    message: str | None = None
    url_query_parameters: dict[str, str] = field(default_factory=dict)
    group_id: int | None = None
    confirmation_code: str | None = None
    quota_reached: bool = False
    component_results: list[ComponentResult] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in STUDY_DONE


class JatosState:
    """All records and recorded requests, guarded by one re-entrant lock (`lock`).

    Callers that read several records for one answer hold `lock` for the whole read.
    """

    def __init__(self, *, result_id_seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}  # SHA-256 hex of the token -> metadata
        self.studies: dict[int, Study] = {}
        self.components: dict[int, Component] = {}
        self.batches: dict[int, Batch] = {}
        self.workers: dict[int, Worker] = {}
        self.links: dict[str, StudyLink] = {}
        self.study_results: dict[int, StudyResult] = {}
        self.component_results: dict[int, ComponentResult] = {}
        self.requests: list[RequestRecord] = []
        self._user_ids = IdSequence()
        self._token_ids = IdSequence()
        self._study_ids = IdSequence()
        self._component_ids = IdSequence()
        self._batch_ids = IdSequence()
        self._worker_ids = IdSequence()
        self._study_result_ids = IdSequence(gaps=True, seed=result_id_seed)
        self._component_result_ids = IdSequence(gaps=True, seed=result_id_seed + 1)

    # ------------------------------------------------------------------ users and tokens

    def add_user(self, username: str, roles: tuple[str, ...]) -> User:
        with self.lock:
            if username in self.users:
                raise ValueError(f"user {username!r} exists already")
            user = User(self._user_ids.next(), username, tuple(roles))
            self.users[username] = user
            return user

    def user(self, username: str) -> User:
        with self.lock:
            try:
                return self.users[username]
            except KeyError:
                raise ValueError(f"unknown user {username!r}") from None

    def add_token(self, username: str, *, expires_s: int | None, active: bool, name: str) -> str:
        token = make_token()
        with self.lock:
            self.user(username)
            self.tokens[token_hash(token)] = Token(
                self._token_ids.next(), name, username, now_ms(), expires_s, active
            )
        return token

    def token(self, token: str) -> Token:
        with self.lock:
            try:
                return self.tokens[token_hash(token)]
            except KeyError:
                raise ValueError("unknown token") from None

    def expire_token(self, token: str) -> None:
        with self.lock:
            record = self.token(token)
            if not record.expires_s or record.expires_s <= 0:
                record.expires_s = 1
            record.creation_ms = now_ms() - record.expires_s * 1000 - 1000

    # ------------------------------------------------------------------ studies

    def add_study(
        self,
        title: str,
        *,
        members: Iterable[str],
        locked: bool,
        dir_name: str | None,
        assets_root: Path,
        study_uuid: str | None = None,
        batch_worker_types: Iterable[str] = (),
        with_default_batch: bool = True,
    ) -> Study:
        """A new study with a default batch; dirName defaults to the UUID
        (docs/jatos-api.md §9.9)."""
        with self.lock:
            member_set = set(members)
            for username in member_set:
                self.user(username)
            the_uuid = study_uuid or str(uuid.uuid4())
            name = dir_name or the_uuid
            study = Study(
                id=self._study_ids.next(),
                uuid=the_uuid,
                title=title,
                dir_name=name,
                assets_dir=assets_root / name,
                locked=locked,
                members=member_set,
            )
            self.studies[study.id] = study
            if with_default_batch:
                self.add_batch(study, allowed_worker_types=set(batch_worker_types))
            return study

    def study(self, study: Study | int) -> Study:
        study_id = study.id if isinstance(study, Study) else study
        with self.lock:
            try:
                return self.studies[study_id]
            except KeyError:
                raise ValueError(f"unknown study {study_id}") from None

    def study_by_uuid(self, study_uuid: str) -> Study | None:
        with self.lock:
            return next((s for s in self.studies.values() if s.uuid == study_uuid), None)

    def studies_of(self, username: str) -> list[Study]:
        with self.lock:
            return [s for s in self.studies.values() if username in s.members]

    def dir_name_taken(self, dir_name: str) -> bool:
        """A study of the stand-in uses `dir_name` (the disk is the caller's to check)."""
        with self.lock:
            return any(s.dir_name == dir_name for s in self.studies.values())

    # ------------------------------------------------------------------ components, batches

    def add_component(self, study: Study, *, component_uuid: str | None = None) -> Component:
        """Append a new component (untitled; the caller sets its properties)."""
        with self.lock:
            component = Component(
                self._component_ids.next(), component_uuid or str(uuid.uuid4()), study.id, ""
            )
            self.components[component.id] = component
            study.components.append(component)
            return component

    def component_by_uuid(self, component_uuid: str) -> Component | None:
        with self.lock:
            return next((c for c in self.components.values() if c.uuid == component_uuid), None)

    def add_batch(
        self,
        study: Study,
        *,
        batch_uuid: str | None = None,
        allowed_worker_types: set[str] | None = None,
    ) -> Batch:
        with self.lock:
            batch = Batch(
                self._batch_ids.next(),
                batch_uuid or str(uuid.uuid4()),
                study.id,
                allowed_worker_types=set(allowed_worker_types or ()),
            )
            self.batches[batch.id] = batch
            study.batches.append(batch)
            return batch

    def batch_by_uuid(self, batch_uuid: str) -> Batch | None:
        with self.lock:
            return next((b for b in self.batches.values() if b.uuid == batch_uuid), None)

    def remove_component(self, component: Component) -> list[ComponentResult]:
        """Remove a component and its component results; returns the removed results.
        Study results left without component results stay (docs/jatos-api.md §12.1)."""
        with self.lock:
            study = self.studies[component.study_id]
            study.components = [c for c in study.components if c is not component]
            self.components.pop(component.id, None)
            doomed = [
                cr for cr in self.component_results.values() if cr.component_id == component.id
            ]
            self._drop_component_results(doomed, drop_empty_study_results=False)
            return doomed

    def remove_batch(self, batch: Batch) -> list[ComponentResult]:
        """Remove a batch with its study results, links and their workers."""
        with self.lock:
            study = self.studies[batch.study_id]
            study.batches = [b for b in study.batches if b is not batch]
            self.batches.pop(batch.id, None)
            for code in [code for code, link in self.links.items() if link.batch_id == batch.id]:
                self._drop_link(code)
            doomed_srs = [sr for sr in self.study_results.values() if sr.batch_id == batch.id]
            removed = [cr for sr in doomed_srs for cr in sr.component_results]
            self._drop_component_results(removed, drop_empty_study_results=False)
            for sr in doomed_srs:
                self.study_results.pop(sr.id, None)
            return removed

    def remove_study(self, study: Study) -> list[ComponentResult]:
        """Remove a study with everything that hangs on it; returns its component results."""
        with self.lock:
            removed: list[ComponentResult] = []
            for batch in list(study.batches):
                removed += self.remove_batch(batch)
            for component in list(study.components):
                removed += self.remove_component(component)
            for sr in [sr for sr in self.study_results.values() if sr.study_id == study.id]:
                self.study_results.pop(sr.id, None)
            self.studies.pop(study.id, None)
            return removed

    # ------------------------------------------------------------------ links and workers

    def add_worker(self, worker_type: str, comment: str | None = None) -> Worker:
        with self.lock:
            worker = Worker(self._worker_ids.next(), worker_type, comment)
            self.workers[worker.id] = worker
            return worker

    def add_personal_link(self, batch: Batch, worker_type: str, comment: str | None) -> StudyLink:
        """A new personal worker and its own study code (docs/jatos-api.md §13.1)."""
        with self.lock:
            worker = self.add_worker(worker_type, comment)
            link = StudyLink(self._unused_code(), batch.id, worker_type, worker.id)
            self.links[link.code] = link
            return link

    def general_link(self, batch: Batch, worker_type: str) -> StudyLink:
        """The one code of a batch for a general type, created on first use
        (docs/jatos-api.md §13.1)."""
        with self.lock:
            for link in self.links.values():
                if link.batch_id == batch.id and link.worker_type == worker_type:
                    return link
            link = StudyLink(self._unused_code(), batch.id, worker_type)
            self.links[link.code] = link
            return link

    def _unused_code(self) -> str:
        while True:
            code = new_study_code()
            if code not in self.links:
                return code

    def _drop_link(self, code: str) -> None:
        link = self.links.pop(code)
        if link.worker_id is not None:
            self.workers.pop(link.worker_id, None)

    # ------------------------------------------------------------------ results

    def add_study_result(self, link: StudyLink, worker: Worker, *, at_ms: int) -> StudyResult:
        with self.lock:
            batch = self.batches[link.batch_id]
            result = StudyResult(
                id=self._study_result_ids.next(),
                uuid=str(uuid.uuid4()),
                study_id=batch.study_id,
                batch_id=batch.id,
                worker_id=worker.id,
                worker_type=worker.type,
                study_code=link.code,
                start_ms=at_ms,
                last_seen_ms=at_ms,
            )
            self.study_results[result.id] = result
            return result

    def add_component_result(
        self, study_result: StudyResult, component: Component, *, at_ms: int
    ) -> ComponentResult:
        with self.lock:
            result = ComponentResult(
                self._component_result_ids.next(), study_result.id, component.id, start_ms=at_ms
            )
            self.component_results[result.id] = result
            study_result.component_results.append(result)
            return result

    def remove_component_results(self, results: Iterable[ComponentResult]) -> None:
        """Delete component results; study results left empty are deleted too
        (docs/jatos-api.md §14.6)."""
        with self.lock:
            self._drop_component_results(list(results), drop_empty_study_results=True)

    def _drop_component_results(
        self, results: list[ComponentResult], *, drop_empty_study_results: bool
    ) -> None:
        doomed = {cr.id for cr in results}
        touched = {cr.study_result_id for cr in results}
        for crid in doomed:
            self.component_results.pop(crid, None)
        for srid in touched:
            sr = self.study_results.get(srid)
            if sr is None:
                continue
            sr.component_results = [cr for cr in sr.component_results if cr.id not in doomed]
            if drop_empty_study_results and not sr.component_results:
                self.study_results.pop(srid, None)

    # ------------------------------------------------------------------ request log

    def record(self, record: RequestRecord) -> None:
        with self.lock:
            self.requests.append(record)

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    def count(self, method: str | None, kind: str | None) -> int:
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (kind is None or r.kind == kind)
            )
