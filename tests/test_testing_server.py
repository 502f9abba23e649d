"""Wire-level tests of the JATOS stand-in server (jatos_sync/testing), with plain `requests`.

Expected bodies and statuses are JATOS's as docs/jatos-api.md describes them. Most tests run
against both the "3.9" and "3.10" personalities; studies, results and codes have their own
test_testing_* modules.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from jatos_sync.testing import RequestRecord, StandInServer, make_token, token_checksum_ok
from jatos_sync.testing.app import classify, upload_target
from jatos_sync.testing.wire import MalformedEscapeError, java_url_decode

Factory = Callable[..., StandInServer]
BOTH = ["3.9", "3.10"]
JSON = {"Accept": "application/json"}


# ============================================================================ helpers


class Api:
    """A tiny `requests` wrapper around one study of one server."""

    def __init__(self, server: StandInServer, token: str | None = None) -> None:
        assert server.study is not None
        self.server = server
        self.token = token if token is not None else server.token
        self.study = server.study
        self.session = requests.Session()
        self.session.headers.update(JSON)
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def v3_10(self) -> bool:
        return self.server.personality.name == "3.10"

    def url(self, rest: str) -> str:
        return f"{self.server.url}/jatos/api/v1/{rest}"

    def assets(self, rest: str = "", study: Any = None) -> str:
        sid = self.study.id if study is None else study
        return self.url(f"studies/{sid}/assets/{rest}")

    def get(self, rest: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url(rest), timeout=10, **kw)

    def listing(self, *, flatten: bool = False) -> requests.Response:
        suffix = "?flatten=true" if flatten else ""
        return self.session.get(self.assets("structure") + suffix, timeout=10)

    def flat(self) -> dict[str, dict[str, Any]]:
        r = self.listing(flatten=True)
        assert r.status_code == 200, r.text
        return {n["path"]: n for n in r.json()["data"]}

    def upload(
        self, rest: str, content: bytes = b"data", filename: str = "upload.bin", **kw: Any
    ) -> requests.Response:
        files = {"studyAssetsFile": (filename, content)}
        return self.session.post(self.assets(rest), files=files, timeout=10, **kw)

    def delete(self, rest: str) -> requests.Response:
        return self.session.delete(self.assets(rest), timeout=10)

    def close(self) -> None:
        self.session.close()


def expect_error(
    r: requests.Response, api: Api, *, v39: tuple[int, str], v310: tuple[int, str, str | None]
) -> None:
    """Check a per-version error: 3.9 (status, text body); 3.10 (status, code, message)."""
    if api.v3_10:
        status, code, message = v310
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert body["apiVersion"] == "1.1.0"
        assert body["error"]["code"] == code
        if message is not None:
            assert body["error"]["message"] == message
    else:
        status, text = v39
        assert r.status_code == status, r.text
        assert r.text == text
        if text:
            assert r.headers["Content-Type"].startswith("text/plain")


def multipart_body(
    filename: str | None, content: bytes, *, name: str = "studyAssetsFile"
) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    body = (
        (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def raw(
    server: StandInServer,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Send `path` exactly as given (requests/urllib3 would normalize dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def raw_upload(api: Api, rest: str, content: bytes, filename: str = "f.bin") -> tuple[int, bytes]:
    body, ctype = multipart_body(filename, content)
    path = f"{api.server.prefix}/jatos/api/v1/studies/{api.study.id}/assets/{rest}"
    headers = {"Authorization": f"Bearer {api.token}", "Accept": "application/json"}
    headers["Content-Type"] = ctype
    status, _, data = raw(api.server, "POST", path, headers=headers, body=body)
    return status, data


@pytest.fixture(params=BOTH)
def api(request: pytest.FixtureRequest, jatos_standin_factory: Factory) -> Iterator[Api]:
    client = Api(jatos_standin_factory(personality=request.param))
    yield client
    client.close()


@pytest.fixture
def make_api(jatos_standin_factory: Factory) -> Iterator[Callable[..., Api]]:
    clients: list[Api] = []

    def make(**kwargs: Any) -> Api:
        client = Api(jatos_standin_factory(**kwargs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# ============================================================== tokens (docs/jatos-api.md §2.1)


def test_make_token_has_the_real_format_and_a_valid_checksum() -> None:
    token = make_token()
    assert len(token) == 41
    assert token.startswith("jap_")
    assert token_checksum_ok(token)
    assert make_token() != token


def test_token_checksum_ok_rejects_a_changed_character() -> None:
    token = make_token()
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert not token_checksum_ok(flipped)
    assert not token_checksum_ok(token[:-1])


def test_server_repr_and_records_never_show_the_token(api: Api) -> None:
    assert api.token is not None
    api.get("admin/token")
    assert api.token not in repr(api.server)
    assert all(api.token not in repr(r) for r in api.server.requests)


# ================================================================== auth (docs/jatos-api.md §2)


def test_valid_token_gets_token_info_in_the_version_shape(api: Api) -> None:
    r = api.get("admin/token")
    assert r.status_code == 200
    body = r.json()
    assert body["apiVersion"] == api.server.api_version
    data = body["data"]
    assert data["active"] is True
    assert data["isExpired"] is False
    assert data["expirationDate"] == 0
    assert isinstance(data["creationDate"], int)
    if api.v3_10:
        assert data["username"] == "alice"
        assert data["roles"] == ["USER"]
        assert "isAdminToken" not in data
    else:
        assert data["isAdminToken"] is False
        assert "roles" not in data


def test_bad_checksum_is_401_invalid_api_token(api: Api) -> None:
    assert api.token is not None
    bad = api.token[:-1] + ("0" if api.token[-1] != "0" else "1")
    r = Api(api.server, bad).get("admin/token")
    expect_error(
        r, api, v39=(401, "Invalid api token"), v310=(401, "INVALID_API_TOKEN", "Invalid api token")
    )


def test_unknown_token_with_valid_checksum_is_401(api: Api) -> None:
    r = Api(api.server, make_token()).get("admin/token")
    expect_error(r, api, v39=(401, "Invalid api token"), v310=(401, "INVALID_API_TOKEN", None))


def test_token_shorter_than_31_chars_is_a_500(api: Api) -> None:
    r = Api(api.server, "jap_short").listing()
    path = f"{api.server.prefix}/jatos/api/v1/studies/{api.study.id}/assets/structure"
    expect_error(
        r,
        api,
        v39=(500, f"Internal JATOS error during {path}. Check logs to get more information."),
        v310=(500, "UNEXPECTED_ERROR", "Unexpected error"),
    )


@pytest.mark.parametrize("how", ["expired", "revoked", "inactive_token", "user_deactivated"])
def test_expired_revoked_or_deactivated_tokens_are_401(api: Api, how: str) -> None:
    server = api.server
    if how == "inactive_token":
        token = server.add_token("alice", active=False)
    else:
        token = server.add_token("alice", expires_s=3600)
        if how == "expired":
            server.expire_token(token)
        elif how == "revoked":
            server.revoke_token(token)
        else:
            server.set_user_active("alice", False)
    r = Api(server, token).listing()
    expect_error(r, api, v39=(401, "Invalid api token"), v310=(401, "INVALID_API_TOKEN", None))


def test_token_with_expiry_reports_its_expiration_date(api: Api) -> None:
    token = api.server.add_token("alice", expires_s=60)
    data = Api(api.server, token).get("admin/token").json()["data"]
    assert data["expirationDate"] == data["creationDate"] + 60_000
    assert data["expiresAfter" if api.v3_10 else "expires"] == 60


@pytest.mark.parametrize(
    ("accept", "xhr", "expect_39", "expect_310"),
    [
        # Play's accepts("text/html") is true without Accept (docs/jatos-api.md §2.4).
        (None, False, 303, 401),
        ("*/*", False, 303, 401),
        ("text/html,application/xhtml+xml", False, 303, 303),
        ("application/json", False, 403, 401),
        (None, True, 403, 401),  # 3.9: AJAX requests are never redirected
    ],
)
def test_missing_token_redirects_or_denies_per_version(
    api: Api, accept: str | None, xhr: bool, expect_39: int, expect_310: int
) -> None:
    headers: dict[str, Any] = {"Accept": accept, "Authorization": None}
    if xhr:
        headers["X-Requested-With"] = "XMLHttpRequest"
    r = api.session.get(api.assets("structure"), headers=headers, allow_redirects=False)
    expected = expect_310 if api.v3_10 else expect_39
    assert r.status_code == expected
    if expected == 303:
        assert r.headers["Location"] == api.server.prefix + "/jatos/signin"
    elif api.v3_10:
        assert r.json()["error"] == {"code": "AUTH_ERROR", "message": "Failed authentication"}
    else:
        assert r.text == "Failed authentication"


def test_api_disabled_is_403(make_api: Callable[..., Api]) -> None:
    for name in BOTH:
        api = make_api(personality=name, api_allowed=False)
        r = api.listing()
        msg = "JATOS' current settings do not allow API usage"
        expect_error(r, api, v39=(403, msg), v310=(403, "AUTH_ERROR", msg))


def test_play_session_cookie_makes_session_auth_deny_even_with_a_valid_token(api: Api) -> None:
    cookies = {"PLAY_SESSION": "stale"}
    r = api.session.get(api.assets("structure"), cookies=cookies, allow_redirects=False)
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/jatos/signin")
    r = api.session.get(
        api.assets("structure"), cookies=cookies, headers={"X-Requested-With": "XMLHttpRequest"}
    )
    assert r.status_code == (401 if api.v3_10 else 403)
    assert r.text == "You are not allowed to access this page. Please sign in."


def test_empty_play_session_cookie_is_ignored(api: Api) -> None:
    assert api.listing().status_code == 200
    r = api.session.get(api.assets("structure"), cookies={"PLAY_SESSION": ""})
    assert r.status_code == 200


def test_token_info_is_token_only_on_3_10(make_api: Callable[..., Api]) -> None:
    api = make_api(personality="3.10")
    r = api.session.get(api.url("admin/token"), cookies={"PLAY_SESSION": "x"})
    # `types = TOKEN`: the session method is skipped (docs/jatos-api.md §2.3).
    assert r.status_code == 200


def test_viewer_only_user_is_refused_assets_but_sees_properties_on_3_10(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(personality="3.10")
    api.server.add_user("vera", roles=("VIEWER",))
    api.server.add_member(api.study, "vera")
    viewer = Api(api.server, api.server.add_token("vera"))
    r = viewer.listing()
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "INVALID_API_TOKEN"
    assert viewer.get(f"studies/{api.study.id}/properties").status_code == 200
    assert viewer.get("admin/token").json()["data"]["roles"] == ["VIEWER"]


def test_csrf_filter_refuses_cookie_posts_without_authorization(api: Api) -> None:
    r = requests.post(
        api.assets("x.txt"),
        files={"studyAssetsFile": ("x.txt", b"x")},
        headers=JSON,
        cookies={"other": "1"},
        timeout=10,
    )
    msg = "You're not allowed to access this resource."
    expect_error(r, api, v39=(403, msg), v310=(403, "NO_ACCESS", msg))


# ================================================== studies (docs/jatos-api.md §7, §9.1, §10.1)


def test_non_member_gets_403(api: Api) -> None:
    other = api.server.add_study("Bob's", members=[])
    r = api.session.get(api.assets("structure", study=other.id))
    expect_error(
        r,
        api,
        v39=(403, f"No access to study with ID {other.id}"),
        v310=(403, "NO_ACCESS", "No access to study."),
    )


def test_study_is_found_by_id_and_by_uuid(api: Api) -> None:
    api.server.put_file(api.study, "a.txt", b"hello\n")
    by_id = api.session.get(api.assets("structure", study=api.study.id)).json()
    by_uuid = api.session.get(api.assets("structure", study=api.study.uuid)).json()
    assert by_id == by_uuid


@pytest.mark.parametrize(
    ("ident", "text_39"),
    [("999", "Couldn't find study with ID 999"), ("nope", "Couldn't find study with UUID nope")],
)
def test_unknown_study_is_404(api: Api, ident: str, text_39: str) -> None:
    r = api.session.get(api.assets("structure", study=ident))
    expect_error(r, api, v39=(404, text_39), v310=(404, "NOT_FOUND", "Study doesn't exist."))


def test_studies_properties_lists_only_member_studies(api: Api) -> None:
    api.server.add_study("not mine")
    second = api.server.add_study("also mine", members=["alice"], locked=True)
    r = api.get("studies/properties")
    studies = r.json()["data"]
    assert [s["id"] for s in studies] == [api.study.id, second.id]
    s = studies[1]
    assert (s["uuid"], s["title"], s["locked"], s["dirName"]) == (
        second.uuid,
        "also mine",
        True,
        second.dir_name,
    )
    if api.v3_10:
        assert s["members"] == [{"id": 1, "username": "alice"}]
    else:
        assert s["members"] == [{"username": "alice"}]
    one = api.get(f"studies/{second.uuid}/properties").json()["data"]
    assert one["id"] == second.id


def test_prefix_is_part_of_the_url_and_required(make_api: Callable[..., Api]) -> None:
    for name in BOTH:
        api = make_api(personality=name, prefix="/jatos-prefix/")
        assert api.server.url.endswith("/jatos-prefix")
        assert api.listing().status_code == 200
        bare = api.session.get(
            f"http://127.0.0.1:{api.server.port}/jatos/api/v1/studies/{api.study.id}/assets/structure"
        )
        assert bare.status_code == 404


def test_unknown_api_path_is_the_version_404_and_other_paths_are_html(api: Api) -> None:
    r = api.get("nothing/here")
    path = f"{api.server.prefix}/jatos/api/v1/nothing/here"
    expect_error(
        r,
        api,
        v39=(404, f"Requested page {path} couldn't be found."),
        v310=(404, "NOT_FOUND", f"Requested page GET {path} couldn't be found."),
    )
    home = requests.get(api.server.url + "/", timeout=10)
    assert home.status_code == 200
    assert "<title>JATOS</title>" in home.text


# =============================================================== listing (docs/jatos-api.md §3)


def test_flat_listing_has_files_empty_dirs_dotfiles_and_adler32(api: Api) -> None:
    server, study = api.server, api.study
    server.put_file(study, "empty.txt", b"")
    server.put_file(study, "hello.txt", b"hello\n")
    server.put_file(study, "img/icons/wiki.txt", b"Wikipedia")
    server.put_file(study, ".hidden", b"x")
    (study.assets_dir / "void" / "deeper").mkdir(parents=True)
    flat = api.flat()
    dir_suffix = "" if api.v3_10 else "/"
    assert set(flat) == {
        "empty.txt",
        "hello.txt",
        "img/icons/wiki.txt",
        ".hidden",
        "void/deeper" + dir_suffix,
    }
    # Test vectors of docs/jatos-api.md §3.3
    assert flat["empty.txt"]["checksum"] == 1
    assert flat["hello.txt"]["checksum"] == 139133471
    assert flat["img/icons/wiki.txt"]["checksum"] == 300286872
    wiki = flat["img/icons/wiki.txt"]
    assert (wiki["name"], wiki["type"], wiki["size"]) == ("wiki.txt", "file", 9)
    now_ms = time.time() * 1000
    assert abs(wiki["lastModified"] - now_ms) < 60_000
    assert isinstance(wiki["creation"], int)
    empty_dir = flat["void/deeper" + dir_suffix]
    assert empty_dir["type"] == "directory"
    assert empty_dir["content"] == []
    assert "checksum" not in empty_dir


def test_tree_listing_nests_directories_with_version_paths(api: Api) -> None:
    api.server.put_file(api.study, "img/logo.png", b"png")
    r = api.listing()
    root = r.json()["data"]
    assert (root["name"], root["path"], root["type"]) == (api.study.dir_name, "", "directory")
    (img,) = root["content"]
    assert img["path"] == ("img" if api.v3_10 else "img/")
    assert img["name"] == "img"
    assert "checksum" not in img
    (logo,) = img["content"]
    assert logo["path"] == "img/logo.png"
    assert "content" not in logo
    assert logo["checksum"] == zlib.adler32(b"png")


def test_flat_listing_of_an_empty_study_is_the_root_node(api: Api) -> None:
    data = api.listing(flatten=True).json()["data"]
    assert len(data) == 1
    assert data[0]["path"] == ""
    assert data[0]["name"] == api.study.dir_name
    assert data[0]["content"] == []


def test_listing_reflects_gui_changes_without_caching(api: Api) -> None:
    api.server.put_file(api.study, "a.txt", b"one")
    assert api.flat()["a.txt"]["checksum"] == zlib.adler32(b"one")
    api.server.put_file(api.study, "a.txt", b"two")
    assert api.flat()["a.txt"]["checksum"] == zlib.adler32(b"two")


def test_missing_assets_directory_is_404(api: Api) -> None:
    api.study.assets_dir.rmdir()
    msg = "Study assets directory couldn't be found"
    expect_error(api.listing(), api, v39=(404, msg), v310=(404, "NOT_FOUND", msg))


def test_bad_flatten_value_is_a_client_error(api: Api) -> None:
    r = api.session.get(api.assets("structure") + "?flatten=maybe")
    expect_error(r, api, v39=(400, "bad request"), v310=(400, "CLIENT_ERROR", None))


def test_null_fields_disappear_after_the_first_listing(api: Api) -> None:
    key = "expiresAfter" if api.v3_10 else "expires"
    assert api.get("admin/token").json()["data"][key] is None
    api.listing()
    assert key not in api.get("admin/token").json()["data"]  # NON_NULL (docs/jatos-api.md §3.2)


# ================================================================ upload (docs/jatos-api.md §5)


def test_upload_to_an_explicit_path_stores_under_that_name(api: Api) -> None:
    r = api.upload("img/logo.png", b"PNG", filename="ignored.bin")
    if api.v3_10:
        assert r.status_code == 201
        assert r.json() == {"apiVersion": "1.1.0", "message": "File uploaded successfully"}
    else:
        assert (r.status_code, r.content) == (200, b"")
    r = api.upload("img/logo.png", b"PNG2", filename="ignored.bin")
    if api.v3_10:
        assert r.status_code == 200
        assert r.json()["message"] == "File overwritten successfully"
    else:
        assert (r.status_code, r.content) == (200, b"")
    assert api.server.files(api.study) == {"img/logo.png": b"PNG2"}


def test_upload_to_a_directory_path_keeps_the_uploaded_file_name(api: Api) -> None:
    assert api.upload("sub/dir/", b"x", filename="kept.txt").status_code in (200, 201)
    assert api.upload("/", b"y", filename="top.txt").status_code in (200, 201)  # …/assets//
    assert api.server.files(api.study) == {"sub/dir/kept.txt": b"x", "top.txt": b"y"}


def test_upload_without_filepath_uses_the_version_route(api: Api) -> None:
    files = {"studyAssetsFile": ("root.txt", b"r")}
    with_slash = api.session.post(api.assets(""), files=files)
    without_slash = api.session.post(api.assets("").rstrip("/"), files=files)
    good, bad = (without_slash, with_slash) if api.v3_10 else (with_slash, without_slash)
    assert good.status_code in (200, 201)
    assert bad.status_code == 404
    assert api.server.files(api.study) == {"root.txt": b"r"}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("a%2Bb.txt", "a+b.txt"),
        ("a+b.txt", "a b.txt"),  # URLDecoder: + is a space (docs/jatos-api.md §9.2)
        ("100%25.txt", "100%.txt"),
        ("two%20words.txt", "two words.txt"),
        ("hash%23tag.txt", "hash#tag.txt"),
        ("a&b=c.txt", "a&b=c.txt"),
        ("%C3%BCber/%E2%82%AC.txt", "über/€.txt"),
        ("%2Fslashed%2Fname.txt", "slashed/name.txt"),
        ("a/../b.txt", "b.txt"),
    ],
)
def test_upload_path_decoding_like_java_url_decoder(api: Api, sent: str, stored: str) -> None:
    status, _ = raw_upload(api, sent, b"content")
    assert status in (200, 201)
    assert api.server.files(api.study) == {stored: b"content"}
    assert stored in api.flat()


def test_malformed_percent_escape_is_a_500(api: Api) -> None:
    status, _ = raw_upload(api, "bad%zz.txt", b"x")
    assert status == 500
    assert api.server.files(api.study) == {}


def test_zero_byte_upload_is_refused_as_file_missing(api: Api) -> None:
    r = api.upload("empty.txt", b"")
    expect_error(r, api, v39=(400, "File missing"), v310=(400, "MISSING_FILE", "File missing"))
    assert api.server.files(api.study) == {}
    assert os.listdir(api.server.data_dir / ".upload-tmp") == []


@pytest.mark.parametrize("variant", ["octet-stream", "no-filename", "wrong-name", "empty-name"])
def test_upload_without_a_usable_file_part_is_file_missing(api: Api, variant: str) -> None:
    headers = dict(api.session.headers)
    if variant == "octet-stream":
        body, ctype = b"raw bytes", "application/octet-stream"
    elif variant == "no-filename":
        body, ctype = multipart_body(None, b"abc")
    elif variant == "wrong-name":
        body, ctype = multipart_body("x.txt", b"abc", name="file")
    else:
        body, ctype = multipart_body("", b"abc")
    headers["Content-Type"] = ctype
    r = requests.post(api.assets("x.txt"), data=body, headers=headers, timeout=10)
    expect_error(r, api, v39=(400, "File missing"), v310=(400, "MISSING_FILE", "File missing"))


@pytest.mark.parametrize("name", ["a:b.txt", "star*.txt", "q%3F.txt", "pipe%7C.txt", "lt%3C.txt"])
def test_3_10_refuses_illegal_path_characters_3_9_stores_them(api: Api, name: str) -> None:
    status, body = raw_upload(api, name, b"x")
    if api.v3_10:
        assert status == 400
        assert json.loads(body)["error"]["code"] == "VALIDATION_ERROR"
        assert api.server.files(api.study) == {}
    else:
        assert status == 200
        assert list(api.server.files(api.study)) == [java_url_decode(name)]


def test_3_10_trims_the_filepath_3_9_does_not(api: Api) -> None:
    status, _ = raw_upload(api, "%20padded.txt%20", b"x")
    assert status in (200, 201)
    expected = "padded.txt" if api.v3_10 else " padded.txt "
    assert list(api.server.files(api.study)) == [expected]


def test_upload_escaping_the_assets_dir_is_refused(api: Api) -> None:
    status, body = raw_upload(api, "../outside.txt", b"x")
    assert status == 400
    if api.v3_10:
        assert json.loads(body)["error"] == {
            "code": "VALIDATION_ERROR",
            "message": "Invalid path: ../outside.txt",
        }
    else:
        assert body == b"Error writing file"
    assert not (api.server.assets_root / "outside.txt").exists()


def test_upload_onto_an_empty_directory_per_version(api: Api) -> None:
    (api.study.assets_dir / "thing").mkdir()
    r = api.upload("thing", b"file now")
    if api.v3_10:
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "FILE_ALREADY_EXISTS"
        assert (api.study.assets_dir / "thing").is_dir()
    else:
        # The empty directory is silently replaced (docs/jatos-api.md §5.3).
        assert r.status_code == 200
        assert api.server.files(api.study) == {"thing": b"file now"}


def test_upload_onto_a_non_empty_directory_or_below_a_file_fails(api: Api) -> None:
    api.server.put_file(api.study, "dir/inner.txt", b"i")
    api.server.put_file(api.study, "plain.txt", b"p")
    for target in ("dir", "plain.txt/child.txt"):
        r = api.upload(target, b"x")
        expect_error(
            r,
            api,
            v39=(400, "Error writing file"),
            v310=(400, "FILE_ALREADY_EXISTS", "File already exists but is of a different type"),
        )
    assert api.server.files(api.study) == {"dir/inner.txt": b"i", "plain.txt": b"p"}


def test_locked_study_refuses_upload_and_delete_but_lists_and_downloads(api: Api) -> None:
    api.server.put_file(api.study, "a.txt", b"a")
    api.server.set_locked(api.study, True)
    v39 = (403, f"Study with ID {api.study.id} is locked. Unlock it if you want to make changes.")
    expect_error(
        api.upload("b.txt", b"b"), api, v39=v39, v310=(403, "STUDY_LOCKED", "Study locked")
    )
    expect_error(api.delete("a.txt"), api, v39=v39, v310=(403, "STUDY_LOCKED", "Study locked"))
    assert api.listing().status_code == 200
    assert api.session.get(api.assets("a.txt")).content == b"a"
    api.server.set_locked(api.study, False)
    assert api.upload("b.txt", b"b").status_code in (200, 201)


def test_body_over_the_size_limit_is_413(make_api: Callable[..., Api]) -> None:
    for name in BOTH:
        api = make_api(personality=name, max_body_bytes=1000)
        r = api.upload("big.bin", b"x" * 5000)
        expect_error(
            r,
            api,
            v39=(
                413,
                "Request entity too large: You probably tried to upload a file that is too large",
            ),
            v310=(413, "TOO_LARGE", "Request entity too large"),
        )
        assert api.upload("small.bin", b"x").status_code in (200, 201)  # connection still usable


def test_chunked_upload_is_streamed_and_stored(api: Api) -> None:
    body, ctype = multipart_body("c.bin", b"0123456789" * 10_000)
    chunks = (body[i : i + 7000] for i in range(0, len(body), 7000))
    r = api.session.post(api.assets("c.bin"), data=chunks, headers={"Content-Type": ctype})
    assert r.status_code in (200, 201)
    assert api.server.files(api.study) == {"c.bin": b"0123456789" * 10_000}


def test_upload_is_parsed_before_auth_so_a_bad_token_still_gets_401(api: Api) -> None:
    r = Api(api.server, make_token()).upload("x.txt", b"x")
    assert r.status_code == 401
    assert os.listdir(api.server.data_dir / ".upload-tmp") == []


# ================================================================ delete (docs/jatos-api.md §6)


def test_delete_removes_one_file_and_keeps_the_parent_dir(api: Api) -> None:
    api.server.put_file(api.study, "d/x.txt", b"x")
    r = api.delete("d/x.txt")
    assert r.status_code == 200
    if api.v3_10:
        assert r.json() == {"apiVersion": "1.1.0", "message": "File deleted successfully"}
    else:
        assert r.content == b""
    assert api.server.files(api.study) == {}
    assert (api.study.assets_dir / "d").is_dir()


def test_delete_errors_follow_the_version_table(api: Api) -> None:
    api.server.put_file(api.study, "d/x.txt", b"x")
    expect_error(
        api.delete("missing.txt"),
        api,
        v39=(404, "File 'missing.txt' couldn't be found."),
        v310=(404, "NOT_FOUND", "File 'missing.txt' couldn't be found."),
    )
    v310 = (500, "UNSPECIFIED", "Error writing file")
    expect_error(api.delete("d"), api, v39=(400, ""), v310=v310)
    expect_error(api.delete("/"), api, v39=(400, ""), v310=v310)  # …/assets// → blank path
    r = api.delete("")
    assert r.status_code == 404  # no route for an empty wildcard
    assert api.server.files(api.study) == {"d/x.txt": b"x"}


# ============================================================== download (docs/jatos-api.md §4)


def test_download_streams_the_file_with_version_disposition(api: Api) -> None:
    api.server.put_file(api.study, "dir/data.csv", b"a,b\n1,2\n")
    r = api.session.get(api.assets("dir/data.csv"))
    assert r.status_code == 200
    assert r.content == b"a,b\n1,2\n"
    assert r.headers["Content-Length"] == "8"
    mode = "attachment" if api.v3_10 else "inline"
    assert r.headers["Content-Disposition"] == f'{mode}; filename="data.csv"'


def test_download_of_a_non_ascii_name_adds_an_rfc5987_filename(api: Api) -> None:
    api.server.put_file(api.study, "über.txt", b"u")
    r = api.session.get(api.assets("%C3%BCber.txt"))
    assert r.content == b"u"
    assert "filename*=utf-8''%c3%bcber.txt" in r.headers["Content-Disposition"]


def test_download_errors_per_version(api: Api) -> None:
    api.server.put_file(api.study, "d/x.txt", b"x")
    for missing in ("nope.txt", "d"):
        expect_error(
            api.session.get(api.assets(missing)),
            api,
            v39=(404, f"File '{missing}' couldn't be found."),
            v310=(404, "NOT_FOUND", f"File '{missing}' couldn't be found."),
        )
    path = f"{api.server.prefix}/jatos/api/v1/studies/{api.study.id}/assets/../secret"
    status, _, body = raw(api.server, "GET", path, headers=dict(api.session.headers))  # type: ignore[arg-type]
    if api.v3_10:
        assert status == 500
        assert json.loads(body)["error"]["code"] == "IO_ERROR"
    else:
        assert (status, body) == (404, b"File '../secret' couldn't be found.")


# ========================================================= 3.8.1 (docs/jatos-api.md §1.3, §7.1)


def test_3_8_1_has_no_structure_route_and_no_lock_check(make_api: Callable[..., Api]) -> None:
    api = make_api(personality="3.8.1")
    assert api.get("admin/token").json()["apiVersion"] == "1.0.0"
    r = api.listing()
    assert (r.status_code, r.text) == (404, "File 'structure' couldn't be found.")
    api.server.put_file(api.study, "structure", b"a file called structure")
    assert api.listing().content == b"a file called structure"
    api.server.set_locked(api.study, True)
    assert api.upload("x.txt", b"x").status_code == 200
    assert api.delete("x.txt").status_code == 200
    r = api.session.get(api.assets("structure"), headers={"Accept": None, "Authorization": None})
    assert r.history[0].headers["Location"] == "/jatos/login"


# ============================================================================ faults


def test_fail_next_answers_proxy_error_pages_then_recovers(api: Api) -> None:
    api.server.faults.fail_next(2, status=502)
    for _ in range(2):
        r = api.listing()
        assert r.status_code == 502
        assert r.headers["Content-Type"].startswith("text/html")
        assert "502 Bad Gateway" in r.text
    assert api.listing().status_code == 200
    assert [rec.status for rec in api.server.requests[-3:]] == [502, 502, 200]


def test_drop_next_closes_the_connection_without_a_response(api: Api) -> None:
    api.server.faults.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        api.listing()
    assert api.listing().status_code == 200
    assert api.server.requests[-2].status == 0


def test_lose_answer_next_does_the_work_and_then_closes_the_connection(api: Api) -> None:
    api.server.faults.lose_answer_next(1)
    with pytest.raises(requests.ConnectionError):
        api.upload("stored.js", b"arrived")
    assert api.flat()["stored.js"]["size"] == len(b"arrived")  # stored all the same
    assert api.server.requests[-2].status == 0


def test_error_and_drop_rates_with_a_seed(api: Api) -> None:
    faults = api.server.faults
    faults.seed = 7
    faults.error_rate = 1.0
    assert api.listing().status_code == 503
    faults.error_rate = 0.0
    faults.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        api.listing()
    faults.reset()
    assert api.listing().status_code == 200


def test_latency_delays_each_request(api: Api) -> None:
    api.server.faults.latency_s = 0.2
    start = time.monotonic()
    assert api.listing().status_code == 200
    assert time.monotonic() - start >= 0.2


def test_proxy_body_limit_answers_nginx_413_html_and_stores_nothing(api: Api) -> None:
    api.server.faults.proxy_max_body_bytes = 10_000
    r = api.upload("big.bin", b"x" * 200_000)
    assert r.status_code == 413
    assert r.headers["Content-Type"].startswith("text/html")
    assert "413 Request Entity Too Large" in r.text
    assert api.server.files(api.study) == {}
    assert api.upload("small.bin", b"x").status_code in (200, 201)


def test_proxy_body_limit_also_applies_to_chunked_bodies(api: Api) -> None:
    api.server.faults.proxy_max_body_bytes = 10_000
    body, ctype = multipart_body("c.bin", b"x" * 100_000)
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    r = api.session.post(api.assets("c.bin"), data=chunks, headers={"Content-Type": ctype})
    assert r.status_code == 413
    assert "nginx" in r.text
    assert api.server.files(api.study) == {}
    assert os.listdir(api.server.data_dir / ".upload-tmp") == []


def test_login_redirect_sends_an_sso_sign_in_page(api: Api) -> None:
    api.server.faults.login_redirect = True
    r = api.session.get(api.assets("structure"), allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/login"
    followed = api.listing()
    assert followed.status_code == 200
    assert followed.headers["Content-Type"].startswith("text/html")
    assert "Sign in" in followed.text
    api.server.faults.login_redirect = False
    assert api.listing().json()["apiVersion"] == api.server.api_version


def test_kill_refuses_connections_and_restart_keeps_port_and_data(api: Api) -> None:
    api.upload("keep.txt", b"k")
    port = api.server.port
    api.server.kill()
    with pytest.raises(requests.ConnectionError):
        api.listing()
    api.server.restart()
    assert api.server.port == port
    assert "keep.txt" in api.flat()


# ============================================================================ records, lifecycle


def test_requests_are_recorded_with_raw_path_kind_and_bytes(api: Api) -> None:
    api.server.clear_requests()
    api.upload("a%2Bb.txt", b"12345")
    api.listing(flatten=True)
    api.session.get(api.assets("a%2Bb.txt"))
    api.delete("a%2Bb.txt")
    api.get("admin/token")
    api.get("studies/properties")
    upload = api.server.requests[0]
    assert isinstance(upload, RequestRecord)
    assert upload.path.endswith("/assets/a%2Bb.txt")
    assert upload.bytes_in > 5
    assert [r.kind for r in api.server.requests] == [
        "upload",
        "list",
        "download",
        "delete",
        "token",
        "properties",
    ]
    assert api.server.count("POST") == 1
    assert api.server.count(kind="list") == 1
    assert api.server.count("GET", kind="download") == 1


def test_classify_and_upload_target_rules() -> None:
    assert classify("GET", "/p/jatos/api/v1/studies/1/assets/structure") == "list"
    assert classify("POST", "/jatos/api/v1/studies/1/assets") == "upload"
    assert classify("GET", "/") == "other"
    assert classify("POST", "/jatos/api/v1/study") == "import"
    assert classify("GET", "/jatos/api/v1/studies/7") == "export"
    assert classify("PUT", "/jatos/api/v1/results/delete") == "results"
    assert classify("POST", "/jatos/api/v1/studies/7/studyCodes") == "codes"
    assert classify("PATCH", "/jatos/api/v1/batches/3") == "components"
    assert classify("GET", "/publix/abcdefghijk") == "publix"
    assert classify("POST", "/_standin/runs/3/finish") == "control"
    assert upload_target(None, "f.txt", trim=False) == "f.txt"
    assert upload_target("/", "f.txt", trim=False) == "f.txt"
    assert upload_target("d/", "f.txt", trim=False) == "d/f.txt"
    assert upload_target("d/g.txt", "f.txt", trim=False) == "d/g.txt"
    assert upload_target("%20g.txt", "f.txt", trim=True) == "g.txt"


def test_java_url_decoder_quirks() -> None:
    assert java_url_decode("a+b%2B%25%C3%BC") == "a b+%ü"
    assert java_url_decode("%+1") == "\x01"  # Integer.parseInt accepts a sign
    for bad in ("%zz", "%4", "abc%", "%-1"):
        with pytest.raises(MalformedEscapeError):
            java_url_decode(bad)


def test_stop_joins_all_threads_and_removes_the_temp_dir() -> None:
    before = {t.name for t in threading.enumerate()}
    server = StandInServer(personality="3.9").start()
    server.populate()
    data_dir = server.data_dir
    session = requests.Session()  # keeps a keep-alive connection open
    session.get(f"{server.url}/jatos/api/v1/admin/token", headers=JSON, timeout=10)
    server.stop()
    session.close()
    leaked = [t for t in threading.enumerate() if t.name.startswith("jatos-standin")]
    assert leaked == []
    assert {t.name for t in threading.enumerate()} <= before | {"MainThread"}
    assert not data_dir.exists()


def test_user_supplied_data_dir_is_kept(tmp_path: Path) -> None:
    with StandInServer(personality="3.10", data_dir=tmp_path) as server:
        study = server.add_study(dir_name="my_study", members=[])
        server.put_file(study, "index.html", b"<html></html>\n")
    assert (tmp_path / "study_assets_root" / "my_study" / "index.html").exists()


def test_jatos_standin_fixture_is_a_populated_3_10_server(jatos_standin: StandInServer) -> None:
    assert jatos_standin.api_version == "1.1.0"
    assert jatos_standin.token is not None
    assert jatos_standin.study is not None
    assert jatos_standin.files(jatos_standin.study) == {}


# ============================================================================ big uploads


def test_50_mb_upload_streams_without_holding_the_file_in_memory(api: Api, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    source = tmp_path / "big.bin"
    expected = 1
    with source.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
            expected = zlib.adler32(block, expected)
    tracemalloc.start()
    try:
        with source.open("rb") as f:
            encoder = MultipartEncoder(
                {"studyAssetsFile": ("big.bin", f, "application/octet-stream")}
            )
            r = api.session.post(
                api.assets("big.bin"), data=encoder, headers={"Content-Type": encoder.content_type}
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code in (200, 201), r.text
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak} bytes"
    node = api.flat()["big.bin"]
    assert node["size"] == size
    assert node["checksum"] == expected & 0xFFFFFFFF


# ============================================================================ command line


def test_command_line_serve_prints_one_json_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "jatos_sync.testing", "serve", "--personality", "3.9"]
    command += ["--data", str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert set(line) == {
                "url",
                "token",
                "study_id",
                "study_uuid",
                "batch_id",
                "component_ids",
                "study_code",
                "study_link",
                "personality",
                "api_version",
            }
            assert line["url"].startswith("http://127.0.0.1:")
            r = requests.get(
                f"{line['url']}/jatos/api/v1/studies/{line['study_id']}/assets/structure",
                headers={**JSON, "Authorization": f"Bearer {line['token']}"},
                timeout=10,
            )
            assert r.json()["apiVersion"] == "1.0.1"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
