"""JatosClient edge cases with requests-mock: version quirks, error mapping, retries, encoding."""

from __future__ import annotations

import http.client
import inspect
import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
import requests_mock
import urllib3.exceptions

from jatos_sync.client import JatosClient, encode_path
from jatos_sync.credentials import Token
from jatos_sync.errors import (
    AccessError,
    AuthError,
    ConfigError,
    FileSyncError,
    JatosSyncError,
    ServerUnavailableError,
    StudyLockedError,
    StudyNotFoundError,
    TransientFileError,
    UnsupportedServerError,
)
from jatos_sync.model import FileInfo, RelPath
from jatos_sync.testing import make_token

BASE = "https://jatos.test/pfx"
API = f"{BASE}/jatos/api/v1"
P = RelPath


@pytest.fixture
def token() -> Token:
    return Token(make_token())


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(token: Token, sleeps: list[float]) -> JatosClient:
    return JatosClient(BASE, token, retries=3, sleep=sleeps.append, jitter=lambda: 0.5)


def env_310(data: Any = None, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "1.1.0"}
    if data is not None:
        body["data"] = data
    if message:
        body["message"] = message
    return body


def err_310(code: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "1.1.0", "error": {"code": code, "message": message}}


def test_listing_parses_39_flat_list_with_trailing_slash_dirs(client: JatosClient) -> None:
    data = [
        {"name": "index.html", "path": "index.html", "type": "file", "size": 14, "checksum": 6},
        {"name": "a b.png", "path": "img/a b.png", "type": "file", "size": 5, "checksum": 7},
        {"name": "empty", "path": "empty/", "type": "directory", "size": 4096, "content": []},
        {
            "name": ".x.tmp-0e0b8b1c-1b43-4a8e-9e53-6c1f0e6d4f00",
            "path": "img/.x.tmp-0e0b8b1c-1b43-4a8e-9e53-6c1f0e6d4f00",
            "type": "file",
            "size": 1,
            "checksum": 1,
        },
    ]
    with requests_mock.Mocker() as m:
        m.get(
            f"{API}/studies/42/assets/structure?flatten=true",
            json={"apiVersion": "1.0.1", "data": data},
        )
        snap = client.list_assets("42")
    assert snap.files == {P("index.html"): FileInfo(14, 6), P("img/a b.png"): FileInfo(5, 7)}
    assert snap.api_version == "1.0.1"


def test_listing_accepts_a_tree_and_310_paths(client: JatosClient) -> None:
    tree = {
        "name": "d",
        "path": "",
        "type": "directory",
        "content": [
            {
                "name": "img",
                "path": "img",
                "type": "directory",
                "content": [
                    {
                        "name": "x.png",
                        "path": "img/x.png",
                        "type": "file",
                        "size": 3,
                        "checksum": 4294967295,
                    },
                ],
            },
        ],
    }
    with requests_mock.Mocker() as m:
        m.get(f"{API}/studies/42/assets/structure", json=env_310(tree))
        assert client.list_assets("42").files == {P("img/x.png"): FileInfo(3, 4294967295)}


def test_requests_send_accept_json_bearer_and_no_cookies(client: JatosClient, token: Token) -> None:
    with requests_mock.Mocker() as m:
        m.get(
            f"{API}/admin/token",
            json=env_310({"name": "t", "expirationDate": 0}),
            headers={"Set-Cookie": "PLAY_SESSION=abc; Path=/"},
        )
        client.token_info()
        client.token_info()
        second = m.request_history[1]
    assert second.headers["Accept"] == "application/json"
    assert second.headers["Authorization"] == f"Bearer {token.reveal()}"
    assert "Cookie" not in second.headers


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("a b.png", "a%20b.png"),
        ("c++.js", "c%2B%2B.js"),
        ("100%.txt", "100%25.txt"),
        ("#1.txt", "%231.txt"),
        ("a&b?.txt", "a%26b%3F.txt"),
        ("dir/é.txt", "dir/%C3%A9.txt"),
        ("e\u0301.txt", "e%CC%81.txt"),  # NFD stays NFD
    ],
)
def test_each_path_segment_is_percent_encoded(name: str, encoded: str) -> None:
    assert encode_path(P(name)) == encoded


def test_upload_streams_to_the_explicit_full_path(client: JatosClient, tmp_path: Path) -> None:
    src = tmp_path / "a b+.js"
    src.write_bytes(b"hello\n")
    seen: dict[str, Any] = {}

    def record(request: Any) -> bool:
        seen["body_type"] = type(request.body).__name__
        seen["body"] = request.body.read()
        seen["content_type"] = request.headers["Content-Type"]
        return True

    with requests_mock.Mocker() as m:
        m.post(
            f"{API}/studies/42/assets/js/a%20b%2B.js",
            status_code=201,
            json=env_310(message="File uploaded successfully"),
            additional_matcher=record,
        )
        sent = client.upload("42", P("js/a b+.js"), src, size=6)
    assert sent == FileInfo(6, 139133471)
    assert seen["body_type"] == "MultipartEncoder"  # streamed, not read into memory
    assert b'name="studyAssetsFile"' in seen["body"] and b"hello\n" in seen["body"]
    assert seen["content_type"].startswith("multipart/form-data; boundary=")


def test_upload_39_empty_200_is_success(client: JatosClient, tmp_path: Path) -> None:
    src = tmp_path / "x.js"
    src.write_bytes(b"x")
    with requests_mock.Mocker() as m:
        m.post(f"{API}/studies/42/assets/x.js", status_code=200, text="")
        assert client.upload("42", P("x.js"), src, size=1).size == 1


def test_upload_reports_the_bytes_actually_sent(client: JatosClient, tmp_path: Path) -> None:
    src = tmp_path / "x.js"
    src.write_bytes(b"new content")
    with requests_mock.Mocker() as m:
        m.post(f"{API}/studies/42/assets/x.js", status_code=200, text="")
        sent = client.upload("42", P("x.js"), src, size=3)  # planned with an older size
    assert sent.size == 3


@pytest.mark.parametrize("status", [502, 503, 504])
def test_retry_statuses_are_retried_with_growing_backoff(
    client: JatosClient, sleeps: list[float], status: int
) -> None:
    with requests_mock.Mocker() as m:
        m.get(
            f"{API}/admin/token",
            [
                {"status_code": status, "text": "<html>busy</html>"},
                {"status_code": status, "text": "<html>busy</html>"},
                {"json": env_310({"name": "t"})},
            ],
        )
        client.token_info()
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_connection_errors_exhaust_retries_into_unreachable(
    client: JatosClient, sleeps: list[float]
) -> None:
    with requests_mock.Mocker() as m:
        m.get(f"{API}/admin/token", exc=requests.ConnectionError("Connection refused"))
        with pytest.raises(ServerUnavailableError, match="Cannot reach JATOS") as info:
            client.token_info()
    assert len(sleeps) == 3
    assert "connection refused" in str(info.value)


@pytest.mark.parametrize("status", [500, 400, 413])
def test_other_statuses_are_not_retried(
    client: JatosClient, sleeps: list[float], status: int, tmp_path: Path
) -> None:
    src = tmp_path / "x.js"
    src.write_bytes(b"x")
    with requests_mock.Mocker() as m:
        m.post(f"{API}/studies/1/assets/x.js", status_code=status, text="Error writing file")
        with pytest.raises(FileSyncError):
            client.upload("1", P("x.js"), src, size=1)
        assert m.call_count == 1
    assert sleeps == []


def test_upload_retries_reopen_the_file(client: JatosClient, tmp_path: Path) -> None:
    src = tmp_path / "x.js"
    src.write_bytes(b"abc")
    bodies: list[bytes] = []

    def record(request: Any) -> bool:
        bodies.append(request.body.read())
        return True

    with requests_mock.Mocker() as m:
        m.post(
            f"{API}/studies/1/assets/x.js",
            [{"status_code": 503}, {"status_code": 200}],
            additional_matcher=record,
        )
        client.upload("1", P("x.js"), src, size=3)
    assert len(bodies) == 2 and all(b"abc" in b for b in bodies)


def test_persistent_503_on_upload_is_a_transient_file_error(
    client: JatosClient, tmp_path: Path
) -> None:
    src = tmp_path / "x.js"
    src.write_bytes(b"x")
    with requests_mock.Mocker() as m:
        m.post(
            f"{API}/studies/1/assets/x.js",
            status_code=503,
            text="<html>503</html>",
            headers={"Content-Type": "text/html"},
        )
        with pytest.raises(TransientFileError):
            client.upload("1", P("x.js"), src, size=1)


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (401, "Invalid api token", AuthError, "refused the token"),
        (401, err_310("INVALID_API_TOKEN", "Invalid api token"), AuthError, "refused the token"),
        (403, "No access to study with ID 42", AccessError, "not a member"),
        (403, err_310("NO_ACCESS", "No access to study."), AccessError, "not a member"),
        (403, "JATOS' current settings do not allow API usage", AuthError, "does not allow API"),
        (404, "Couldn't find study with ID 42", StudyNotFoundError, "no such study"),
        (404, err_310("NOT_FOUND", "Study doesn't exist."), StudyNotFoundError, "no such study"),
        (404, "File 'structure' couldn't be found.", UnsupportedServerError, "3.8.1"),
        (
            200,
            "<html><head><title>Welcome</title></head></html>",
            UnsupportedServerError,
            "'Welcome'",
        ),
        (500, "Internal JATOS error", ServerUnavailableError, "HTTP 500"),
    ],
)
def test_listing_errors_are_translated(
    client: JatosClient, status: int, body: Any, error: type[Exception], words: str
) -> None:
    kwargs: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"text": body}
    if isinstance(body, str) and body.startswith("<html"):
        kwargs["headers"] = {"Content-Type": "text/html"}
    with requests_mock.Mocker() as m:
        m.get(f"{API}/studies/42/assets/structure", status_code=status, **kwargs)
        with pytest.raises(error, match=words):
            client.list_assets("42")


@pytest.mark.parametrize(
    "body",
    [
        "Study with ID 42 is locked. Unlock it if you want to make changes.",
        json.dumps(err_310("STUDY_LOCKED", "Study locked")),
    ],
)
def test_locked_study_on_upload(client: JatosClient, tmp_path: Path, body: str) -> None:
    src = tmp_path / "x.js"
    src.write_bytes(b"x")
    with requests_mock.Mocker() as m:
        m.post(f"{API}/studies/42/assets/x.js", status_code=403, text=body)
        with pytest.raises(StudyLockedError, match="unlock it"):
            client.upload("42", P("x.js"), src, size=1)


def test_proxy_html_413_names_the_proxy_limit(client: JatosClient, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * 2000)
    page = "<html><head><title>413 Request Entity Too Large</title></head></html>"
    with requests_mock.Mocker() as m:
        m.post(
            f"{API}/studies/1/assets/big.bin",
            status_code=413,
            text=page,
            headers={"Content-Type": "text/html"},
        )
        with pytest.raises(FileSyncError, match="client_max_body_size"):
            client.upload("1", P("big.bin"), src, size=2000)


def test_login_redirect_is_an_access_error(client: JatosClient) -> None:
    with requests_mock.Mocker() as m:
        m.get(f"{API}/admin/token", status_code=302, headers={"Location": "https://sso.test/login"})
        with pytest.raises(AccessError, match="login"):
            client.token_info()


def test_https_redirect_suggests_the_https_url(token: Token) -> None:
    plain = JatosClient("http://jatos.test", token, retries=0)
    with requests_mock.Mocker() as m:
        m.get(
            "http://jatos.test/jatos/api/v1/admin/token",
            status_code=301,
            headers={"Location": "https://jatos.test/jatos/api/v1/admin/token"},
        )
        with pytest.raises(ConfigError, match=r"https://jatos\.test"):
            plain.token_info()


def test_delete_of_a_missing_file_counts_as_deleted(client: JatosClient) -> None:
    with requests_mock.Mocker() as m:
        m.delete(
            f"{API}/studies/1/assets/gone.js",
            status_code=404,
            text="File 'gone.js' couldn't be found.",
        )
        client.delete("1", P("gone.js"))


def test_download_streams_and_checksums(client: JatosClient) -> None:
    with requests_mock.Mocker() as m:
        m.get(f"{API}/studies/1/assets/w.txt", content=b"Wikipedia")
        buf = io.BytesIO()
        assert client.download("1", P("w.txt"), buf) == FileInfo(9, 300286872)
    assert buf.getvalue() == b"Wikipedia"


def test_errors_and_repr_never_contain_the_token(client: JatosClient, token: Token) -> None:
    with requests_mock.Mocker() as m:
        m.get(f"{API}/admin/token", status_code=401, text="Invalid api token")
        with pytest.raises(AuthError) as info:
            client.token_info()
    assert token.reveal() not in str(info.value)
    assert token.reveal() not in repr(client)


# ------------------------------------------------ every third-party exception is translated


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of `cls` as the library would raise it (some need particular arguments)."""
    special: dict[type[BaseException], tuple[Any, ...]] = {
        urllib3.exceptions.IncompleteRead: (3, 7),
        urllib3.exceptions.InvalidChunkLength: (_Tell(), b"zz"),
        urllib3.exceptions.HeaderParsingError: ([], "bad header"),
        http.client.IncompleteRead: (b"abc", 4),
        requests.exceptions.JSONDecodeError: ("Expecting value", "{", 1),
    }
    if cls in special:
        return cls(*special[cls])
    try:
        return cls("simulated failure")
    except TypeError:  # urllib3's pool errors: (pool, url, message) and the like
        required = [
            p
            for p in inspect.signature(cls).parameters.values()
            if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        return cls(*[None] * (len(required) - 1), "simulated failure")


class _Tell:
    """What InvalidChunkLength asks of the response it was reading."""

    length_remaining = 4

    def tell(self) -> int:
        return 3


def third_party_exceptions() -> list[type[BaseException]]:
    """Every exception class of requests.exceptions and urllib3.exceptions, and what the
    socket layer and http.client raise underneath."""
    found: list[type[BaseException]] = []
    for module, base in (
        (requests.exceptions, requests.RequestException),
        (urllib3.exceptions, urllib3.exceptions.HTTPError),
        (http.client, http.client.HTTPException),
    ):
        found += [
            cls
            for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, base) and not issubclass(cls, Warning)
        ]
    found += [OSError, ConnectionResetError, BrokenPipeError, TimeoutError, ValueError]
    return sorted(set(found), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


class _RaisingRaw:
    """A response body whose reading raises `exc` (a connection dropped mid-body)."""

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def stream(self, amt: int, decode_content: bool = True) -> Iterator[bytes]:
        yield b'{"apiVer'
        raise self._exc

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        raise self._exc

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


class _RaisingAdapter(requests.adapters.BaseAdapter):
    """Raises `exc` when sending, or answers 200 with a body whose reading raises it."""

    def __init__(self, exc: BaseException, *, while_reading: bool) -> None:
        super().__init__()
        self.exc, self.while_reading, self.calls = exc, while_reading, 0

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self.calls += 1
        if not self.while_reading:
            raise self.exc
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response.raw = _RaisingRaw(self.exc)
        response.request, response.url = request, request.url or ""
        return response

    def close(self) -> None:
        pass


class _Session(requests.Session):
    """A session that sends everything through one adapter, whatever is mounted."""

    def __init__(self, adapter: requests.adapters.BaseAdapter) -> None:
        super().__init__()
        self._adapter = adapter

    def get_adapter(self, url: str) -> requests.adapters.BaseAdapter:
        return self._adapter


def _calls(tmp_path: Path) -> dict[str, Callable[[JatosClient], object]]:
    source = tmp_path / "a.js"
    source.write_bytes(b"abc")
    return {
        "token_info": lambda c: c.token_info(),
        "list_studies": lambda c: c.list_studies(),
        "study": lambda c: c.study("1"),
        "list_assets": lambda c: c.list_assets("1"),
        "upload": lambda c: c.upload("1", P("a.js"), source, size=3),
        "delete": lambda c: c.delete("1", P("a.js")),
        "download": lambda c: c.download("1", P("a.js"), io.BytesIO()),
        "api_json": lambda c: c.api_json("GET", "/studies/1/properties", what="study 1"),
        "api_json_post": lambda c: c.api_json(
            "POST", "/results/metadata", json_body={"studyIds": [1]}, what="the metadata"
        ),
        "api_download": lambda c: c.api_download("/studies/1", io.BytesIO(), what="export"),
        "api_upload": lambda c: c.api_upload(
            "/study", source, part="study", filename="a.jzip", what="the import"
        ),
    }


@pytest.mark.parametrize("while_reading", [False, True], ids=["sending", "reading"])
def test_every_third_party_exception_is_translated_by_every_method_that_talks_to_the_server(
    token: Token, tmp_path: Path, while_reading: bool
) -> None:
    untranslated, messages = [], []
    for cls in third_party_exceptions():
        for name, call in _calls(tmp_path).items():
            adapter = _RaisingAdapter(_instance(cls), while_reading=while_reading)
            client = JatosClient(BASE, token, retries=1, session=_Session(adapter), sleep=noop)
            try:
                call(client)
            except JatosSyncError as exc:
                messages.append(str(exc))
            except BaseException as exc:  # what this test is looking for
                untranslated.append(f"{name}: {cls.__module__}.{cls.__qualname__} -> {exc!r}")
            else:
                untranslated.append(f"{name}: {cls.__qualname__} raised nothing")
    assert untranslated == []
    assert all(messages) and len(messages) > 11 * 50


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (requests.exceptions.ChunkedEncodingError("connection broken"), True),
        (requests.ConnectionError("connection reset"), True),
        (urllib3.exceptions.ProtocolError("connection broken"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (requests.exceptions.InvalidHeader("bad header"), False),
        (ValueError("not a chunk"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_a_broken_connection_while_reading_is_retried_and_then_unreachable(
    token: Token, tmp_path: Path, exc: BaseException, retried: bool
) -> None:
    for name, call in _calls(tmp_path).items():
        adapter = _RaisingAdapter(exc, while_reading=True)
        client = JatosClient(BASE, token, retries=2, session=_Session(adapter), sleep=noop)
        with pytest.raises(ServerUnavailableError) as info:
            call(client)
        assert adapter.calls == (3 if retried else 1), name
        assert ("Cannot reach JATOS" in str(info.value)) == retried, name


def test_a_download_cut_off_once_is_retried_and_completes(client: JatosClient) -> None:
    with requests_mock.Mocker() as m:
        m.get(
            f"{API}/studies/1/assets/w.txt",
            [
                {"exc": requests.exceptions.ChunkedEncodingError("connection broken")},
                {"content": b"Wikipedia"},
            ],
        )
        buf = io.BytesIO()
        assert client.download("1", P("w.txt"), buf) == FileInfo(9, 300286872)
    assert buf.getvalue() == b"Wikipedia"


def test_a_download_that_cannot_be_stored_is_a_file_error_not_a_server_one(
    client: JatosClient,
) -> None:
    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    with requests_mock.Mocker() as m:
        m.get(f"{API}/studies/1/assets/w.txt", content=b"Wikipedia")
        with pytest.raises(FileSyncError, match="No space left"):
            client.download("1", P("w.txt"), Full())
        assert m.call_count == 1


def noop(_seconds: float) -> None:
    pass


# ---------------------------------------------------------------- other endpoints


def test_api_json_sends_a_json_body_and_returns_an_answer_of_an_allowed_status(
    client: JatosClient,
) -> None:
    with requests_mock.Mocker() as m:
        m.post(f"{API}/studies/create", status_code=200, json={"uuid": "u", "id": 12})
        answer = client.api_json(
            "POST", "/studies/create", json_body={"title": "T"}, what="creating the study"
        )
    assert answer.json == {"uuid": "u", "id": 12}
    assert m.last_request.headers["Content-Type"] == "application/json"
    assert m.last_request.json() == {"title": "T"}


def test_api_json_turns_any_other_answer_into_the_matching_error(client: JatosClient) -> None:
    with requests_mock.Mocker() as m:
        m.patch(
            f"{API}/studies/7/properties",
            status_code=403,
            json={
                "apiVersion": "1.1.0",
                "error": {"code": "STUDY_LOCKED", "message": "Study locked"},
            },
        )
        with pytest.raises(StudyLockedError):
            client.api_json("PATCH", "/studies/7/properties", json_body={}, what="study 7")


def test_a_request_that_is_not_idempotent_is_not_sent_twice(token: Token) -> None:
    client = JatosClient(BASE, token, retries=3, sleep=noop)
    with requests_mock.Mocker() as m:
        m.post(f"{API}/studies/1/components", status_code=503, text="busy")
        with pytest.raises(ServerUnavailableError):
            client.api_json(
                "POST", "/studies/1/components", json_body={}, what="a component", idempotent=False
            )
        assert m.call_count == 1
        m.get(f"{API}/studies/1/components", status_code=503, text="busy")
        with pytest.raises(ServerUnavailableError):
            client.api_json("GET", "/studies/1/components", what="the components")
        assert m.call_count == 1 + 4


def test_api_download_streams_into_the_file_and_reports_what_it_got(
    client: JatosClient,
) -> None:
    with requests_mock.Mocker() as m:
        m.get(
            f"{API}/studies/3",
            [
                {"status_code": 503, "text": "busy"},
                {
                    "content": b"PK\x03\x04zip",
                    "headers": {
                        "Content-Type": "application/zip",
                        "Content-Disposition": "attachment; filename=jatos_study_u.jzip",
                    },
                },
            ],
        )
        dest = io.BytesIO()
        got = client.api_download("/studies/3", dest, what="the export")
    assert dest.getvalue() == b"PK\x03\x04zip"
    assert (got.size, got.content_type) == (7, "application/zip")
    assert "jatos_study_u.jzip" in got.disposition


def test_api_upload_streams_the_file_as_the_named_multipart_part(
    client: JatosClient, tmp_path: Path
) -> None:
    archive = tmp_path / "study.jzip"
    archive.write_bytes(b"PK archive bytes")
    sent: list[bytes] = []

    def answer(request: Any, context: Any) -> dict[str, object]:
        body = request.body
        sent.append(body.read() if hasattr(body, "read") else body)
        return {"studyExists": False, "uuid": "u"}

    with requests_mock.Mocker() as m:
        m.post(f"{API}/study", status_code=200, json=answer)
        got = client.api_upload(
            "/study",
            archive,
            part="study",
            filename="study.jzip",
            params={"keepProperties": "false"},
            what="the import",
        )
        assert m.last_request.qs == {"keepproperties": ["false"]}
    assert got.json["uuid"] == "u"
    assert b'name="study"; filename="study.jzip"' in sent[0] and b"PK archive bytes" in sent[0]


@pytest.mark.parametrize("disposition", [None, "inline; filename=login.html"])
def test_a_web_page_answered_instead_of_a_file_is_never_taken_for_the_file(
    client: JatosClient, disposition: str | None
) -> None:
    # A sign-in page of a proxy, with 200: without JATOS's Content-Disposition it is not the
    # file (docs/safety.md, rule 10); with it, it is an HTML asset like any other.
    headers = {"Content-Type": "text/html; charset=utf-8"}
    if disposition:
        headers["Content-Disposition"] = disposition
    with requests_mock.Mocker() as m:
        m.get(f"{API}/studies/1/assets/app.js", content=b"<html>Sign in</html>", headers=headers)
        if disposition is None:
            with pytest.raises(FileSyncError, match="web page instead of the file"):
                client.download("1", P("app.js"), io.BytesIO())
        else:
            assert client.download("1", P("app.js"), io.BytesIO()).size == 20
