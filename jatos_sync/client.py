"""JatosClient: the only module that imports `requests`.

It owns everything about talking to a JATOS server: URLs and percent-encoding, the bearer
token header, retries with backoff, streaming uploads and downloads, and the differences
between JATOS versions (JATOS_ASSETS_API.md, "the API reference" below). Every `requests`
exception and every unexpected HTTP answer is translated here into the error classes of
`jatos_sync.errors`; nothing above this module sees a `requests` type.

It must not decide what to sync, and must never put the token in a log line, an error
message or a `repr`.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import ipaddress
import json
import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeGuard
from urllib.parse import quote, urlsplit

import requests
import requests.auth
import structlog
from requests.adapters import HTTPAdapter
from requests_toolbelt.multipart.encoder import MultipartEncoder

from jatos_sync import __version__
from jatos_sync.config import ServerConfig
from jatos_sync.credentials import Token
from jatos_sync.errors import (
    AccessError,
    AuthError,
    ConfigError,
    FileSyncError,
    JatosSyncError,
    LocalFileChangedError,
    RemoteFileMissingError,
    ServerUnavailableError,
    StudyLockedError,
    StudyNotFoundError,
    TransientFileError,
    UnsafePathError,
    UnsupportedServerError,
)
from jatos_sync.ignore import is_server_temp
from jatos_sync.model import (
    DIGEST_BYTES,
    FileInfo,
    PathProblem,
    RelPath,
    RemoteSnapshot,
    StudyInfo,
    TokenInfo,
)
from jatos_sync.paths import server_path

log = structlog.get_logger("jatos_sync.client")

API = "/jatos/api/v1"
# Connection errors, timeouts and these statuses are worth another try: a proxy or a
# restarting JATOS answers them. Other 4xx/5xx are answers about the request itself.
RETRY_STATUSES = frozenset({502, 503, 504})
CHUNK_BYTES = 1 << 20


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
        """3.10 envelope error code (§7.2); None for 3.8/3.9 plain-text errors."""
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


class _BearerAuth(requests.auth.AuthBase):
    """The token as an `auth=` object: with it, requests never substitutes credentials from
    ~/.netrc for the Authorization header, and the token stays out of any repr."""

    def __init__(self, token: Token) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(jap_…)"


class _HashingReader:
    """A file reader for the multipart encoder that sends exactly `size` bytes.

    It computes the Adler-32 and the digest of the bytes it actually hands out, so the caller
    knows what the server received even if the file changed after it was scanned. If the
    file shrinks while it is read, it raises instead of sending a body shorter than the
    announced length.

    It also refuses to hand out `secret` (the API token): each chunk is searched, together
    with the end of the chunk before it, before it is handed out, so a file that holds the
    token fails with `FileSyncError` before the token's last byte, and so before the file's
    last byte, is sent; the server never stores the file (docs/safety.md, rule 9).
    """

    def __init__(self, fileobj: IO[bytes], size: int, *, path: RelPath, secret: bytes) -> None:
        self._f = fileobj
        self._remaining = size
        self._path = path
        self._secret = secret
        self._tail = b""  # the last len(secret) - 1 bytes handed out
        self.checksum = 1
        self._strong = hashlib.sha256()

    @property
    def len(self) -> int:  # read by requests-toolbelt to size the body
        return self._remaining

    def read(self, n: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        n = self._remaining if n is None or n < 0 or n > self._remaining else n
        data = self._f.read(n)
        if not data:
            raise LocalFileChangedError("the file got shorter while it was being uploaded")
        if self._secret:
            self._refuse_secret(data)
        self._remaining -= len(data)
        self.checksum = zlib.adler32(data, self.checksum)
        self._strong.update(data)
        return data

    @property
    def digest(self) -> bytes:
        return self._strong.digest()[:DIGEST_BYTES]

    def _refuse_secret(self, data: bytes) -> None:
        keep = len(self._secret) - 1
        # Only the seam is copied: the tail plus the first bytes of this chunk.
        if self._secret in data or self._secret in self._tail + data[:keep]:
            raise FileSyncError(
                f"{self._path} holds the API token, so it was not uploaded (the study would "
                "serve it to anyone). Remove the file from the folder, or add it to "
                ".jatosignore; if it was ever uploaded, delete it from the study in JATOS and "
                "make a new token."
            )
        self._tail = (self._tail + data)[-keep:] if len(data) < keep else data[-keep:]


def encode_path(path: RelPath) -> str:
    """Percent-encode each segment and keep `/` literal (API reference §3, §8.7).

    JATOS URL-decodes the wildcard with `java.net.URLDecoder`, which turns `+` into a space,
    so everything but unreserved characters is escaped (`+` → %2B, `%` → %25, space → %20).
    """
    return "/".join(quote(part, safe="") for part in path.parts)


def _upload_filename(path: RelPath) -> str:
    # JATOS ignores the part's filename when the URL names the full target path (§4.2), but
    # Play only sees a *file* part when a filename is present (§4.1). Keep it plain ASCII so
    # no multipart parser stumbles on quoting.
    name = path.name
    if name.isascii() and name.isprintable() and not any(c in name for c in '"\\;'):
        return name
    return "asset"


class JatosClient:
    """A keep-alive session to one JATOS server, authenticated with one personal token."""

    def __init__(
        self,
        base_url: str,
        token: Token,
        *,
        timeout_s: float = 30.0,
        retries: int = 4,
        concurrency: int = 4,
        verify: bool | str = True,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self._sleep = sleep
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._jitter = jitter
        self.api_version: str | None = None
        self._session = session or requests.Session()
        # A stale PLAY_SESSION cookie makes JATOS deny even a valid token (§1.2): never keep any.
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(4, concurrency + 2))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._verify = verify
        self._auth = _BearerAuth(token)

    @classmethod
    def for_server(cls, server: ServerConfig, token: Token, **overrides: Any) -> JatosClient:
        """A client with the settings of the configuration's `server:` section; keyword
        arguments override or add constructor arguments (tests pass a fake `sleep`)."""
        settings: dict[str, Any] = {
            "timeout_s": server.timeout_s,
            "retries": server.retries,
            "concurrency": server.concurrency,
            "verify": str(server.ca_bundle) if server.ca_bundle else server.verify_tls,
        }
        return cls(server.url, token, **{**settings, **overrides})

    def __repr__(self) -> str:
        return f"JatosClient({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> JatosClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- endpoints

    def token_info(self) -> TokenInfo:
        """`GET /admin/token`: checks the token and learns the API version (§9.4)."""
        answer = self._json_request("GET", f"{API}/admin/token", what="the token check")
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if not isinstance(data, dict):
            raise self._not_jatos(answer, "the token check")
        expiration = data.get("expirationDate")
        roles = data.get("roles")
        return TokenInfo(
            api_version=self.api_version or "",
            name=str(data.get("name") or ""),
            username=str(data["username"]) if data.get("username") else None,
            expiration_ms=int(expiration) if isinstance(expiration, int) and expiration else None,
            is_expired=bool(data.get("isExpired")),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
        )

    def list_studies(self) -> list[StudyInfo]:
        """Studies the token owner is a member of (`GET /studies/properties`, §9.2)."""
        answer = self._json_request("GET", f"{API}/studies/properties", what="the study list")
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if not isinstance(data, list):
            raise self._not_jatos(answer, "the study list")
        return [_study_info(item) for item in data if isinstance(item, dict)]

    def study(self, study: str) -> StudyInfo:
        """One study's properties (`GET /studies/{id}/properties`)."""
        answer = self._json_request(
            "GET", f"{API}/studies/{quote(study, safe='')}/properties", what=f"study {study}"
        )
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if isinstance(data, list) and data:  # some versions wrap a single study in a list
            data = data[0]
        if not isinstance(data, dict):
            raise self._not_jatos(answer, f"study {study}")
        return _study_info(data)

    def list_assets(self, study: str) -> RemoteSnapshot:
        """The study's files with size and Adler-32, from one listing request (§2)."""
        url = f"{API}/studies/{quote(study, safe='')}/assets/structure"
        answer = self._json_request(
            "GET",
            url,
            params={"flatten": "true"},
            what=f"the file list of study {study}",
        )
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if not isinstance(data, (list, dict)):
            raise self._not_jatos(answer, f"the file list of study {study}")
        return _parse_listing(data, api_version=self.api_version or "", study=study)

    def upload(self, study: str, path: RelPath, source: Path, *, size: int) -> FileInfo:
        """Upload `source` to exactly `path` (§4.2), streamed from disk; return what was sent.

        `size` is the size the caller planned with; exactly that many bytes are sent. The
        returned checksum is computed over the bytes actually sent, so the caller can tell
        whether the file changed since it was scanned.
        """
        url = f"{API}/studies/{quote(study, safe='')}/assets/{encode_path(path)}"
        sent: list[_HashingReader] = []

        def body() -> tuple[Any, dict[str, str]]:
            fileobj = source.open("rb")  # closed in _request via the `cleanup` list
            cleanup.append(fileobj)
            reader = _HashingReader(
                fileobj, size, path=path, secret=self._auth._token.reveal().encode("utf-8")
            )
            sent.append(reader)
            encoder = MultipartEncoder(
                fields={
                    "studyAssetsFile": (_upload_filename(path), reader, "application/octet-stream")
                }
            )
            return encoder, {"Content-Type": encoder.content_type}

        cleanup: list[IO[bytes]] = []
        try:
            answer = self._request("POST", url, body=body, what=f"upload of {path}")
        except OSError as exc:
            raise FileSyncError(f"{path}: could not read the local file: {exc}") from exc
        finally:
            for f in cleanup:
                f.close()
        self._check_file_answer(answer, path, study, action="upload", size=size)
        return FileInfo(size, sent[-1].checksum, sent[-1].digest)

    def delete(self, study: str, path: RelPath) -> None:
        """Delete one file; a file that is already gone counts as deleted (§5)."""
        url = f"{API}/studies/{quote(study, safe='')}/assets/{encode_path(path)}"
        answer = self._request("DELETE", url, what=f"deletion of {path}")
        if (
            answer.status == 404
            and "couldn't be found" in answer.message
            and "File" in (answer.message)
        ):
            return  # e.g. a retried DELETE whose first answer was lost
        self._check_file_answer(answer, path, study, action="delete", size=None)

    def download(self, study: str, path: RelPath, dest: IO[bytes]) -> FileInfo:
        """Stream one file into `dest`; return its size and Adler-32 (§3)."""
        url = f"{API}/studies/{quote(study, safe='')}/assets/{encode_path(path)}"
        for attempt in range(self.retries + 1):
            dest.seek(0)
            dest.truncate()
            try:
                with self._send("GET", url, stream=True) as response:
                    if response.status_code == 200:
                        size, checksum, strong = 0, 1, hashlib.sha256()
                        for chunk in response.iter_content(CHUNK_BYTES):
                            dest.write(chunk)
                            size += len(chunk)
                            checksum = zlib.adler32(chunk, checksum)
                            strong.update(chunk)
                        return FileInfo(size, checksum, strong.digest()[:DIGEST_BYTES])
                    answer = _decode(response)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < self.retries:
                    self._backoff(attempt, f"download of {path}", str(exc))
                    continue
                raise self._unreachable(exc) from exc
            if answer.status in RETRY_STATUSES and attempt < self.retries:
                self._backoff(attempt, f"download of {path}", str(answer.status))
                continue
            self._check_file_answer(answer, path, study, action="download", size=None)
        raise ServerUnavailableError(f"{self.base_url}: the download of {path} kept failing")

    # ----------------------------------------------------------------- plumbing

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        all_headers = {
            "Accept": "application/json",  # ≤3.9 redirect to an HTML sign-in otherwise (§1.2)
            "User-Agent": f"jatos-sync/{__version__}",
        }
        all_headers.update(headers or {})
        return self._session.request(
            method,
            self.base_url + path,
            params=params,
            data=data,
            headers=all_headers,
            auth=self._auth,
            timeout=(min(self.timeout_s, 15.0), self.timeout_s),
            allow_redirects=False,
            stream=stream,
            # Per request, so that $REQUESTS_CA_BUNDLE cannot override ca_bundle/verify_tls.
            verify=self._verify,
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Callable[[], tuple[Any, dict[str, str]]] | None = None,
        what: str,
    ) -> ApiAnswer:
        """Send with retries for connection errors, timeouts and 502/503/504."""
        for attempt in range(self.retries + 1):
            data, headers = body() if body else (None, {})
            started = time.monotonic()
            try:
                with self._send(method, path, params=params, data=data, headers=headers) as r:
                    answer = _decode(r)
            except (requests.ConnectionError, requests.Timeout) as exc:
                cause = exc.__context__ or exc.__cause__
                if isinstance(cause, JatosSyncError):  # raised by our reader mid-body
                    raise cause from None
                if attempt < self.retries:
                    self._backoff(attempt, what, _short_reason(exc))
                    continue
                raise self._unreachable(exc) from exc
            except requests.RequestException as exc:
                if isinstance(exc.__context__, JatosSyncError):
                    raise exc.__context__ from None
                raise ServerUnavailableError(
                    f"{self.base_url}: {what} failed: {_short_reason(exc)}"
                ) from exc
            log.debug(
                "http_request",
                method=method,
                path=path,
                status=answer.status,
                elapsed_s=round(time.monotonic() - started, 4),
            )
            self._learn_version(answer)
            if answer.status in RETRY_STATUSES and attempt < self.retries:
                self._backoff(attempt, what, f"HTTP {answer.status}")
                continue
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _json_request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, what: str
    ) -> ApiAnswer:
        answer = self._request(method, path, params=params, what=what)
        if answer.status == 200 and isinstance(answer.json, dict) and "apiVersion" in answer.json:
            return answer
        raise self._general_error(answer, what)

    def _backoff(self, attempt: int, what: str, reason: str) -> None:
        # Exponential backoff with jitter, so that many clients do not retry in lockstep.
        delay = min(self._backoff_max_s, self._backoff_base_s * 2**attempt)
        delay *= 0.5 + self._jitter() / 2
        log.info("http_retry", what=what, reason=reason, attempt=attempt + 1, delay_s=delay)
        self._sleep(delay)

    def _learn_version(self, answer: ApiAnswer) -> None:
        if isinstance(answer.json, dict) and isinstance(answer.json.get("apiVersion"), str):
            self.api_version = answer.json["apiVersion"]

    def _unreachable(self, exc: Exception) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"Cannot reach JATOS at {self.base_url} ({_short_reason(exc)}; tried "
            f"{self.retries + 1} times). Check server.url, your network or VPN, and that "
            "JATOS is running."
        )

    def _not_jatos(self, answer: ApiAnswer, what: str) -> UnsupportedServerError:
        return UnsupportedServerError(
            f"{self.base_url} answered {what} with {answer.message or 'an unexpected body'} "
            f"(HTTP {answer.status}) instead of JATOS's JSON. Is server.url the base address "
            "of a JATOS server, e.g. https://jatos.example.org (with its path prefix, if any)?"
        )

    def _general_error(self, answer: ApiAnswer, what: str) -> JatosSyncError:
        """Map an answer that is not the expected success to our error classes."""
        status, code, msg = answer.status, answer.error_code, answer.message
        if 300 <= status < 400:
            location = answer.location or ""
            if location.startswith("https://") and self.base_url.startswith("http://"):
                return ConfigError(
                    f"{self.base_url} redirects to HTTPS; set server.url to "
                    f"{'https://' + self.base_url[len('http://') :]}"
                )
            return AccessError(
                f"{self.base_url} redirected {what} to {location or 'another page'} - a login "
                "page? A proxy or single sign-on in front of JATOS may be intercepting API "
                "requests; jatos-sync needs direct access to /jatos/api with a token."
            )
        if status == 401:
            if code == "AUTH_ERROR" or "Failed authentication" in msg:
                return AuthError(f"{self.base_url} did not receive a usable token ({msg}).")
            return AuthError(
                f"JATOS at {self.base_url} refused the token ({msg}): it is wrong, expired or "
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
                    f"JATOS at {self.base_url} does not allow API usage; ask its admin to set "
                    "jatos.api.allowed=true."
                )
            if "Failed authentication" in msg:
                return AuthError(f"{self.base_url} did not accept any token ({msg}).")
            if code == "NO_ACCESS" or "No access to study" in msg:
                return AccessError(
                    f"{what}: the token's user is not a member of this study ({msg}). Ask a "
                    "member to add you under the study's Members, or check `study:`."
                )
            return AccessError(f"{what}: access denied by {self.base_url} ({msg}).")
        if status == 404:
            if "Couldn't find study" in msg or "Study doesn't exist" in msg:
                return StudyNotFoundError(
                    f"{what}: no such study on {self.base_url} ({msg}). Check `study:` in the "
                    "config; `jatos-sync check` lists the studies you can access."
                )
            if "assets directory couldn't be found" in msg:
                return ServerUnavailableError(
                    f"{what}: JATOS cannot find the study's assets folder on its disk ({msg}); "
                    "ask the JATOS admin to check the study's assets directory."
                )
            if "File 'structure'" in msg:
                # JATOS 3.8.1 has no listing route; the request falls through to a download
                # of a file named "structure" (API reference §0).
                return UnsupportedServerError(
                    f"{self.base_url} has no asset listing endpoint ({msg}). JATOS 3.8.1 lacks "
                    "it: jatos-sync needs JATOS 3.8.2 or newer."
                )
            if not answer.json and not answer.is_html and "Requested page" not in msg:
                return self._not_jatos(answer, what)
            return UnsupportedServerError(
                f"{self.base_url} has no JATOS API here ({msg or 'HTTP 404'}). Is server.url "
                "the base address of JATOS 3.8.2 or newer, including any path prefix?"
            )
        if status >= 500:
            return ServerUnavailableError(
                f"{what}: JATOS at {self.base_url} failed with HTTP {status} ({msg})."
            )
        if status == 200 or answer.is_html or (answer.json is None and not msg):
            return self._not_jatos(answer, what)
        return FileSyncError(f"{what}: JATOS answered HTTP {status} ({msg}).")

    def _check_file_answer(
        self, answer: ApiAnswer, path: RelPath, study: str, *, action: str, size: int | None
    ) -> None:
        """Interpret the answer to an upload/delete/download of one file (§4, §5, §3)."""
        status, code, msg = answer.status, answer.error_code, answer.message
        if status in (200, 201) and not answer.is_html:
            return  # ≤3.9: empty body; 3.10: a JSON message (§7)
        what = f"{action} of {path}"
        if status in (401, 403) or 300 <= status < 400:
            raise self._general_error(answer, f"study {study}")
        if status == 404 and ("Couldn't find study" in msg or "Study doesn't exist" in msg):
            raise self._general_error(answer, f"study {study}")
        if status == 413:
            if answer.is_html or (code is None and "Request entity too large" not in msg):
                raise FileSyncError(
                    f"{path}: a proxy in front of JATOS refused the upload as too large "
                    f"({_human_size(size)}; HTTP 413). Ask the server admin to raise its "
                    "body-size limit (nginx: client_max_body_size, default 1m)."
                )
            raise FileSyncError(
                f"{path}: JATOS refused the upload as too large ({_human_size(size)}; {msg})."
            )
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


def _decode(response: requests.Response) -> ApiAnswer:
    content_type = response.headers.get("Content-Type", "")
    raw = response.content
    text = raw.decode("utf-8", errors="replace")
    body: Any = None
    if "json" in content_type or text.lstrip().startswith(("{", "[")):
        try:
            body = json.loads(text)
        except ValueError:
            body = None
    return ApiAnswer(
        status=response.status_code,
        json=body,
        text=text if body is None else "",
        content_type=content_type.lower(),
        location=response.headers.get("Location"),
    )


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


def _parse_listing(data: Any, *, api_version: str, study: str) -> RemoteSnapshot:
    """The files of a listing (§3), each path validated where it enters (docs/safety.md,
    rule 10). An entry that is not a plain relative path is left out and reported; a path
    listed twice is kept once if both entries agree, and refused otherwise (the listing is
    then not trustworthy, and nothing may be decided from it)."""
    files: dict[RelPath, FileInfo] = {}
    refused: list[PathProblem] = []
    for node in _walk_nodes(data):
        if node.get("type") != "file":
            continue  # directories (with or without a trailing "/", §3) and "other"
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
            continue  # a 3.10 cross-file-store upload in flight or left by a crash (§9)
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


def _study_info(data: Mapping[str, Any]) -> StudyInfo:
    return StudyInfo(
        id=int(data.get("id") or 0),
        uuid=str(data.get("uuid") or ""),
        title=str(data.get("title") or ""),
        locked=bool(data.get("locked")),
        dir_name=str(data.get("dirName") or ""),
    )


_REASONS = (
    "Connection refused",
    "timed out",
    "Name or service not known",
    "Temporary failure in name resolution",
    "certificate verify failed",
    "Connection reset",
    "Remote end closed connection",
    "Connection aborted",
)


def _short_reason(exc: Exception) -> str:
    """A few words on why a request failed, without the URL (which `requests` repeats)."""
    text = str(exc)
    for marker in _REASONS:
        if marker in text:
            return marker[0].lower() + marker[1:]
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    return type(exc).__name__


def _human_size(size: int | None) -> str:
    if size is None:
        return "unknown size"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} bytes"  # pragma: no cover


def host_is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (plain http is fine there)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
