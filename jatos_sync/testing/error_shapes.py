"""Every error the stand-in can answer, and how each JATOS line renders it (docs/jatos-api.md §8).

Owns `ErrorKind`, `ApiError` (raised by the stand-in's actions), `ErrorShape` (status, 3.10
error code, message template) and the tables that map kinds to shapes: the text bodies of
3.8/3.9, their 3.8.x variants, and the JSON envelope of 3.10. Pure data: no I/O, and nothing
here decides *when* an error happens.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


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
    # Studies, components, batches, codes and results (docs/jatos-api.md §10-§14). Kinds
    # ending in a message take it from the action (`detail`); the others have fixed texts.
    IO = enum.auto()  # an IOException reaching Play's error handler
    NOT_FOUND = enum.auto()  # NotFoundException(detail)
    FORBIDDEN = enum.auto()  # ForbiddenException(detail)
    BAD_REQUEST_MESSAGE = enum.auto()  # BadRequestException(detail) without an error code
    VALIDATION = enum.auto()  # first validation error of a properties object
    INVALID_JSON = enum.auto()  # a body that is not the JSON the action expects
    INVALID_REQUEST = enum.auto()  # 3.10: a missing or mistyped field
    WRONG_CONTENT_TYPE = enum.auto()  # 3.10 POST /studies with another Content-Type
    IMPORT_UNZIP = enum.auto()
    IMPORT_INVALID = enum.auto()  # not one .jas, or the study is invalid
    IMPORT_BAD_JAS = enum.auto()  # .jas is not JSON / cannot be bound
    IMPORT_VERSION = enum.auto()  # .jas version newer or unsupported
    IMPORT_BROKEN = enum.auto()  # e.g. no "version": a NullPointerException
    IMPORT_PART_INVALID = enum.auto()  # a component or batch is invalid
    IMPORT_NOT_MEMBER = enum.auto()
    IMPORT_FOREIGN_COMPONENT = enum.auto()
    IMPORT_DIR_EXISTS = enum.auto()  # new study, dirName taken, renameAssets=false
    CREATE_DIR_EXISTS = enum.auto()  # 3.10 create from JSON, dirName taken, no rename
    EXPORT_FAILED = enum.auto()
    RESULT_FILE_MISSING = enum.auto()


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
    `{id}`, `{study_id}`, `{path}`, `{detail}`. An empty message means an empty body
    (docs/jatos-api.md §8.1). `html_when_accept` names a substring of `Accept` that makes
    the generic 500 an HTML page.
    """

    status: int
    code: str
    message: str
    html_when_accept: str | None = None


_GENERIC_500 = "Internal JATOS error during {uri}. Check logs to get more information."
_IMPORT_FAILED = "Import of study failed: {detail}"

CLASSIC_ERRORS: Mapping[ErrorKind, ErrorShape] = {
    # docs/jatos-api.md §2.5
    ErrorKind.API_DISABLED: ErrorShape(403, "", "JATOS' current settings do not allow API usage"),
    ErrorKind.INVALID_TOKEN: ErrorShape(401, "", "Invalid api token"),
    ErrorKind.AUTH_FAILED: ErrorShape(403, "", "Failed authentication"),
    # the token edge case and the generic branch (docs/jatos-api.md §2.2, §8.1)
    ErrorKind.INTERNAL: ErrorShape(500, "", _GENERIC_500, html_when_accept="html"),
    ErrorKind.ROUTE_NOT_FOUND: ErrorShape(404, "", "Requested page {uri} couldn't be found."),
    ErrorKind.STUDY_NOT_FOUND_ID: ErrorShape(404, "", "Couldn't find study with ID {id}"),
    ErrorKind.STUDY_NOT_FOUND_UUID: ErrorShape(404, "", "Couldn't find study with UUID {id}"),
    ErrorKind.NO_ACCESS: ErrorShape(403, "", "No access to study with ID {study_id}"),
    # docs/jatos-api.md §7.1
    ErrorKind.STUDY_LOCKED: ErrorShape(
        403, "", "Study with ID {study_id} is locked. Unlock it if you want to make changes."
    ),
    # docs/jatos-api.md §3, §4
    ErrorKind.ASSETS_DIR_MISSING: ErrorShape(404, "", "Study assets directory couldn't be found"),
    ErrorKind.FILE_NOT_FOUND: ErrorShape(404, "", "File '{path}' couldn't be found."),
    ErrorKind.DOWNLOAD_BAD_PATH: ErrorShape(404, "", "File '{path}' couldn't be found."),
    # docs/jatos-api.md §5.1, §5.3
    ErrorKind.MISSING_FILE: ErrorShape(400, "", "File missing"),
    ErrorKind.UPLOAD_BAD_PATH: ErrorShape(400, "", "Error writing file"),
    ErrorKind.UPLOAD_WRONG_TYPE: ErrorShape(400, "", "Error writing file"),
    ErrorKind.UPLOAD_IO: ErrorShape(400, "", "Error writing file"),
    # docs/jatos-api.md §6: these 400s have an empty body
    ErrorKind.DELETE_IS_DIR: ErrorShape(400, "", ""),
    ErrorKind.DELETE_BAD_PATH: ErrorShape(400, "", ""),
    ErrorKind.DELETE_IO: ErrorShape(400, "", ""),
    # docs/jatos-api.md §3.6: 3.9.7+ answers an IOException with its message
    ErrorKind.LISTING_IO: ErrorShape(500, "", "{detail}"),
    # ≤3.10.1: `File.listFiles()` returns null → NullPointerException → generic 500
    # (docs/jatos-api.md §3.6)
    ErrorKind.LISTING_DIR_UNREADABLE: ErrorShape(500, "", _GENERIC_500, html_when_accept="html"),
    # Play client errors (docs/jatos-api.md §5.1, §8.1)
    ErrorKind.TOO_LARGE: ErrorShape(
        413, "", "Request entity too large: You probably tried to upload a file that is too large"
    ),
    ErrorKind.BAD_REQUEST: ErrorShape(400, "", "bad request"),
    ErrorKind.CLIENT_FORBIDDEN: ErrorShape(403, "", "You're not allowed to access this resource."),
    # docs/jatos-api.md §10-§14
    ErrorKind.IO: ErrorShape(500, "", "{detail}"),
    ErrorKind.NOT_FOUND: ErrorShape(404, "", "{detail}"),
    ErrorKind.FORBIDDEN: ErrorShape(403, "", "{detail}"),
    ErrorKind.BAD_REQUEST_MESSAGE: ErrorShape(400, "", "{detail}"),
    ErrorKind.VALIDATION: ErrorShape(400, "", "{detail}"),
    ErrorKind.INVALID_JSON: ErrorShape(400, "", "bad request"),
    ErrorKind.INVALID_REQUEST: ErrorShape(400, "", "{detail}"),
    ErrorKind.WRONG_CONTENT_TYPE: ErrorShape(415, "", "Wrong 'Content-Type' {detail}"),
    # docs/jatos-api.md §11.5: every failure of the first import phase is "Import of study
    # failed: <cause>"
    ErrorKind.IMPORT_UNZIP: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_INVALID: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_BAD_JAS: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_VERSION: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_BROKEN: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_PART_INVALID: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_NOT_MEMBER: ErrorShape(
        400,
        "",
        "Import of study failed: The study you're trying to upload already exists but you "
        "aren't a user of it. You can always import this study in another JATOS instance "
        '(e.g. <a href="http://www.jatos.org/Installation.html">in your local instance</a>), '
        "clone it there, export it, and import it here again.",
    ),
    ErrorKind.IMPORT_FOREIGN_COMPONENT: ErrorShape(400, "", _IMPORT_FAILED),
    ErrorKind.IMPORT_DIR_EXISTS: ErrorShape(
        403,
        "",
        "Study assets directory already exists but doesn't belong to the study and "
        "'renameAssets' is set to false.",
    ),
    ErrorKind.CREATE_DIR_EXISTS: ErrorShape(403, "", "{detail}"),
    ErrorKind.EXPORT_FAILED: ErrorShape(
        500, "", 'Export of study "{title}" (ID {study_id}) failed.'
    ),
    ErrorKind.RESULT_FILE_MISSING: ErrorShape(404, "", "File does not exist"),
}

# 3.8.x-3.9.6 answer an IOException with the generic 500 (docs/jatos-api.md §3.6, §8.1);
# 3.8.2 names an unzip failure "Import of study failed" (docs/jatos-api.md §11.5).
CLASSIC_ERRORS_38: Mapping[ErrorKind, ErrorShape] = {
    **CLASSIC_ERRORS,
    ErrorKind.LISTING_IO: CLASSIC_ERRORS[ErrorKind.INTERNAL],
    ErrorKind.IO: CLASSIC_ERRORS[ErrorKind.INTERNAL],
}

ENVELOPE_ERRORS: Mapping[ErrorKind, ErrorShape] = {
    # docs/jatos-api.md §2.5, §8.2
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
    # docs/jatos-api.md §4: the IOException escapes the controller
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
    # docs/jatos-api.md §10-§14
    ErrorKind.IO: ErrorShape(500, "IO_ERROR", "IO error: {detail}"),
    ErrorKind.NOT_FOUND: ErrorShape(404, "NOT_FOUND", "{detail}"),
    ErrorKind.FORBIDDEN: ErrorShape(403, "FORBIDDEN", "{detail}"),
    ErrorKind.BAD_REQUEST_MESSAGE: ErrorShape(400, "UNSPECIFIED", "{detail}"),
    ErrorKind.VALIDATION: ErrorShape(400, "VALIDATION_ERROR", "{detail}"),
    ErrorKind.INVALID_JSON: ErrorShape(400, "INVALID_JSON", "{detail}"),
    ErrorKind.INVALID_REQUEST: ErrorShape(400, "INVALID_REQUEST", "{detail}"),
    ErrorKind.WRONG_CONTENT_TYPE: ErrorShape(
        415, "WRONG_CONTENT_TYPE", "Wrong 'Content-Type' {detail}"
    ),
    # docs/jatos-api.md §11.5: the 3.10 import maps each cause to its own code
    ErrorKind.IMPORT_UNZIP: ErrorShape(400, "IMPORT_EXPORT_ERROR", "{detail}"),
    ErrorKind.IMPORT_INVALID: ErrorShape(400, "VALIDATION_ERROR", "{detail}"),
    ErrorKind.IMPORT_BAD_JAS: ErrorShape(400, "INVALID_JSON", "{detail}"),
    ErrorKind.IMPORT_VERSION: ErrorShape(500, "IO_ERROR", "IO error: {detail}"),
    ErrorKind.IMPORT_BROKEN: ErrorShape(500, "UNEXPECTED_ERROR", "Unexpected error"),
    ErrorKind.IMPORT_PART_INVALID: ErrorShape(500, "UNEXPECTED_ERROR", "Unexpected error"),
    ErrorKind.IMPORT_NOT_MEMBER: ErrorShape(
        403,
        "FORBIDDEN",
        "Import failed: the study already exists, but you are not a member and therefore "
        "cannot overwrite it. You may import the study into another JATOS instance, clone it "
        "there, then export and re-import it here.",
    ),
    ErrorKind.IMPORT_FOREIGN_COMPONENT: ErrorShape(403, "FORBIDDEN", "{detail}"),
    ErrorKind.IMPORT_DIR_EXISTS: ErrorShape(
        403,
        "FORBIDDEN",
        "Cannot import study: a study assets directory with the same name exists already, "
        "but 'renameAssets' is set to false.",
    ),
    ErrorKind.CREATE_DIR_EXISTS: ErrorShape(403, "FORBIDDEN", "{detail}"),
    ErrorKind.EXPORT_FAILED: ErrorShape(
        500, "UNSPECIFIED", 'Export of study "{title}" (ID {study_id}) failed.'
    ),
    ErrorKind.RESULT_FILE_MISSING: ErrorShape(404, "NOT_FOUND", "File doesn't exist"),
}
