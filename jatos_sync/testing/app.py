"""The JATOS application of the stand-in: routes, authentication, actions, error bodies.

Owns what happens between "a request arrived" and "this is the answer" for the asset API
of JATOS_ASSETS_API.md: Play's route table per version, the auth order of §1, the study
lookup and membership/lock checks, the upload body (streamed to a temp file with the
`multipart` package), and rendering of `ApiError`s per personality. It does no socket I/O
(see `transport.py`) and injects no faults.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl

from jatos_sync.testing import assets, wire
from jatos_sync.testing.personality import ApiError, ErrorKind, Personality
from jatos_sync.testing.state import JatosState, Study, Token, User, now_ms
from jatos_sync.testing.tokens import token_checksum, token_hash
from jatos_sync.testing.wire import Request, Response, html_response

API_PREFIX = "/jatos/api/v1"
_STREAM_CHUNK = 64 * 1024

ROOT_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>JATOS</title></head>"
    b"<body><h1>JATOS</h1><p>Local stand-in server for tests.</p></body></html>\n"
)
_CLEAR_SESSION = "PLAY_SESSION=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"
_FLATTEN_VALUES = {"true": True, "false": False, "1": True, "0": False}


class _EarlyResponseError(Exception):
    """Answer with this response now (redirects and session-cookie denials, §1.2)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class UploadPart:
    """The `studyAssetsFile` part of an upload, already on disk."""

    filename: str
    tmp_path: Path
    size: int


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    action: str
    group: str  # role group of §1.4: "token", "properties" or "assets"


@dataclass
class _Call:
    """Everything an action needs once routing, body parsing and auth are done."""

    req: Request
    params: Mapping[str, str | None]
    user: User
    token: Token
    part: UploadPart | None

    @property
    def study_ref(self) -> str:
        # Play decodes single-segment parts such as `:id` (§1.5).
        return wire.decode_path_segment(self.params.get("id") or "")

    @property
    def filepath(self) -> str | None:
        return self.params.get("fp")


def routes_for(p: Personality) -> list[Route]:
    """The API routes of one version, in Play's declaration order (§0 table, §2.6, §4.2)."""
    study = re.escape(API_PREFIX) + r"/studies/(?P<id>[^/]+)"
    table: list[tuple[str, str, str, str]] = [
        ("GET", re.escape(API_PREFIX + "/admin/token"), "token_info", "token"),
        ("GET", re.escape(API_PREFIX + "/studies/properties"), "all_properties", "properties"),
        ("GET", study + "/properties", "study_properties", "properties"),
    ]
    if p.has_structure_route:  # 3.8.1: `…/assets/structure` falls through to download
        table.append(("GET", study + "/assets/structure", "structure", "assets"))
    table += [
        # `*filepath` compiles to `.+`: an empty wildcard has no route (§3 table).
        ("GET", study + "/assets/(?P<fp>.+)", "download", "assets"),
        ("POST", study + "/" + re.escape(p.upload_root_route), "upload", "assets"),
        ("POST", study + "/assets/(?P<fp>.+)", "upload", "assets"),
        ("DELETE", study + "/assets/(?P<fp>.+)", "delete", "assets"),
    ]
    return [Route(m, re.compile(rx, re.DOTALL), a, g) for m, rx, a, g in table]


_KIND_PATTERNS: list[tuple[str | None, re.Pattern[str], str]] = [
    (None, re.compile(r"/jatos/api/v1/admin/token/?$"), "token"),
    (None, re.compile(r"/jatos/api/v1/studies/(?:[^/]+/)?properties/?$"), "properties"),
    ("GET", re.compile(r"/jatos/api/v1/studies/[^/]+/assets/structure$"), "list"),
    ("GET", re.compile(r"/jatos/api/v1/studies/[^/]+/assets/."), "download"),
    ("POST", re.compile(r"/jatos/api/v1/studies/[^/]+/assets(?:/.*)?$", re.DOTALL), "upload"),
    ("DELETE", re.compile(r"/jatos/api/v1/studies/[^/]+/assets/."), "delete"),
]


def classify(method: str, path: str) -> str:
    """The request kind of `RequestRecord.kind` (from the URL shape, for every version)."""
    verb = "GET" if method == "HEAD" else method
    for want, pattern, kind in _KIND_PATTERNS:
        if (want is None or want == verb) and pattern.search(path):
            return kind
    return "other"


def upload_target(filepath: str | None, filename: str, *, trim: bool) -> str:
    """The asset path an upload is stored at (§4.2, identical in all versions + HEAD trim)."""
    if filepath is None or filepath == "":
        return filename
    decoded = wire.java_url_decode(filepath)
    if trim:
        decoded = wire.java_trim(decoded)
    decoded = decoded.removeprefix("/")
    if decoded.endswith("/"):
        return decoded + filename
    if decoded == "":
        return filename
    return decoded


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    mtype, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, sep, val = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return mtype.strip().lower(), params


def _discard(*parts: UploadPart | None) -> None:
    for part in parts:
        if part is not None:
            part.tmp_path.unlink(missing_ok=True)


class JatosApp:
    """Answers requests like one JATOS release (`personality`) would."""

    def __init__(
        self,
        state: JatosState,
        personality: Personality,
        *,
        prefix: str,
        api_allowed: bool,
        upload_tmp_dir: Callable[[], Path],
    ) -> None:
        self.state = state
        self.personality = personality
        self.prefix = prefix
        self.api_allowed = api_allowed  # jatos.api.allowed (§1.3)
        # A JATOS on macOS or Windows: its disk ignores letter case (docs/jatos-api.md §9).
        self.case_insensitive = False
        self._upload_tmp_dir = upload_tmp_dir
        self._routes = routes_for(personality)
        # Play's global Jackson mapper switches to NON_NULL after the first structure call
        # (§2.1 note): later JSON responses omit null fields.
        self._omit_nulls = False
        self._actions: dict[str, Callable[[_Call], Response]] = {
            "token_info": self._token_info,
            "all_properties": self._all_properties,
            "study_properties": self._study_properties,
            "structure": self._structure,
            "download": self._download,
            "upload": self._upload,
            "delete": self._delete,
        }

    # ------------------------------------------------------------------ entry points

    def handle(self, req: Request) -> Response:
        """Answer `req`. Raises `wire.BodyTooLargeError(by_proxy=True)` for the transport;
        JATOS's own body limit becomes the version's 413."""
        part: UploadPart | None = None
        try:
            self._csrf_check(req)
            route, params = self._route(req)
            if route is None:
                req.body.drain()
                if "/jatos/api/" in req.path:
                    raise ApiError(ErrorKind.ROUTE_NOT_FOUND)
                return html_response(200, ROOT_PAGE)
            # Play parses the body before any action code runs, auth included (§4.3).
            part = self._read_body(req, upload=route.action == "upload")
            user, token = self._authenticate(req, route.group)
            return self._actions[route.action](_Call(req, params, user, token, part))
        except ApiError as exc:
            req.body.drain()
            return self.render_error(req, exc)
        except _EarlyResponseError as exc:
            req.body.drain()
            return exc.response
        except wire.BodyTooLargeError as exc:
            if exc.by_proxy:
                raise
            req.body.drain()
            return self.render_error(req, ApiError(ErrorKind.TOO_LARGE))
        finally:
            _discard(part)

    def render_error(self, req: Request, exc: ApiError) -> Response:
        """The error as this version sends it: text, empty, JSON envelope or HTML (§7)."""
        shape = self.personality.error_shape(exc.kind)
        fields = _Fields(exc.fields)
        fields.setdefault("uri", req.target)
        fields.setdefault("method", req.method)
        message = shape.message.format_map(fields)
        accept = (req.header("Accept") or "").lower()
        if shape.html_when_accept and shape.html_when_accept in accept:
            page = (
                "<!DOCTYPE html>\n<html><head><title>JATOS</title></head><body>"
                f"<h1>{html.escape(message)}</h1></body></html>\n"
            )
            return html_response(shape.status, page.encode())
        if self.personality.json_errors:
            error: dict[str, Any] = {"code": shape.code}
            if message:
                error["message"] = message
            return self._json(shape.status, {"apiVersion": self.api_version, "error": error})
        if not message:
            return Response(shape.status)  # e.g. 3.9 delete of a directory (§5)
        return Response(
            shape.status, [("Content-Type", "text/plain; charset=utf-8")], message.encode()
        )

    @property
    def api_version(self) -> str:
        return self.personality.api_version

    # ------------------------------------------------------------------ routing and auth

    def _route(self, req: Request) -> tuple[Route | None, Mapping[str, str | None]]:
        path = req.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return None, {}
            path = path[len(self.prefix) :]
        method = "GET" if req.method == "HEAD" else req.method
        for route in self._routes:
            if route.method == method:
                match = route.pattern.fullmatch(path)
                if match:
                    return route, match.groupdict()
        return None, {}

    def _csrf_check(self, req: Request) -> None:
        # Play's CSRF filter protects requests that carry cookies; any Authorization header
        # bypasses it since 3.9.5; it is disabled in 3.8 (§1.6).
        if not self.personality.csrf_filter or req.method in {"GET", "HEAD", "OPTIONS"}:
            return
        if req.header("Cookie") and req.header("Authorization") is None:
            raise ApiError(ErrorKind.CLIENT_FORBIDDEN)

    def _authenticate(self, req: Request, group: str) -> tuple[User, Token]:
        """Session cookie first, then the Bearer token, in JATOS's order (§1.1-1.3)."""
        p = self.personality
        session = wire.cookie_value(req.header("Cookie"), "PLAY_SESSION")
        if session and group not in p.token_only:
            # A stand-in has no valid sessions: the session method denies (§1.2).
            raise _EarlyResponseError(self._session_denied(req))
        auth = req.header("Authorization")
        if auth is not None and "Bearer" in auth:
            if not self.api_allowed:
                raise ApiError(ErrorKind.API_DISABLED)
            full = wire.java_trim(auth.replace("Bearer", ""))
            cleaned = full.replace("jap_", "")
            if len(cleaned) < 31:
                raise ApiError(ErrorKind.INTERNAL)  # substring(0, 31) throws (§1.1 edge case)
            if full[-6:] != token_checksum(cleaned[:31]):
                raise ApiError(ErrorKind.INVALID_TOKEN)
            with self.state.lock:
                token = self.state.tokens.get(token_hash(full))
                user = self.state.users.get(token.username) if token is not None else None
                if (
                    token is None
                    or user is None
                    or not token.active
                    or not user.active
                    or not p.roles[group].intersection(user.roles)
                    or token.is_expired(now_ms())
                ):
                    raise ApiError(ErrorKind.INVALID_TOKEN)  # one answer for steps 3-7
                return user, token
        if p.missing_token_redirects(req.header("Accept"), req.header("X-Requested-With")):
            raise _EarlyResponseError(self._redirect(p.signin_path))
        raise ApiError(ErrorKind.AUTH_FAILED)

    def _session_denied(self, req: Request) -> Response:
        p = self.personality
        if req.header("X-Requested-With") == "XMLHttpRequest":
            return Response(
                p.session_deny_status,
                [("Content-Type", "text/plain; charset=utf-8")],
                p.session_deny_message.encode(),
            )
        response = self._redirect(p.signin_path)
        response.headers.append(("Set-Cookie", _CLEAR_SESSION))
        return response

    def _redirect(self, path: str) -> Response:
        return Response(303, [("Location", self.prefix + path)])

    def _study_for(self, call: _Call, *, modifying: bool = False) -> Study:
        """`getStudyFromIdOrUuid`, membership, and for uploads/deletes the lock (§1.4-§1.5, §6)."""
        raw = call.study_ref
        study_id = wire.parse_java_long(wire.java_trim(raw))
        with self.state.lock:
            if study_id is not None:
                study = self.state.studies.get(study_id)
                if study is None:
                    raise ApiError(ErrorKind.STUDY_NOT_FOUND_ID, id=raw)
            else:
                found = self.state.study_by_uuid(raw)
                if found is None:
                    raise ApiError(ErrorKind.STUDY_NOT_FOUND_UUID, id=raw)
                study = found
            if call.user.username not in study.members:
                raise ApiError(ErrorKind.NO_ACCESS, study_id=str(study.id))
            if modifying and self.personality.checks_lock and study.locked:
                raise ApiError(ErrorKind.STUDY_LOCKED, study_id=str(study.id))
            return study

    # ------------------------------------------------------------------ actions

    def _token_info(self, call: _Call) -> Response:
        token, user = call.token, call.user
        if self.personality.json_model == "classic":  # §9.4, 3.8/3.9
            data: dict[str, Any] = {
                "id": token.id,
                "name": token.name,
                "creationDate": token.creation_ms,
                "expires": token.expires_s,
                "active": token.active,
                "expirationDate": token.expiration_ms(),
                "isExpired": token.is_expired(now_ms()),
                "isAdminToken": "ADMIN" in user.roles,
            }
        else:  # §9.4, HEAD
            data = {
                "id": token.id,
                "name": token.name,
                "username": user.username,
                "userId": user.id,
                "creationDate": token.creation_ms,
                "expiresAfter": token.expires_s,
                "expirationDate": token.expiration_ms(),
                "isExpired": token.is_expired(now_ms()),
                "roles": list(user.roles),
                "active": token.active,
            }
        return self._json_data(data)

    def _all_properties(self, call: _Call) -> Response:
        with self.state.lock:
            studies = self.state.studies_of(call.user.username)
            return self._json_data([self._study_json(s) for s in studies])

    def _study_properties(self, call: _Call) -> Response:
        with self.state.lock:
            return self._json_data(self._study_json(self._study_for(call)))

    def _structure(self, call: _Call) -> Response:
        study = self._study_for(call)
        flatten = False
        for key, value in parse_qsl(call.req.query, keep_blank_values=True):
            if key == "flatten":
                parsed = _FLATTEN_VALUES.get(value.strip())
                if parsed is None:  # Play's Boolean binder refuses it → client error
                    raise ApiError(
                        ErrorKind.BAD_REQUEST,
                        detail=f"Cannot parse parameter flatten as Boolean: should be true, "
                        f"false, 0 or 1 (got {value!r})",
                    )
                flatten = parsed
                break
        data = assets.structure(
            study.assets_dir,
            study.dir_name,
            dir_suffix=self.personality.dir_path_suffix,
            flatten=flatten,
        )
        self._omit_nulls = True
        return self._json_data(data)

    def _download(self, call: _Call) -> Response:
        study = self._study_for(call)
        rel = self._case(study, self._decoded_path(call.filepath or ""))
        f, size = assets.open_download(study.assets_dir, rel, self.personality.legal_path)
        name = rel.rsplit("/", 1)[-1]
        disposition = wire.content_disposition(self.personality.content_disposition, name)
        return Response(
            200,
            [
                ("Content-Type", mimetypes.guess_type(name)[0] or "application/octet-stream"),
                ("Content-Disposition", disposition),
            ],
            stream=f,
            stream_len=size,
        )

    def _upload(self, call: _Call) -> Response:
        p = self.personality
        study = self._study_for(call, modifying=True)
        if call.part is None:
            raise ApiError(ErrorKind.MISSING_FILE)
        try:
            target = upload_target(call.filepath, call.part.filename, trim=p.trims_upload_path)
        except wire.MalformedEscapeError:
            raise ApiError(ErrorKind.INTERNAL) from None
        if self.case_insensitive:
            target = assets.fold_case(study.assets_dir, target, for_write=True)
        replaced = assets.write_upload(
            study.assets_dir, target, call.part.tmp_path, mode=p.upload_mode, legal=p.legal_path
        )
        if not p.success_messages:
            return Response(200)
        if replaced:
            return self._json_message(200, "File overwritten successfully")
        return self._json_message(201, "File uploaded successfully")

    def _delete(self, call: _Call) -> Response:
        p = self.personality
        study = self._study_for(call, modifying=True)
        rel = self._case(study, self._decoded_path(call.filepath or ""))
        assets.delete_file(study.assets_dir, rel, p.legal_path)
        if not p.success_messages:
            return Response(200)
        return self._json_message(200, "File deleted successfully")

    def _case(self, study: Study, rel: str) -> str:
        return assets.fold_case(study.assets_dir, rel) if self.case_insensitive else rel

    @staticmethod
    def _decoded_path(filepath: str) -> str:
        # Play does not decode wildcards; JATOS applies URLDecoder, then strips one "/" (§3).
        try:
            return wire.java_url_decode(filepath).removeprefix("/")
        except wire.MalformedEscapeError:
            raise ApiError(ErrorKind.INTERNAL) from None

    # ------------------------------------------------------------------ request body

    def _read_body(self, req: Request, *, upload: bool) -> UploadPart | None:
        """Drain the body, or stream an upload's `studyAssetsFile` part to a temp file."""
        mtype, params = _parse_content_type(req.header("Content-Type") or "")
        if not upload or mtype != "multipart/form-data":
            req.body.drain()
            return None  # not multipart → "File missing" after the auth checks (§4.1)
        boundary = params.get("boundary")
        if not boundary:
            req.body.drain()
            raise ApiError(ErrorKind.BAD_REQUEST, detail="Missing boundary header")
        return self._stream_multipart(req.body, boundary)

    def _stream_multipart(self, body: wire.RequestBody, boundary: str) -> UploadPart | None:
        import multipart  # PyPI "multipart"; imported late to keep `import` of this package light

        found: UploadPart | None = None
        current: UploadPart | None = None
        out: BinaryIO | None = None
        try:
            parser = multipart.PushMultipartParser(boundary)
            for event in parser.parse_blocking(body.read, _STREAM_CHUNK):
                if isinstance(event, multipart.MultipartSegment):
                    # Only a *file* part (with a filename) named studyAssetsFile counts (§4.1).
                    wanted = event.name == "studyAssetsFile" and event.filename is not None
                    if found is None and wanted:
                        fd, name = tempfile.mkstemp(dir=self._upload_tmp_dir(), prefix="upload-")
                        out = os.fdopen(fd, "wb")
                        current = UploadPart(str(event.filename), Path(name), 0)
                elif event is None:
                    if current is not None and out is not None:
                        out.close()
                        out = None
                        found, current = current, None
                elif current is not None and out is not None:
                    out.write(event)
                    current.size += len(event)
        except multipart.MultipartError as exc:
            _discard(found, current)
            body.drain()
            raise ApiError(ErrorKind.BAD_REQUEST, detail=str(exc)) from None
        except BaseException:
            _discard(found, current)
            raise
        finally:
            if out is not None:
                out.close()
        body.drain()  # the epilogue after the closing boundary
        _discard(current)
        if found is not None and (found.size == 0 or not found.filename):
            # Play 2.7 turns empty files and empty file names into BadParts → "File missing".
            _discard(found)
            return None
        if found is not None:
            os.chmod(found.tmp_path, 0o644)  # mkstemp's 0600 is not what JATOS stores
        return found

    # ------------------------------------------------------------------ JSON

    def _json(self, status: int, payload: dict[str, Any]) -> Response:
        if self._omit_nulls:
            payload = _drop_nulls(payload)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(status, [("Content-Type", "application/json")], body)

    def _json_data(self, data: Any) -> Response:
        return self._json(200, {"apiVersion": self.api_version, "data": data})

    def _json_message(self, status: int, message: str) -> Response:
        return self._json(status, {"apiVersion": self.api_version, "message": message})

    def _study_json(self, study: Study) -> dict[str, Any]:
        """The `JsonForApi` view of a study (§9.2), with no components."""
        classic = self.personality.json_model == "classic"
        data: dict[str, Any] = {"id": study.id, "uuid": study.uuid, "title": study.title}
        if not classic:
            data["description"] = None
        data.update(
            {
                "descriptionHash": None,
                "locked": study.locked,
                "active": True,
                "groupStudy": False,
                "linearStudy": False,
                "allowPreview": False,
                "dirName": study.dir_name,
                "comments": None,
                ("jsonData" if classic else "studyInput"): None,
                "endRedirectUrl": None,
                "studyEntryMsg": None,
                "components": [],
                "batches": [{"id": study.batch_id, "uuid": study.batch_uuid}],
            }
        )
        members = sorted(study.members)
        if classic:
            data["members"] = [{"username": m} for m in members]
        else:
            users = self.state.users
            data["members"] = [{"id": users[m].id, "username": m} for m in members if m in users]
        return data
