"""The stand-in's JATOS database: users, API tokens, studies, and the request log.

Owns the in-memory records and their thread-safe bookkeeping. Tokens are kept only as
SHA-256 hashes (JATOS_ASSETS_API.md §1.1). No HTTP and no file I/O here (a study's
`assets_dir` is created by the server facade).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from jatos_sync.testing.tokens import make_token, token_hash


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. `path` is the raw request target (with query).

    `status` is 0 for a connection dropped on purpose or by the client. `kind` is one of
    "list", "upload", "delete", "download", "token", "properties" or "other".
    """

    method: str
    path: str
    status: int
    bytes_in: int
    kind: str = "other"


@dataclass(eq=False)
class Study:
    """A study on the stand-in. `assets_dir` is its study assets directory (§8.6)."""

    id: int
    uuid: str
    title: str
    dir_name: str
    assets_dir: Path
    locked: bool = False
    members: set[str] = field(default_factory=set)
    batch_id: int = 0
    batch_uuid: str = ""


@dataclass(eq=False)
class User:
    id: int
    username: str
    roles: tuple[str, ...]
    active: bool = True


@dataclass(eq=False)
class Token:
    """A token's metadata; the token string itself is never stored (§1.1)."""

    id: int
    name: str
    username: str
    creation_ms: int
    expires_s: int | None
    active: bool = True

    def is_expired(self, at_ms: int) -> bool:
        # ApiToken.isExpired: `expires` seconds after creation; null/<=0 = never (§1.1 step 7)
        if not self.expires_s or self.expires_s <= 0:
            return False
        return at_ms > self.creation_ms + self.expires_s * 1000

    def expiration_ms(self) -> int:
        """`expirationDate` of the token info: epoch ms, 0 if it never expires (§9.4)."""
        if not self.expires_s or self.expires_s <= 0:
            return 0
        return self.creation_ms + self.expires_s * 1000


class JatosState:
    """Users, tokens, studies and recorded requests, guarded by one re-entrant lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}  # SHA-256 hex of the token -> metadata
        self.studies: dict[int, Study] = {}
        self.requests: list[RequestRecord] = []
        self._next_user_id = 1
        self._next_token_id = 1
        self._next_study_id = 1

    # ------------------------------------------------------------------ users and tokens

    def add_user(self, username: str, roles: tuple[str, ...]) -> User:
        with self.lock:
            if username in self.users:
                raise ValueError(f"user {username!r} exists already")
            user = User(self._next_user_id, username, tuple(roles))
            self.users[username] = user
            self._next_user_id += 1
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
                self._next_token_id, name, username, now_ms(), expires_s, active
            )
            self._next_token_id += 1
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
    ) -> Study:
        with self.lock:
            member_set = set(members)
            for username in member_set:
                self.user(username)
            study_uuid = str(uuid.uuid4())
            name = dir_name or study_uuid  # HEAD: dirName = UUID for new studies (§8.6)
            study = Study(
                id=self._next_study_id,
                uuid=study_uuid,
                title=title,
                dir_name=name,
                assets_dir=assets_root / name,
                locked=locked,
                members=member_set,
                batch_id=self._next_study_id,
                batch_uuid=str(uuid.uuid4()),
            )
            self.studies[study.id] = study
            self._next_study_id += 1
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
