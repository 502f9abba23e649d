"""What JATOS's answers mean: decoded answers, errors per version, and the values parsed
from its JSON.

`ApiAnswer` is an answer as read off the wire (status, JSON or text). This module turns an
answer that is not the expected success into the program's own error classes, with the
differences between JATOS versions (plain-text errors of 3.8/3.9, the JSON envelope of
3.10; docs/jatos-api.md §8), and parses the JSON of listings, studies and tokens into
values. Everything here is untrusted input and is validated where it enters
(docs/safety.md, rule 10). It does no I/O and imports no HTTP library (client.py sends).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import structlog

from jatos_sync.errors import (
    AccessError,
    AuthError,
    ConfigError,
    FileSyncError,
    JatosSyncError,
    RemoteFileMissingError,
    RequestTooLargeError,
    ServerUnavailableError,
    StudyLockedError,
    StudyNotFoundError,
    TransientFileError,
    UnsafePathError,
    UnsupportedServerError,
)
from jatos_sync.ignore import is_server_temp
from jatos_sync.model import FileInfo, PathProblem, RelPath, RemoteSnapshot, StudyInfo, TokenInfo
from jatos_sync.paths import server_path
from jatos_sync.sentences import human_size

log = structlog.get_logger("jatos_sync.client")

# Connection errors, timeouts and these statuses are worth another try: a proxy or a
# restarting JATOS answers them. Other 4xx/5xx are answers about the request itself.
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class ApiAnswer:
    """A decoded answer: status, JSON body (if any) and the plain-text/HTML body (if any)."""

    status: int
    json: Any
    text: str
    content_type: str
    location: str | None

    @property
    def error_code(self) -> str | None:
        """3.10 envelope error code (docs/jatos-api.md §8.2); None for 3.8/3.9 plain-text errors."""
        if isinstance(self.json, dict):
            error = self.json.get("error")
            if isinstance(error, dict) and isinstance(error.get("code"), str):
                return str(error["code"])
        return None

    @property
    def message(self) -> str:
        """The server's own words: the envelope message, else the plain text, else HTML title."""
        if isinstance(self.json, dict):
            error = self.json.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            if self.json.get("message"):
                return str(self.json["message"])
        if self.is_html:
            title = re.search(r"<title>(.*?)</title>", self.text, re.IGNORECASE | re.DOTALL)
            return f"an HTML page{f' titled {title.group(1).strip()!r}' if title else ''}"
        return " ".join(self.text.split())[:300]

    @property
    def is_html(self) -> bool:
        return "html" in self.content_type or self.text.lstrip()[:15].lower().startswith(
            ("<!doctype html", "<html")
        )


def not_jatos(answer: ApiAnswer, what: str, *, base_url: str) -> UnsupportedServerError:
    return UnsupportedServerError(
        f"{base_url} answered {what} with {answer.message or 'an unexpected body'} "
        f"(HTTP {answer.status}) instead of JATOS's JSON. Is server.url the base address "
        "of a JATOS server, e.g. https://jatos.example.org (with its path prefix, if any)?"
    )


def general_error(answer: ApiAnswer, what: str, *, base_url: str) -> JatosSyncError:
    """Map an answer that is not the expected success to our error classes
    (docs/jatos-api.md §8.5)."""
    status, code, msg = answer.status, answer.error_code, answer.message
    if 300 <= status < 400:
        location = answer.location or ""
        if location.startswith("https://") and base_url.startswith("http://"):
            return ConfigError(
                f"{base_url} redirects to HTTPS; set server.url to "
                f"{'https://' + base_url[len('http://') :]}"
            )
        return AccessError(
            f"{base_url} redirected {what} to {location or 'another page'} - a login "
            "page? A proxy or single sign-on in front of JATOS may be intercepting API "
            "requests; jatos-sync needs direct access to /jatos/api with a token."
        )
    if status == 401:
        if code == "AUTH_ERROR" or "Failed authentication" in msg:
            return AuthError(f"{base_url} did not receive a usable token ({msg}).")
        return AuthError(
            f"JATOS at {base_url} refused the token ({msg}): it is wrong, expired or "
            "deactivated, or its user lacks the USER role. Create a new token in JATOS "
            "(user menu → API tokens) and store it where server.token_env/token_file say."
        )
    if status == 403:
        if code == "STUDY_LOCKED" or "is locked" in msg:
            return StudyLockedError(
                f"The study is locked in JATOS ({msg}); unlock it on the study's page in "
                "JATOS to let jatos-sync change its files."
            )
        if "do not allow API usage" in msg:
            return AuthError(
                f"JATOS at {base_url} does not allow API usage; ask its admin to set "
                "jatos.api.allowed=true."
            )
        if "Failed authentication" in msg:
            return AuthError(f"{base_url} did not accept any token ({msg}).")
        if code == "NO_ACCESS" or "No access to study" in msg:
            return AccessError(
                f"{what}: the token's user is not a member of this study ({msg}). Ask a "
                "member to add you under the study's Members, or check `study:`."
            )
        return AccessError(f"{what}: access denied by {base_url} ({msg}).")
    if status == 404:
        if "Couldn't find study" in msg or "Study doesn't exist" in msg:
            return StudyNotFoundError(
                f"{what}: no such study on {base_url} ({msg}). Check `study:` in the "
                "config; `jatos-sync check` lists the studies you can access."
            )
        if "assets directory couldn't be found" in msg:
            return ServerUnavailableError(
                f"{what}: JATOS cannot find the study's assets folder on its disk ({msg}); "
                "ask the JATOS admin to check the study's assets directory."
            )
        if "File 'structure'" in msg:
            # JATOS 3.8.1 has no listing route; the request falls through to a download
            # of a file named "structure" (docs/jatos-api.md §1.3).
            return UnsupportedServerError(
                f"{base_url} has no asset listing endpoint ({msg}). JATOS 3.8.1 lacks "
                "it: jatos-sync needs JATOS 3.8.2 or newer."
            )
        if not answer.json and not answer.is_html and "Requested page" not in msg:
            return not_jatos(answer, what, base_url=base_url)
        return UnsupportedServerError(
            f"{base_url} has no JATOS API here ({msg or 'HTTP 404'}). Is server.url "
            "the base address of JATOS 3.8.2 or newer, including any path prefix?"
        )
    if status == 413:
        who = "a proxy in front of JATOS" if answer.is_html else "JATOS"
        return RequestTooLargeError(
            f"{what}: {who} refused the request as too large (HTTP 413). Ask the server "
            "admin to raise its body-size limit (nginx: client_max_body_size)."
        )
    if status >= 500:
        return ServerUnavailableError(
            f"{what}: JATOS at {base_url} failed with HTTP {status} ({msg})."
        )
    if status == 200 or answer.is_html or (answer.json is None and not msg):
        return not_jatos(answer, what, base_url=base_url)
    return FileSyncError(f"{what}: JATOS answered HTTP {status} ({msg}).")


def check_file_answer(
    answer: ApiAnswer, path: RelPath, study: str, *, action: str, size: int | None, base_url: str
) -> None:
    """Interpret the answer to an upload/delete/download of one file
    (docs/jatos-api.md §4-§6): return on success, raise the matching error otherwise."""
    status, code, msg = answer.status, answer.error_code, answer.message
    if status in (200, 201) and not answer.is_html:
        return  # ≤3.9: empty body; 3.10: a JSON message (docs/jatos-api.md §5.3, §6)
    what = f"{action} of {path}"
    if status in (401, 403) or 300 <= status < 400:
        raise general_error(answer, f"study {study}", base_url=base_url)
    if status == 404 and ("Couldn't find study" in msg or "Study doesn't exist" in msg):
        raise general_error(answer, f"study {study}", base_url=base_url)
    if status == 413:
        shown = human_size(size) or "unknown size"
        if answer.is_html or (code is None and "Request entity too large" not in msg):
            raise FileSyncError(
                f"{path}: a proxy in front of JATOS refused the upload as too large "
                f"({shown}; HTTP 413). Ask the server admin to raise its "
                "body-size limit (nginx: client_max_body_size, default 1m)."
            )
        raise FileSyncError(f"{path}: JATOS refused the upload as too large ({shown}; {msg}).")
    if status in RETRY_STATUSES or (answer.is_html and status >= 500):
        raise TransientFileError(f"{what}: the server kept answering HTTP {status}")
    if code == "FILE_ALREADY_EXISTS":
        raise FileSyncError(
            f"{path}: the server has a directory where this file should go, or a file "
            f"where a folder of its path should be ({msg}). Remove it in the JATOS GUI."
        )
    if code == "VALIDATION_ERROR":
        raise FileSyncError(f"{path}: this JATOS refuses the file name ({msg}); rename it.")
    if code == "MISSING_FILE" or msg == "File missing":
        raise FileSyncError(f"{path}: JATOS refused the upload ({msg}); is the file empty?")
    if status == 404:
        raise RemoteFileMissingError(f"{what}: the file is not on the server ({msg}).")
    detail = msg or "no details from the server"
    raise FileSyncError(f"{what} failed: HTTP {status} ({detail}).")


def _walk_nodes(data: Any) -> Iterator[dict[str, Any]]:
    """Yield every node of a flat list or a tree (servers that ignore `flatten`)."""
    stack = list(data) if isinstance(data, list) else [data]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node
        content = node.get("content")
        if isinstance(content, list):
            stack.extend(content)


def parse_listing(data: Any, *, api_version: str, study: str) -> RemoteSnapshot:
    """The files of a listing (docs/jatos-api.md §3), each path validated where it enters
    (docs/safety.md, rule 10). An entry that is not a plain relative path is left out and
    reported; a path listed twice is kept once if both entries agree, and refused otherwise
    (the listing is then not trustworthy, and nothing may be decided from it)."""
    files: dict[RelPath, FileInfo] = {}
    refused: list[PathProblem] = []
    for node in _walk_nodes(data):
        if node.get("type") != "file":
            continue  # directories (trailing "/" or not, docs/jatos-api.md §3.4), "other"
        raw, size, checksum = node.get("path"), node.get("size"), node.get("checksum")
        if not (_is_count(size) and _is_count(checksum) and checksum <= 0xFFFFFFFF):
            refused.append(PathProblem(_shown(raw), "listed without a valid size or checksum"))
            continue
        try:
            path = server_path(raw)
        except UnsafePathError as exc:
            refused.append(PathProblem(_shown(raw), f"the server listed an unsafe path ({exc})"))
            continue
        if is_server_temp(path):
            continue  # 3.10's temporary upload names (docs/jatos-api.md §9.6)
        info = FileInfo(size, checksum)
        known = files.setdefault(path, info)
        if known != info:
            raise ServerUnavailableError(
                f"The server's file list of study {study} names {path} twice, with different "
                "contents; nothing was changed. Ask the JATOS admin to check the study's "
                "assets folder."
            )
        if known is not info:
            log.warning("listing_duplicate", study=study, path=str(path))
    for problem in refused:
        log.warning(
            "listing_entry_refused", study=study, path=str(problem.path), reason=problem.reason
        )
    return RemoteSnapshot(files=files, api_version=api_version, refused=tuple(refused))


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(raw: object) -> RelPath:
    """A refused listing entry's path, for messages only: never joined to a local path."""
    text = raw if isinstance(raw, str) else repr(raw)
    return RelPath(text.encode("unicode_escape").decode("ascii")[:200] or "(empty)")


def study_info(data: Mapping[str, Any]) -> StudyInfo:
    study_id = data.get("id")
    return StudyInfo(
        id=study_id if _is_count(study_id) else 0,
        uuid=str(data.get("uuid") or ""),
        title=str(data.get("title") or ""),
        locked=bool(data.get("locked")),
        dir_name=str(data.get("dirName") or ""),
    )


def token_info(data: Mapping[str, Any], *, api_version: str) -> TokenInfo:
    """`GET /admin/token`'s data (docs/jatos-api.md §2.7); odd values are taken as absent."""
    expiration = data.get("expirationDate")
    roles = data.get("roles")
    return TokenInfo(
        api_version=api_version,
        name=str(data.get("name") or ""),
        username=str(data["username"]) if data.get("username") else None,
        expiration_ms=expiration if _is_count(expiration) and expiration else None,
        is_expired=data.get("isExpired") is True,
        roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
    )
