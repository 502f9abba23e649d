"""The JATOS application of the stand-in: routing, request bodies, authentication, error
rendering, and the token and asset actions.

Owns what happens between "a request arrived" and "this is the answer": Play's route table
per version (`routes.py`), the auth order of docs/jatos-api.md §2, the study lookup and
membership/lock checks, reading bodies (uploads and archives streamed to temp files with the
`multipart` package, JSON bodies in memory), and rendering `ApiError`s per personality
(docs/jatos-api.md §8). The other areas' actions live in `studies.py`, `components.py`,
`codes.py`, `results.py` and `control.py`; they use the helpers here. No socket I/O
(`transport.py`) and no injected faults beyond what `results.py` asks of `faults.py`.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qsl

from jatos_sync.testing import assets, wire
from jatos_sync.testing.faults import Faults
from jatos_sync.testing.personality import ApiError, ErrorKind, Personality
from jatos_sync.testing.props import input_from_body
from jatos_sync.testing.routes import API_PREFIX, Route, classify, routes_for
from jatos_sync.testing.runs import Runs
from jatos_sync.testing.state import JatosState, Study, Token, User, now_ms
from jatos_sync.testing.tokens import token_checksum, token_hash
from jatos_sync.testing.wire import Request, Response, html_response

__all__ = [
    "API_PREFIX",
    "Area",
    "Call",
    "JatosApp",
    "Site",
    "classify",
    "raise_first_error",
    "upload_target",
]

_STREAM_CHUNK = 64 * 1024
_MAX_JSON_BODY = 64 * 1024 * 1024

ROOT_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>JATOS</title></head>"
    b"<body><h1>JATOS</h1><p>Local stand-in server for tests.</p></body></html>\n"
)
_CLEAR_SESSION = "PLAY_SESSION=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"
_PLAY_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class _EarlyResponseError(Exception):
    """Answer with this response now (redirects and session-cookie denials,
    docs/jatos-api.md §2.3, §2.4)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class UploadPart:
    """A file part of a multipart body (or a raw body), already on disk."""

    filename: str
    tmp_path: Path
    size: int


@dataclass
class Body:
    """A request body as the action sees it: a file part, a raw file, or small bytes."""

    content_type: str = ""
    part: UploadPart | None = None  # multipart file part, or the whole raw body
    data: bytes = b""  # JSON bodies and anything else that is read into memory
    multipart: bool = False

    def discard(self) -> None:
        if self.part is not None:
            self.part.tmp_path.unlink(missing_ok=True)


@dataclass
class Call:
    """Everything an action needs once routing, body parsing and auth are done."""

    req: Request
    params: Mapping[str, str | None]
    user: User | None
    token: Token | None
    body: Body = field(default_factory=Body)

    @property
    def part(self) -> UploadPart | None:
        return self.body.part

    @property
    def study_ref(self) -> str:
        # Play decodes single-segment parts such as `:id` (docs/jatos-api.md §9.1).
        return wire.decode_path_segment(self.params.get("id") or "")

    def segment(self, name: str) -> str:
        return wire.decode_path_segment(self.params.get(name) or "")

    @property
    def filepath(self) -> str | None:
        return self.params.get("fp")

    @property
    def username(self) -> str:
        return self.user.username if self.user is not None else ""

    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.req.query, keep_blank_values=True)

    def query_value(self, name: str) -> str | None:
        """The first value of `name` in the query string (Play's single-value binding)."""
        return next((v for k, v in self.query() if k == name), None)

    def query_bool(self, name: str, default: bool) -> bool:
        """Play's Boolean binder: true/false/1/0, anything else a client error."""
        value = self.query_value(name)
        if value is None:
            return default
        parsed = _PLAY_BOOLEANS.get(value.strip())
        if parsed is None:
            raise ApiError(
                ErrorKind.BAD_REQUEST,
                detail=f"Cannot parse parameter {name} as Boolean: should be true, false, 0 "
                f"or 1 (got {value!r})",
            )
        return parsed

    def raw_json(self) -> Any:
        """3.10's `getJsonFromBody`: the body as JSON whatever its Content-Type; an empty
        body is INVALID_REQUEST, malformed JSON INVALID_JSON (docs/jatos-api.md §8.2)."""
        if not self.body.data:
            raise ApiError(ErrorKind.INVALID_REQUEST, detail="Request body is empty")
        try:
            return json.loads(self.body.data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(ErrorKind.INVALID_JSON, detail=str(exc)) from None

    def json_object(self, input_name: str) -> dict[str, Any]:
        """`raw_json` + 3.10's `normalizeJsonInputField` for the input field `input_name`."""
        body = self.raw_json()
        if not isinstance(body, dict):
            raise ApiError(ErrorKind.INVALID_JSON, detail="Request body is not a JSON object")
        return input_from_body(body, input_name)

    def json_body(self) -> Any:
        """The body as JSON if it was sent as `application/json`, else None (Play's
        `asJson()`); malformed JSON is Play's 400."""
        if not self.body.content_type.startswith("application/json") or not self.body.data:
            return None
        try:
            return json.loads(self.body.data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(ErrorKind.INVALID_JSON, detail=f"Invalid Json: {exc}") from None


class Site(Protocol):
    """What the application needs from the server around it."""

    @property
    def assets_root(self) -> Path: ...

    @property
    def uploads_root(self) -> Path: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def database(self) -> str: ...

    @property
    def path_separator(self) -> str: ...

    @property
    def keepalive_s(self) -> float: ...

    def tmp_dir(self) -> Path: ...

    def wait(self, seconds: float) -> bool: ...


Action = Callable[[Call], Response]


class Area:
    """One area of the API (studies, components, codes, results, control): its actions,
    over the application's helpers."""

    def __init__(self, app: JatosApp) -> None:
        self.app = app
        self.p = app.personality
        self.state = app.state

    def actions(self) -> dict[str, Action]:
        raise NotImplementedError


def raise_first_error(errors: list[tuple[str, str]], *, with_field: bool = True) -> None:
    """The first validation error as JATOS reports it: 3.10's `validateProps` ("Error in
    field 'title' - Missing title"), or 3.8/3.9's bare message (docs/jatos-api.md §10.3)."""
    if errors:
        key, message = errors[0]
        detail = f"Error in field '{key}' - {message}" if with_field else message
        raise ApiError(ErrorKind.VALIDATION, detail=detail)


def upload_target(filepath: str | None, filename: str, *, trim: bool) -> str:
    """The asset path an upload is stored at (docs/jatos-api.md §5.2, identical in all
    versions + HEAD trim)."""
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


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    mtype, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, sep, val = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return mtype.strip().lower(), params


class JatosApp:
    """Answers requests like one JATOS release (`personality`) would."""

    def __init__(
        self,
        state: JatosState,
        personality: Personality,
        *,
        prefix: str,
        api_allowed: bool,
        site: Site,
    ) -> None:
        from jatos_sync.testing import codes, components, control, results, studies

        self.state = state
        self.personality = personality
        self.prefix = prefix
        self.api_allowed = api_allowed  # jatos.api.allowed (docs/jatos-api.md §2.2)
        # A JATOS on macOS or Windows: its disk ignores letter case (docs/jatos-api.md §9.4).
        self.case_insensitive = False
        self.site = site
        self.runs = Runs(state, lambda: site.uploads_root)
        self._routes = routes_for(personality)
        # Play's global Jackson mapper switches to NON_NULL after the first structure call
        # (docs/jatos-api.md §3.2): later JSON responses (and exported .jas files) omit null
        # fields.
        self.omit_nulls = False
        self._actions: dict[str, Action] = {
            "token_info": self._token_info,
            "structure": self._structure,
            "download": self._download,
            "upload": self._upload,
            "delete": self._delete,
        }
        for area in (
            studies.StudyActions(self),
            components.ComponentActions(self),
            codes.CodeActions(self),
            results.ResultActions(self),
            control.ControlActions(self),
        ):
            self._actions.update(area.actions())

    # ------------------------------------------------------------------ entry points

    def handle(self, req: Request) -> Response:
        """Answer `req`. Raises `wire.BodyTooLargeError(by_proxy=True)` for the transport;
        JATOS's own body limit becomes the version's 413."""
        body = Body()
        try:
            self._csrf_check(req)
            route, params = self._route(req)
            if route is None:
                req.body.drain()
                if "/jatos/api/" in req.path:
                    raise ApiError(ErrorKind.ROUTE_NOT_FOUND)
                return html_response(200, ROOT_PAGE)
            # Play parses the body before any action code runs, auth included
            # (docs/jatos-api.md §5.1).
            body = self._read_body(req, route)
            user: User | None = None
            token: Token | None = None
            if route.group not in {"publix", "control"}:
                user, token = self._authenticate(req, route.group)
            return self._actions[route.action](Call(req, params, user, token, body))
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
            body.discard()

    def render_error(self, req: Request, exc: ApiError) -> Response:
        """The error as this version sends it: text, empty, JSON envelope or HTML
        (docs/jatos-api.md §8)."""
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
            return self.json(shape.status, {"apiVersion": self.api_version, "error": error})
        if not message:
            return Response(shape.status)  # e.g. 3.9 delete of a directory (docs/jatos-api.md §6)
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
        # Play serves HEAD from a HEAD route, or else from the GET route.
        methods = ["HEAD", "GET"] if req.method == "HEAD" else [req.method]
        for method in methods:
            for route in self._routes:
                if route.method == method:
                    match = route.pattern.fullmatch(path)
                    if match:
                        return route, match.groupdict()
        return None, {}

    def _csrf_check(self, req: Request) -> None:
        # Play's CSRF filter protects requests that carry cookies; any Authorization header
        # bypasses it since 3.9.5; it is disabled in 3.8 (docs/jatos-api.md §2.6).
        if not self.personality.csrf_filter or req.method in {"GET", "HEAD", "OPTIONS"}:
            return
        if req.header("Cookie") and req.header("Authorization") is None:
            raise ApiError(ErrorKind.CLIENT_FORBIDDEN)

    def token_user(self, req: Request, roles: Iterable[str] | None) -> tuple[User, Token] | None:
        """The user of a valid Bearer token (steps 2-7 of docs/jatos-api.md §2.2), None for
        no Bearer header; `roles` None accepts any role."""
        auth = req.header("Authorization")
        if auth is None or "Bearer" not in auth:
            return None
        if not self.api_allowed:
            raise ApiError(ErrorKind.API_DISABLED)
        full = wire.java_trim(auth.replace("Bearer", ""))
        cleaned = full.replace("jap_", "")
        if len(cleaned) < 31:
            raise ApiError(ErrorKind.INTERNAL)  # substring(0, 31) throws (docs/jatos-api.md §2.2)
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
                or (roles is not None and not set(roles).intersection(user.roles))
                or token.is_expired(now_ms())
            ):
                raise ApiError(ErrorKind.INVALID_TOKEN)  # one answer for steps 3-7
            return user, token

    def _authenticate(self, req: Request, group: str) -> tuple[User, Token]:
        """Session cookie first, then the Bearer token, in JATOS's order
        (docs/jatos-api.md §2.3)."""
        p = self.personality
        session = wire.cookie_value(req.header("Cookie"), "PLAY_SESSION")
        if session and group not in p.token_only:
            # A stand-in has no valid sessions: the session method denies (docs/jatos-api.md §2.3).
            raise _EarlyResponseError(self._session_denied(req))
        found = self.token_user(req, p.roles[group])
        if found is not None:
            return found
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

    def find_study(self, ref: str) -> Study:
        """`getStudyFromIdOrUuid`: a Java long is an ID, anything else a UUID
        (docs/jatos-api.md §9.1)."""
        study_id = wire.parse_java_long(wire.java_trim(ref))
        with self.state.lock:
            if study_id is not None:
                study = self.state.studies.get(study_id)
                if study is None:
                    raise ApiError(ErrorKind.STUDY_NOT_FOUND_ID, id=ref)
                return study
            found = self.state.study_by_uuid(ref)
            if found is None:
                raise ApiError(ErrorKind.STUDY_NOT_FOUND_UUID, id=ref)
            return found

    def check_access(self, study: Study, call: Call, *, unlocked: bool = False) -> Study:
        """Membership (403 NO_ACCESS) and, for writes, the lock (403 STUDY_LOCKED)
        (docs/jatos-api.md §7.1, §7.3)."""
        if call.username not in study.members:
            raise ApiError(ErrorKind.NO_ACCESS, study_id=str(study.id))
        if unlocked and study.locked:
            raise ApiError(ErrorKind.STUDY_LOCKED, study_id=str(study.id))
        return study

    def study_for(self, call: Call, *, unlocked: bool = False) -> Study:
        """The study of the `{id}` path part, accessible (and unlocked for writes)."""
        with self.state.lock:
            return self.check_access(self.find_study(call.study_ref), call, unlocked=unlocked)

    # ------------------------------------------------------------------ token and assets

    def _token_info(self, call: Call) -> Response:
        token, user = call.token, call.user
        assert token is not None and user is not None
        if self.personality.json_model == "classic":  # docs/jatos-api.md §2.7, 3.8/3.9
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
        else:  # docs/jatos-api.md §2.7, 3.10
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
        return self.json_data(data)

    def _structure(self, call: Call) -> Response:
        study = self.study_for(call)
        flatten = call.query_bool("flatten", False)
        data = assets.structure(
            study.assets_dir,
            study.dir_name,
            dir_suffix=self.personality.dir_path_suffix,
            flatten=flatten,
        )
        self.omit_nulls = True
        return self.json_data(data)

    def _download(self, call: Call) -> Response:
        study = self.study_for(call)
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

    def _upload(self, call: Call) -> Response:
        p = self.personality
        study = self.study_for(call, unlocked=p.checks_lock)
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
            return self.json_message(200, "File overwritten successfully")
        return self.json_message(201, "File uploaded successfully")

    def _delete(self, call: Call) -> Response:
        p = self.personality
        study = self.study_for(call, unlocked=p.checks_lock)
        rel = self._case(study, self._decoded_path(call.filepath or ""))
        assets.delete_file(study.assets_dir, rel, p.legal_path)
        if not p.success_messages:
            return Response(200)
        return self.json_message(200, "File deleted successfully")

    def _case(self, study: Study, rel: str) -> str:
        return assets.fold_case(study.assets_dir, rel) if self.case_insensitive else rel

    @staticmethod
    def _decoded_path(filepath: str) -> str:
        # Play does not decode wildcards; JATOS applies URLDecoder, then strips one "/"
        # (docs/jatos-api.md §9.2).
        try:
            return wire.java_url_decode(filepath).removeprefix("/")
        except wire.MalformedEscapeError:
            raise ApiError(ErrorKind.INTERNAL) from None

    # ------------------------------------------------------------------ request body

    def _read_body(self, req: Request, route: Route) -> Body:
        """Drain the body, stream a file part or a raw body to a temp file, or read a small
        body into memory, as the route needs."""
        ctype = req.header("Content-Type") or ""
        mtype, params = parse_content_type(ctype)
        body = Body(content_type=mtype)
        if route.body == "none":
            req.body.drain()
            return body
        if mtype == "multipart/form-data" and route.body in {"upload", "import"}:
            boundary = params.get("boundary")
            if not boundary:
                req.body.drain()
                raise ApiError(ErrorKind.BAD_REQUEST, detail="Missing boundary header")
            name = "studyAssetsFile" if route.body == "upload" else "study"
            body.multipart = True
            body.part = self._stream_multipart(req.body, boundary, name)
            return body
        if route.body == "raw" or (route.body == "import" and mtype != "application/json"):
            body.part = self._stream_raw(req.body)
            return body
        if route.body in {"json", "import"}:
            body.data = self._read_small(req.body)
            return body
        # An upload that is not multipart: "File missing" later (docs/jatos-api.md §5.1).
        req.body.drain()
        return body

    def _read_small(self, stream: wire.RequestBody) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while chunk := stream.read(_STREAM_CHUNK):
            size += len(chunk)
            if size > _MAX_JSON_BODY:
                raise wire.BodyTooLargeError(by_proxy=False)
            chunks.append(chunk)
        return b"".join(chunks)

    def _stream_raw(self, stream: wire.RequestBody) -> UploadPart | None:
        fd, name = tempfile.mkstemp(dir=self.site.tmp_dir(), prefix="raw-")
        part = UploadPart("", Path(name), 0)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_STREAM_CHUNK):
                    out.write(chunk)
                    part.size += len(chunk)
        except BaseException:
            part.tmp_path.unlink(missing_ok=True)
            raise
        if part.size == 0:
            part.tmp_path.unlink(missing_ok=True)
            return None
        return part

    def _stream_multipart(
        self, body: wire.RequestBody, boundary: str, part_name: str
    ) -> UploadPart | None:
        import multipart  # PyPI "multipart"; imported late to keep `import` of this package light

        found: UploadPart | None = None
        current: UploadPart | None = None
        out: BinaryIO | None = None
        try:
            parser = multipart.PushMultipartParser(boundary)
            for event in parser.parse_blocking(body.read, _STREAM_CHUNK):
                if isinstance(event, multipart.MultipartSegment):
                    # Only a *file* part (with a filename) of the wanted name counts
                    # (docs/jatos-api.md §5.1).
                    wanted = event.name == part_name and event.filename is not None
                    if found is None and wanted:
                        fd, name = tempfile.mkstemp(dir=self.site.tmp_dir(), prefix="upload-")
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

    def json(self, status: int, payload: Any) -> Response:
        if self.omit_nulls:
            payload = wire.drop_nulls(payload)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(status, [("Content-Type", "application/json")], body)

    def json_data(self, data: Any, status: int = 200) -> Response:
        return self.json(status, {"apiVersion": self.api_version, "data": data})

    def json_message(self, status: int, message: str) -> Response:
        return self.json(status, {"apiVersion": self.api_version, "message": message})


def _discard(*parts: UploadPart | None) -> None:
    for part in parts:
        if part is not None:
            part.tmp_path.unlink(missing_ok=True)
