"""Per-version behaviour of the stand-in server, as data (JATOS_ASSETS_API.md §11).

Owns the differences between JATOS 3.8.1, 3.9.8 and 3.10.5: routes, error bodies and
status codes, path rules, auth quirks, JSON shapes. The server code asks a `Personality`
instead of branching on version strings. No I/O here.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal


class ErrorKind(enum.Enum):
    """Every error situation the stand-in can answer; rendered per personality."""

    API_DISABLED = enum.auto()
    INVALID_TOKEN = enum.auto()
    AUTH_FAILED = enum.auto()
    INTERNAL = enum.auto()
    ROUTE_NOT_FOUND = enum.auto()
    STUDY_NOT_FOUND_ID = enum.auto()
    STUDY_NOT_FOUND_UUID = enum.auto()
    NO_ACCESS = enum.auto()
    STUDY_LOCKED = enum.auto()
    ASSETS_DIR_MISSING = enum.auto()
    FILE_NOT_FOUND = enum.auto()
    DOWNLOAD_BAD_PATH = enum.auto()
    MISSING_FILE = enum.auto()
    UPLOAD_BAD_PATH = enum.auto()
    UPLOAD_WRONG_TYPE = enum.auto()
    UPLOAD_IO = enum.auto()
    DELETE_IS_DIR = enum.auto()
    DELETE_BAD_PATH = enum.auto()
    DELETE_IO = enum.auto()
    LISTING_IO = enum.auto()
    LISTING_DIR_UNREADABLE = enum.auto()
    TOO_LARGE = enum.auto()
    BAD_REQUEST = enum.auto()
    CLIENT_FORBIDDEN = enum.auto()


class ApiError(Exception):
    """Answer the request with the error `kind`; `fields` fill the message template."""

    def __init__(self, kind: ErrorKind, **fields: str) -> None:
        super().__init__(kind.name)
        self.kind = kind
        self.fields = fields


@dataclass(frozen=True)
class ErrorShape:
    """Status, error code (JSON personalities only) and message template.

    The template is filled with `str.format_map` from fields such as `{uri}`, `{method}`,
    `{id}`, `{study_id}`, `{path}`, `{detail}`. An empty message means an empty body (§7.1).
    `html_when_accept` names a substring of `Accept` that makes the generic 500 an HTML page.
    """

    status: int
    code: str
    message: str
    html_when_accept: str | None = None


def _media_ranges(accept: str | None) -> list[str]:
    if accept is None:
        return []
    ranges = (part.split(";", 1)[0].strip().lower() for part in accept.split(","))
    return [r for r in ranges if r]


def play_accepts_html(accept: str | None, requested_with: str | None) -> bool:
    """Play's `request.accepts("text/html")`: true if `Accept` is absent, `*/*`, `text/*`
    or lists `text/html` (§1.2). 3.8.x ignores `X-Requested-With`."""
    ranges = _media_ranges(accept)
    return not ranges or any(r in {"*/*", "*", "text/*", "text/html"} for r in ranges)


def play_accepts_html_not_ajax(accept: str | None, requested_with: str | None) -> bool:
    """3.9.x `denied`: HTML request and not `X-Requested-With: XMLHttpRequest` (§1.2)."""
    return play_accepts_html(accept, requested_with) and requested_with != "XMLHttpRequest"


def lists_text_html(accept: str | None, requested_with: str | None) -> bool:
    """3.10 `isHtmlRequest`: only an `Accept` header that literally lists `text/html` (§1.2)."""
    return "text/html" in _media_ranges(accept)


RedirectRule = Callable[[str | None, str | None], bool]

_CLASSIC_ERRORS: Mapping[ErrorKind, ErrorShape] = {
    # §1.3
    ErrorKind.API_DISABLED: ErrorShape(403, "", "JATOS' current settings do not allow API usage"),
    ErrorKind.INVALID_TOKEN: ErrorShape(401, "", "Invalid api token"),
    ErrorKind.AUTH_FAILED: ErrorShape(403, "", "Failed authentication"),
    # §1.1 edge case, §7.1 generic branch
    ErrorKind.INTERNAL: ErrorShape(
        500,
        "",
        "Internal JATOS error during {uri}. Check logs to get more information.",
        html_when_accept="html",
    ),
    ErrorKind.ROUTE_NOT_FOUND: ErrorShape(404, "", "Requested page {uri} couldn't be found."),
    # §1.4
    ErrorKind.STUDY_NOT_FOUND_ID: ErrorShape(404, "", "Couldn't find study with ID {id}"),
    ErrorKind.STUDY_NOT_FOUND_UUID: ErrorShape(404, "", "Couldn't find study with UUID {id}"),
    ErrorKind.NO_ACCESS: ErrorShape(403, "", "No access to study with ID {study_id}"),
    # §6
    ErrorKind.STUDY_LOCKED: ErrorShape(
        403, "", "Study with ID {study_id} is locked. Unlock it if you want to make changes."
    ),
    # §2, §3
    ErrorKind.ASSETS_DIR_MISSING: ErrorShape(404, "", "Study assets directory couldn't be found"),
    ErrorKind.FILE_NOT_FOUND: ErrorShape(404, "", "File '{path}' couldn't be found."),
    ErrorKind.DOWNLOAD_BAD_PATH: ErrorShape(404, "", "File '{path}' couldn't be found."),
    # §4.1, §4.3
    ErrorKind.MISSING_FILE: ErrorShape(400, "", "File missing"),
    ErrorKind.UPLOAD_BAD_PATH: ErrorShape(400, "", "Error writing file"),
    ErrorKind.UPLOAD_WRONG_TYPE: ErrorShape(400, "", "Error writing file"),
    ErrorKind.UPLOAD_IO: ErrorShape(400, "", "Error writing file"),
    # §5: these 400s have an empty body
    ErrorKind.DELETE_IS_DIR: ErrorShape(400, "", ""),
    ErrorKind.DELETE_BAD_PATH: ErrorShape(400, "", ""),
    ErrorKind.DELETE_IO: ErrorShape(400, "", ""),
    # §2.4: 3.9.7+ answers an IOException with its message
    ErrorKind.LISTING_IO: ErrorShape(500, "", "{detail}"),
    # ≤3.10.1: `File.listFiles()` returns null → NullPointerException → generic 500 (§2.4)
    ErrorKind.LISTING_DIR_UNREADABLE: ErrorShape(
        500,
        "",
        "Internal JATOS error during {uri}. Check logs to get more information.",
        html_when_accept="html",
    ),
    # §4.1, §7.1 Play client errors
    ErrorKind.TOO_LARGE: ErrorShape(
        413, "", "Request entity too large: You probably tried to upload a file that is too large"
    ),
    ErrorKind.BAD_REQUEST: ErrorShape(400, "", "bad request"),
    ErrorKind.CLIENT_FORBIDDEN: ErrorShape(403, "", "You're not allowed to access this resource."),
}

_ENVELOPE_ERRORS: Mapping[ErrorKind, ErrorShape] = {
    # §1.3, §7.2, §7.3
    ErrorKind.API_DISABLED: ErrorShape(
        403, "AUTH_ERROR", "JATOS' current settings do not allow API usage"
    ),
    ErrorKind.INVALID_TOKEN: ErrorShape(401, "INVALID_API_TOKEN", "Invalid api token"),
    ErrorKind.AUTH_FAILED: ErrorShape(401, "AUTH_ERROR", "Failed authentication"),
    ErrorKind.INTERNAL: ErrorShape(
        500, "UNEXPECTED_ERROR", "Unexpected error", html_when_accept="text/html"
    ),
    ErrorKind.ROUTE_NOT_FOUND: ErrorShape(
        404, "NOT_FOUND", "Requested page {method} {uri} couldn't be found."
    ),
    ErrorKind.STUDY_NOT_FOUND_ID: ErrorShape(404, "NOT_FOUND", "Study doesn't exist."),
    ErrorKind.STUDY_NOT_FOUND_UUID: ErrorShape(404, "NOT_FOUND", "Study doesn't exist."),
    ErrorKind.NO_ACCESS: ErrorShape(403, "NO_ACCESS", "No access to study."),
    ErrorKind.STUDY_LOCKED: ErrorShape(403, "STUDY_LOCKED", "Study locked"),
    ErrorKind.ASSETS_DIR_MISSING: ErrorShape(
        404, "NOT_FOUND", "Study assets directory couldn't be found"
    ),
    ErrorKind.FILE_NOT_FOUND: ErrorShape(404, "NOT_FOUND", "File '{path}' couldn't be found."),
    # §3: the IOException escapes the controller
    ErrorKind.DOWNLOAD_BAD_PATH: ErrorShape(500, "IO_ERROR", "IO error: {detail}"),
    ErrorKind.MISSING_FILE: ErrorShape(400, "MISSING_FILE", "File missing"),
    ErrorKind.UPLOAD_BAD_PATH: ErrorShape(400, "VALIDATION_ERROR", "Invalid path: {path}"),
    ErrorKind.UPLOAD_WRONG_TYPE: ErrorShape(
        400, "FILE_ALREADY_EXISTS", "File already exists but is of a different type"
    ),
    ErrorKind.UPLOAD_IO: ErrorShape(500, "UNSPECIFIED", "Error writing file"),
    ErrorKind.DELETE_IS_DIR: ErrorShape(500, "UNSPECIFIED", "Error writing file"),
    ErrorKind.DELETE_BAD_PATH: ErrorShape(500, "UNSPECIFIED", "Error writing file"),
    ErrorKind.DELETE_IO: ErrorShape(500, "UNSPECIFIED", "Error writing file"),
    ErrorKind.LISTING_IO: ErrorShape(500, "IO_ERROR", "IO error: {detail}"),
    ErrorKind.LISTING_DIR_UNREADABLE: ErrorShape(500, "IO_ERROR", "IO error: {detail}"),
    ErrorKind.TOO_LARGE: ErrorShape(413, "TOO_LARGE", "Request entity too large"),
    ErrorKind.BAD_REQUEST: ErrorShape(400, "CLIENT_ERROR", "{detail}"),
    ErrorKind.CLIENT_FORBIDDEN: ErrorShape(
        403, "NO_ACCESS", "You're not allowed to access this resource."
    ),
}

# 3.8.x-3.9.6 answer an IOException in the listing with the generic 500 (§2.4).
_ERRORS_381: Mapping[ErrorKind, ErrorShape] = {
    **_CLASSIC_ERRORS,
    ErrorKind.LISTING_IO: _CLASSIC_ERRORS[ErrorKind.INTERNAL],
}

# REGEX_LEGAL_IN_PATH of 3.10.5, applied to the relative path (§4.4, §11.2).
LEGAL_IN_PATH_310 = re.compile(r'[^\x00-\x1F\x7F\\<>:"|?*]+')

_ALL_ROLES = frozenset({"USER"})


@dataclass(frozen=True)
class Personality:
    """What distinguishes one JATOS release from another for the asset API (§11.1)."""

    name: str
    api_version: str  # §0
    json_errors: bool  # §7
    errors: Mapping[ErrorKind, ErrorShape]
    has_structure_route: bool  # §0: absent in 3.8.1
    upload_root_route: Literal["assets/", "assets"]  # §4.2 "Routes for no filepath"
    dir_path_suffix: str  # §2.3
    checks_lock: bool  # §6
    csrf_filter: bool  # §1.6
    signin_path: str  # §1.2
    missing_token_redirects: RedirectRule  # §1.2
    session_deny_status: int  # AJAX answer of the session-cookie method (§1.2)
    session_deny_message: str
    upload_mode: Literal["create_target_dirs", "parents_only"]  # §4.3
    legal_path: re.Pattern[str] | None  # §4.4
    trims_upload_path: bool  # §4.2
    content_disposition: Literal["inline", "attachment"]  # §3
    json_model: Literal["classic", "3.10"]  # token info §9.4, study JSON §9.2
    success_messages: bool  # upload/delete: 201/200 JSON message vs 200 empty body (§4.3, §5)
    roles: Mapping[str, frozenset[str]]  # endpoint group -> any-of roles (§1.4)
    token_only: frozenset[str]  # endpoint groups that skip session-cookie auth (§1.4)

    def error_shape(self, kind: ErrorKind) -> ErrorShape:
        return self.errors[kind]


_CLASSIC_ROLES: Mapping[str, frozenset[str]] = {
    "token": _ALL_ROLES,
    "properties": _ALL_ROLES,
    "assets": _ALL_ROLES,
}

_SESSION_MSG_SIGN_IN = "You are not allowed to access this page. Please sign in."

PERSONALITY_39 = Personality(
    name="3.9",
    api_version="1.0.1",
    json_errors=False,
    errors=_CLASSIC_ERRORS,
    has_structure_route=True,
    upload_root_route="assets/",
    dir_path_suffix="/",
    checks_lock=True,
    csrf_filter=True,
    signin_path="/jatos/signin",
    missing_token_redirects=play_accepts_html_not_ajax,
    session_deny_status=403,
    session_deny_message=_SESSION_MSG_SIGN_IN,
    upload_mode="create_target_dirs",
    legal_path=None,
    trims_upload_path=False,
    content_disposition="inline",
    json_model="classic",
    success_messages=False,
    roles=_CLASSIC_ROLES,
    token_only=frozenset(),
)

# 3.8.1 is 3.9 without the listing route, the lock check and the CSRF filter, with the
# older sign-in page and apiVersion (API reference §0, §1.2, §6, §1.6).
PERSONALITY_381 = dataclasses.replace(
    PERSONALITY_39,
    name="3.8.1",
    api_version="1.0.0",
    errors=_ERRORS_381,
    has_structure_route=False,
    checks_lock=False,
    csrf_filter=False,
    signin_path="/jatos/login",
    missing_token_redirects=play_accepts_html,
    session_deny_message="You are not allowed to access this page. Please log in.",
)

PERSONALITY_310 = Personality(
    name="3.10",
    api_version="1.1.0",
    json_errors=True,
    errors=_ENVELOPE_ERRORS,
    has_structure_route=True,
    upload_root_route="assets",
    dir_path_suffix="",
    checks_lock=True,
    csrf_filter=True,
    signin_path="/jatos/signin",
    missing_token_redirects=lists_text_html,
    session_deny_status=401,
    session_deny_message=_SESSION_MSG_SIGN_IN,
    upload_mode="parents_only",
    legal_path=LEGAL_IN_PATH_310,
    trims_upload_path=True,
    content_disposition="attachment",
    json_model="3.10",
    success_messages=True,
    roles={
        "token": frozenset({"VIEWER", "USER", "ADMIN"}),
        "properties": frozenset({"VIEWER", "USER"}),
        "assets": frozenset({"USER"}),
    },
    token_only=frozenset({"token"}),
)

PERSONALITIES: Mapping[str, Personality] = {
    "3.8.1": PERSONALITY_381,
    "3.9": PERSONALITY_39,
    "3.9.8": PERSONALITY_39,
    "3.10": PERSONALITY_310,
    "3.10.5": PERSONALITY_310,
}


def get_personality(name: str) -> Personality:
    """The personality for `name` ("3.8.1", "3.9", "3.10"); ValueError for anything else."""
    try:
        return PERSONALITIES[name]
    except KeyError:
        known = ", ".join(sorted(PERSONALITIES))
        raise ValueError(f"unknown JATOS personality {name!r} (known: {known})") from None
