"""JatosClient: the only module that imports `requests`.

It owns everything about talking to a JATOS server: URLs and percent-encoding, the bearer
token header, retries with backoff, streaming uploads and downloads. Every `requests`
exception is translated here into the error classes of `jatos_sync.errors`, and every
unexpected HTTP answer through answers.py, which knows what each JATOS version answers
(docs/jatos-api.md); nothing above this module sees a `requests` type. Besides
the asset endpoints it offers generic, translated requests (`api_json`, `api_download`,
`api_upload`) for the study and results endpoints, whose per-version knowledge lives in
the modules that use them.

It must not decide what to sync, and must never put the token in a log line, an error
message or a `repr`.
"""

from __future__ import annotations

import hashlib
import http.client
import http.cookiejar
import ipaddress
import json
import random
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
import requests.auth
import structlog
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests_toolbelt.multipart.encoder import MultipartEncoder

from jatos_sync import __version__
from jatos_sync.answers import (
    RETRY_STATUSES,
    ApiAnswer,
    check_file_answer,
    general_error,
    not_jatos,
    parse_listing,
    study_info,
    token_info,
)
from jatos_sync.config import ServerConfig
from jatos_sync.credentials import Token
from jatos_sync.errors import (
    FileSyncError,
    JatosSyncError,
    LocalFileChangedError,
    ServerUnavailableError,
    UnsupportedServerError,
)
from jatos_sync.model import DIGEST_BYTES, FileInfo, RelPath, RemoteSnapshot, StudyInfo, TokenInfo
from jatos_sync.upload_body import HashingReader, TokenGuard, upload_filename

log = structlog.get_logger("jatos_sync.client")

API = "/jatos/api/v1"
_T = TypeVar("_T")
CHUNK_BYTES = 1 << 20

# What sending a request or reading its answer may raise: requests' own exceptions, the
# urllib3 and http.client ones it lets through while a body is streamed, and OSError and
# ValueError from the socket and the decoders underneath. All of them are translated by
# `JatosClient._transport_failure`, wherever a request is made or a body is read.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
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


def encode_path(path: RelPath) -> str:
    """Percent-encode each segment and keep `/` literal (docs/jatos-api.md §9.2).

    JATOS URL-decodes the wildcard with `java.net.URLDecoder`, which turns `+` into a space,
    so everything but unreserved characters is escaped (`+` → %2B, `%` → %25, space → %20).
    """
    return "/".join(quote(part, safe="") for part in path.parts)


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
        # A stale PLAY_SESSION cookie makes JATOS deny even a valid token
        # (docs/jatos-api.md §2.3): never keep any.
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

    def token_guard(self, path: RelPath, *, message: str = "") -> TokenGuard:
        """A guard that refuses the content of `path` if it holds this client's token, for
        whatever sends content other than `upload` does (a study archive, a definition)."""
        secret = self._auth._token.reveal().encode("utf-8")
        return TokenGuard(secret, path=path, message=message)

    # ----------------------------------------------------------------- endpoints

    def token_info(self) -> TokenInfo:
        """`GET /admin/token`: checks the token and learns the API version
        (docs/jatos-api.md §2.7)."""
        answer = self._json_request("GET", f"{API}/admin/token", what="the token check")
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if not isinstance(data, dict):
            raise self._not_jatos(answer, "the token check")
        return token_info(data, api_version=self.api_version or "")

    def list_studies(self) -> list[StudyInfo]:
        """Studies the token owner is a member of (`GET /studies/properties`,
        docs/jatos-api.md §10.1)."""
        answer = self._json_request("GET", f"{API}/studies/properties", what="the study list")
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if not isinstance(data, list):
            raise self._not_jatos(answer, "the study list")
        return [study_info(item) for item in data if isinstance(item, dict)]

    def study(self, study: str) -> StudyInfo:
        """One study's properties (`GET /studies/{id}/properties`)."""
        return study_info(self.study_properties(study))

    def study_properties(self, study: str | int, *, params: Params | None = None) -> Any:
        """The JSON object of `GET /studies/{id}/properties` (docs/jatos-api.md §10.1), for
        the caller to check: with `params`, its components and batches too."""
        what = f"study {study}"
        answer = self.api_json(
            "GET", f"/studies/{quote(str(study), safe='')}/properties", params=params, what=what
        )
        data = answer.json.get("data") if isinstance(answer.json, dict) else None
        if isinstance(data, list) and len(data) == 1:  # some versions wrap it in a list
            data = data[0]
        if not isinstance(data, dict):
            raise self._not_jatos(answer, what)
        return data

    def list_assets(self, study: str) -> RemoteSnapshot:
        """The study's files with size and Adler-32, from one listing request
        (docs/jatos-api.md §3)."""
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
        return parse_listing(data, api_version=self.api_version or "", study=study)

    def upload(self, study: str, path: RelPath, source: Path, *, size: int) -> FileInfo:
        """Upload `source` to exactly `path` (docs/jatos-api.md §5.2), streamed from disk;
        return what was sent.

        `size` is the size the caller planned with; exactly that many bytes are sent. The
        returned checksum is computed over the bytes actually sent, so the caller can tell
        whether the file changed since it was scanned.
        """
        url = f"{API}/studies/{quote(study, safe='')}/assets/{encode_path(path)}"
        sent: list[HashingReader] = []

        def body() -> tuple[Any, dict[str, str]]:
            fileobj = source.open("rb")  # closed in _request via the `cleanup` list
            cleanup.append(fileobj)
            reader = HashingReader(
                fileobj, size, path=path, secret=self._auth._token.reveal().encode("utf-8")
            )
            sent.append(reader)
            encoder = MultipartEncoder(
                fields={
                    "studyAssetsFile": (upload_filename(path), reader, "application/octet-stream")
                }
            )
            return encoder, {"Content-Type": encoder.content_type}

        cleanup: list[IO[bytes]] = []
        try:
            answer = self._request("POST", url, body=body, what=f"upload of {path}")
        except FileNotFoundError as exc:  # deleted just now: the caller looks at it again
            raise LocalFileChangedError(f"{path}: disappeared while it was uploaded") from exc
        except OSError as exc:
            raise FileSyncError(f"{path}: could not read the local file: {exc}") from exc
        finally:
            for f in cleanup:
                f.close()
        self._check_file_answer(answer, path, study, action="upload", size=size)
        return FileInfo(size, sent[-1].checksum, sent[-1].digest)

    def delete(self, study: str, path: RelPath) -> None:
        """Delete one file; a file that is already gone counts as deleted
        (docs/jatos-api.md §6)."""
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
        """Stream one file into `dest`; return its size and Adler-32 (docs/jatos-api.md §4)."""
        url = f"{API}/studies/{quote(study, safe='')}/assets/{encode_path(path)}"
        what = f"download of {path}"

        def take(response: requests.Response) -> FileInfo:
            _refuse_a_web_page(response, what)
            size, checksum, strong = 0, 1, hashlib.sha256()
            for chunk in _stored(response, dest, what):
                size += len(chunk)
                checksum = zlib.adler32(chunk, checksum)
                strong.update(chunk)
            return FileInfo(size, checksum, strong.digest()[:DIGEST_BYTES])

        got = self._stream("GET", url, dest, what=what, take=take)
        if isinstance(got, ApiAnswer):
            self._check_file_answer(got, path, study, action="download", size=None)
            raise FileSyncError(f"{what} failed: HTTP {got.status} (the server sent no file).")
        return got

    # ------------------------------------ other endpoints (docs/jatos-api.md §10-§14)

    def api_json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Params | None = None,
        json_body: Any = None,
        ok: Collection[int] = (200, 201),
        idempotent: bool = True,
    ) -> ApiAnswer:
        """`method API+path` with an optional JSON body; the answer when its status is in `ok`
        (its body may be enveloped or not: 3.8/3.9 answer some endpoints without the envelope,
        docs/jatos-api.md §8.1), else the matching error. Connection failures and 502/503/504
        are retried unless the request is not `idempotent` (creating a component twice is worse
        than reporting a failure)."""
        body = None
        if json_body is not None:
            encoded = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            body = lambda: (encoded, {"Content-Type": "application/json"})  # noqa: E731
        answer = self._request(
            method, API + path, params=params, body=body, what=what, retry=idempotent
        )
        if answer.status in ok and not answer.is_html:
            return answer
        raise self._general_error(answer, what)

    def api_download(
        self,
        path: str,
        dest: IO[bytes],
        *,
        what: str,
        method: str = "GET",
        params: Params | None = None,
        json_body: Any = None,
    ) -> Download:
        """Stream the body of a successful `method API+path` into `dest` (rewound and
        emptied before each try), never holding it in memory; retried like every request.
        Any other answer becomes the matching error."""
        headers: dict[str, str] = {}
        data = None
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"

        def take(response: requests.Response) -> Download:
            size = sum(len(chunk) for chunk in _stored(response, dest, what))
            return Download(
                size=size,
                content_type=response.headers.get("Content-Type", "").lower(),
                disposition=response.headers.get("Content-Disposition", ""),
            )

        got = self._stream(
            method,
            API + path,
            dest,
            what=what,
            take=take,
            params=params,
            data=data,
            headers=headers,
        )
        if isinstance(got, ApiAnswer):
            raise self._general_error(got, what)
        return got

    def api_upload(
        self,
        path: str,
        source: Path,
        *,
        part: str,
        filename: str,
        what: str,
        params: Params | None = None,
        ok: Collection[int] = (200, 201),
    ) -> ApiAnswer:
        """`POST API+path` with `source` streamed from disk as the multipart file part
        `part` (a study archive, docs/jatos-api.md §11.2); the answer when its status is in `ok`."""
        cleanup: list[IO[bytes]] = []

        def body() -> tuple[Any, dict[str, str]]:
            fileobj = source.open("rb")
            cleanup.append(fileobj)
            encoder = MultipartEncoder(
                fields={part: (filename, fileobj, "application/octet-stream")}
            )
            return encoder, {"Content-Type": encoder.content_type}

        try:
            answer = self._request("POST", API + path, params=params, body=body, what=what)
        except OSError as exc:
            raise FileSyncError(f"{what}: could not read {source}: {exc}") from exc
        finally:
            for f in cleanup:
                f.close()
        if answer.status in ok and not answer.is_html:
            return answer
        raise self._general_error(answer, what)

    # ----------------------------------------------------------------- plumbing

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        all_headers = {
            # Without it, ≤3.9 redirect to an HTML sign-in page (docs/jatos-api.md §2.4).
            "Accept": "application/json",
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

    def _stream(
        self,
        method: str,
        path: str,
        dest: IO[bytes],
        *,
        what: str,
        take: Callable[[requests.Response], _T],
        params: Params | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _T | ApiAnswer:
        """`method path`, its 200 answer streamed into `dest` by `take` (`dest` rewound and
        emptied before each try), retried like every request; any other answer is returned
        for the caller to word."""
        for attempt in range(self.retries + 1):
            dest.seek(0)
            dest.truncate()
            try:
                with self._send(
                    method, path, params=params, data=data, headers=headers, stream=True
                ) as response:
                    if response.status_code == 200:
                        return take(response)
                    answer = _decode(response)
            except JatosSyncError:
                raise
            except TRANSPORT_ERRORS as exc:
                self._transport_failure(exc, attempt, what)
                continue
            self._learn_version(answer)
            if answer.status in RETRY_STATUSES and attempt < self.retries:
                self._backoff(attempt, what, f"HTTP {answer.status}")
                continue
            return answer
        raise ServerUnavailableError(f"{self.base_url}: {what} kept failing")  # pragma: no cover

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Callable[[], tuple[Any, dict[str, str]]] | None = None,
        what: str,
        retry: bool = True,
    ) -> ApiAnswer:
        """Send with retries for connection errors, timeouts and 502/503/504 (none when
        `retry` is false)."""
        retries = self.retries if retry else 0
        for attempt in range(retries + 1):
            data, headers = body() if body else (None, {})
            started = time.monotonic()
            try:
                with self._send(method, path, params=params, data=data, headers=headers) as r:
                    answer = _decode(r)
            except JatosSyncError:
                raise
            except TRANSPORT_ERRORS as exc:
                self._transport_failure(exc, attempt, what, retries=retries)
                continue
            log.debug(
                "http_request",
                method=method,
                path=path,
                status=answer.status,
                elapsed_s=round(time.monotonic() - started, 4),
            )
            self._learn_version(answer)
            if answer.status in RETRY_STATUSES and attempt < retries:
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

    def _transport_failure(
        self, exc: Exception, attempt: int, what: str, *, retries: int | None = None
    ) -> None:
        """An exception from sending a request or reading its answer (`TRANSPORT_ERRORS`):
        return to try again after the backoff, or raise it translated into our errors."""
        ours = _our_error(exc)
        if ours is not None:  # raised by our own body reader, and wrapped on the way
            raise ours from None
        if not _is_transient(exc):
            raise ServerUnavailableError(
                f"{self.base_url}: {what} failed: {_short_reason(exc)}"
            ) from exc
        retries = self.retries if retries is None else retries
        if attempt < retries:
            self._backoff(attempt, what, _short_reason(exc))
            return
        raise self._unreachable(exc, tries=retries + 1) from exc

    def _backoff(self, attempt: int, what: str, reason: str) -> None:
        # Exponential backoff with jitter, so that many clients do not retry in lockstep.
        delay = min(self._backoff_max_s, self._backoff_base_s * 2**attempt)
        delay *= 0.5 + self._jitter() / 2
        log.info("http_retry", what=what, reason=reason, attempt=attempt + 1, delay_s=delay)
        self._sleep(delay)

    def _learn_version(self, answer: ApiAnswer) -> None:
        if isinstance(answer.json, dict) and isinstance(answer.json.get("apiVersion"), str):
            self.api_version = answer.json["apiVersion"]

    def _unreachable(self, exc: Exception, *, tries: int) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"Cannot reach JATOS at {self.base_url} ({_short_reason(exc)}; "
            f"{_tries(tries)}). Check server.url, your network or VPN, and that "
            "JATOS is running."
        )

    def _not_jatos(self, answer: ApiAnswer, what: str) -> UnsupportedServerError:
        return not_jatos(answer, what, base_url=self.base_url)

    def _general_error(self, answer: ApiAnswer, what: str) -> JatosSyncError:
        return general_error(answer, what, base_url=self.base_url)

    def _check_file_answer(
        self, answer: ApiAnswer, path: RelPath, study: str, *, action: str, size: int | None
    ) -> None:
        check_file_answer(answer, path, study, action=action, size=size, base_url=self.base_url)


Params = Mapping[str, str | Sequence[str]]  # a repeated query key takes a list


@dataclass(frozen=True)
class Download:
    """What `api_download` stored: its size and the headers that say what it is."""

    size: int
    content_type: str
    disposition: str


def _refuse_a_web_page(response: requests.Response, what: str) -> None:
    """JATOS always names a downloaded file (`Content-Disposition`, docs/jatos-api.md §4); a web
    page without one, answered with 200, is a proxy's or a sign-in page, not the file
    (docs/safety.md, rule 10): it must not become a backup or a local copy."""
    kind = response.headers.get("Content-Type", "").lower()
    if "html" in kind and not response.headers.get("Content-Disposition"):
        raise FileSyncError(
            f"{what}: the server answered with a web page instead of the file (a proxy or a "
            "sign-in page in front of JATOS?)"
        )


def _stored(response: requests.Response, dest: IO[bytes], what: str) -> Iterator[bytes]:
    """The chunks of `response`'s body, each written to `dest` first; a local write error is
    ours, not the server's."""
    for chunk in response.iter_content(CHUNK_BYTES):
        try:
            dest.write(chunk)
        except (OSError, ValueError) as exc:
            raise FileSyncError(f"{what}: could not store the download: {exc}") from exc
        yield chunk


def _our_error(exc: BaseException) -> JatosSyncError | None:
    """A JatosSyncError that `exc` was raised from or while handling (our reader of an
    upload's body raises one mid-request, and requests or urllib3 wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, JatosSyncError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _is_transient(exc: BaseException) -> bool:
    """Whether another try may work: the connection failed, timed out, or broke off while
    the answer was read. Not: a malformed URL, header or redirect, or a local ValueError."""
    if isinstance(
        exc,
        (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
    ):
        return True
    if isinstance(exc, requests.RequestException):
        return False  # InvalidURL, InvalidHeader, TooManyRedirects, …
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return isinstance(
            exc,
            (
                urllib3.exceptions.ProtocolError,
                urllib3.exceptions.TimeoutError,
                urllib3.exceptions.DecodeError,
                urllib3.exceptions.SSLError,
                urllib3.exceptions.PoolError,
                urllib3.exceptions.ProxyError,
            ),
        )
    return isinstance(exc, (http.client.HTTPException, ConnectionError, TimeoutError))


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


def _tries(count: int) -> str:
    return "tried once" if count == 1 else f"tried {count} times"


def _short_reason(exc: Exception) -> str:
    """A few words on why a request failed, without the URL (which `requests` repeats)."""
    text = str(exc)
    for marker in _REASONS:
        if marker in text:
            return marker[0].lower() + marker[1:]
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    return type(exc).__name__


def host_is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (plain http is fine there)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
