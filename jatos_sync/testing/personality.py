"""Per-version behaviour of the stand-in server, as data (docs/jatos-api.md §1).

Owns the differences between JATOS 3.8.1, 3.8.2, 3.9.8 and 3.10.5: which endpoints exist,
error bodies and status codes, path rules, auth quirks, JSON shapes, import, study code and
result-export quirks. The server code asks a `Personality` instead of branching on version
strings. No I/O here. `ApiError`, `ErrorKind` and `ErrorShape` live in `error_shapes.py` and
are re-exported here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from jatos_sync.testing.error_shapes import (
    CLASSIC_ERRORS,
    CLASSIC_ERRORS_38,
    ENVELOPE_ERRORS,
    ApiError,
    ErrorKind,
    ErrorShape,
)

__all__ = [
    "PERSONALITIES",
    "ApiError",
    "ErrorKind",
    "ErrorShape",
    "Personality",
    "get_personality",
]


def _media_ranges(accept: str | None) -> list[str]:
    if accept is None:
        return []
    ranges = (part.split(";", 1)[0].strip().lower() for part in accept.split(","))
    return [r for r in ranges if r]


def play_accepts_html(accept: str | None, requested_with: str | None) -> bool:
    """Play's `request.accepts("text/html")`: true if `Accept` is absent, `*/*`, `text/*`
    or lists `text/html` (docs/jatos-api.md §2.4). 3.8.x ignores `X-Requested-With`."""
    ranges = _media_ranges(accept)
    return not ranges or any(r in {"*/*", "*", "text/*", "text/html"} for r in ranges)


def play_accepts_html_not_ajax(accept: str | None, requested_with: str | None) -> bool:
    """3.9.x `denied`: HTML request and not `X-Requested-With: XMLHttpRequest`
    (docs/jatos-api.md §2.4)."""
    return play_accepts_html(accept, requested_with) and requested_with != "XMLHttpRequest"


def lists_text_html(accept: str | None, requested_with: str | None) -> bool:
    """3.10 `isHtmlRequest`: only an `Accept` header that literally lists `text/html`
    (docs/jatos-api.md §2.4)."""
    return "text/html" in _media_ranges(accept)


RedirectRule = Callable[[str | None, str | None], bool]

# REGEX_LEGAL_IN_PATH of 3.10.5, applied to the relative path (docs/jatos-api.md §9.3).
LEGAL_IN_PATH_310 = re.compile(r'[^\x00-\x1F\x7F\\<>:"|?*]+')

# Worker types (docs/jatos-api.md §14.2).
WORKER_TYPES = frozenset(
    {
        "Jatos",
        "PersonalSingle",
        "PersonalMultiple",
        "GeneralSingle",
        "GeneralMultiple",
        "MT",
        "MTSandbox",
    }
)

# Optional endpoint families; a personality lists the ones its release has (docs/jatos-api.md §1.4).
Family = Literal[
    "delete_study",  # DELETE /studies/{id} (3.8.6+)
    "create_39",  # POST /studies/create (3.9.7+; deprecated in 3.10)
    "studies_post",  # POST /studies: import or create by Content-Type (3.10)
    "head_study",  # HEAD /studies/{id} (3.10, ADMIN)
    "patch_properties",  # PATCH /studies/{id}/properties (3.10)
    "components_39",  # POST …/components/create, DELETE …/components/{cid} (3.9.7+)
    "components_310",  # /studies/{id}/components, /components/{id} (3.10)
    "batches",  # /studies/{id}/batches, /batches/{id} (3.10)
    "study_codes_post",  # POST /studies/{id}/studyCodes, /studyCodes/{code} (3.10)
    "results_delete_post",  # POST /results/delete (3.10)
]


@dataclass(frozen=True)
class Personality:
    """What distinguishes one JATOS release from another (docs/jatos-api.md §1.4, §1.6)."""

    name: str
    api_version: str  # docs/jatos-api.md §1.1
    json_errors: bool  # docs/jatos-api.md §8
    errors: Mapping[ErrorKind, ErrorShape]
    has_structure_route: bool  # docs/jatos-api.md §1.3: absent in 3.8.1
    upload_root_route: Literal["assets/", "assets"]  # docs/jatos-api.md §5.2
    dir_path_suffix: str  # docs/jatos-api.md §3.4
    checks_lock: bool  # docs/jatos-api.md §7.1: assets upload/delete (3.8.6+)
    csrf_filter: bool  # docs/jatos-api.md §2.6
    signin_path: str  # docs/jatos-api.md §2.4
    missing_token_redirects: RedirectRule  # docs/jatos-api.md §2.4
    session_deny_status: int  # AJAX answer of the session-cookie method (docs/jatos-api.md §2.3)
    session_deny_message: str
    upload_mode: Literal["create_target_dirs", "parents_only"]  # docs/jatos-api.md §5.3
    legal_path: re.Pattern[str] | None  # docs/jatos-api.md §9.3
    trims_upload_path: bool  # docs/jatos-api.md §9.3
    content_disposition: Literal["inline", "attachment"]  # docs/jatos-api.md §4
    # Token info, study/component/batch JSON (docs/jatos-api.md §2.7, §10.2).
    json_model: Literal["classic", "3.10"]
    # Upload/delete: 201/200 JSON message vs 200 empty body (docs/jatos-api.md §5.3, §6).
    success_messages: bool
    roles: Mapping[str, frozenset[str]]  # endpoint group -> any-of roles (docs/jatos-api.md §7.2)
    # Endpoint groups that skip session-cookie auth (docs/jatos-api.md §2.3).
    token_only: frozenset[str]
    families: frozenset[Family]  # optional endpoints (docs/jatos-api.md §1.4)
    # --- studies, archives, components (docs/jatos-api.md §10-§12)
    import_answer: Literal["info", "envelope"]  # un-enveloped info JSON vs study envelope
    import_answer_has_id: bool  # `id` in the info JSON (3.9.7+)
    import_new_with_keep_flags: Literal["ignore", "fail", "import"]  # new UUID + keep flag
    import_raw_body: bool  # a raw zip body is accepted (3.10)
    import_validates_parts: bool  # components and batches validated on import (3.9+)
    root_files_count_as_dirs: bool  # `findDirectories` bug of 3.8/3.9
    jas_needs_ids: bool  # 3.8.2: no random uuid/dirName for a .jas without them
    jas_input_key: Literal["jsonData", "studyInput"]  # what an export writes
    jas_reads_input_aliases: bool  # studyInput/componentInput/batchInput read (3.10)
    unzip_failure: str  # the cause named when unpacking fails
    not_a_study: str  # the cause named without exactly one .jas
    entry_msg_max_bytes: int | None  # studyEntryMsg limit (3.9+)
    checks_worker_types: bool  # batch validation refuses unknown types (3.10)
    export_short_title_fails: bool  # File.createTempFile prefix rule (3.8/3.9)
    archive_suffix_configurable: bool  # jatos.studyArchive.suffix (3.9+)
    # A new batch's allowedWorkerTypes (docs/jatos-api.md §13.3).
    default_worker_types: frozenset[str]
    # Study code parameters and checks (docs/jatos-api.md §13).
    codes_api: Literal["classic", "3.10"]
    # --- results (docs/jatos-api.md §14)
    results_archive_suffix: str  # combined zip: jrzip (3.8.2) / zip
    metadata_group_id_text: bool  # groupId is a string (3.8.2)
    metadata_quota_and_comment: bool  # isQuotaReached, comment (3.9+)
    result_path_os_separator: bool  # metadata `path` uses the server's separator (≤3.9)
    plain_text_sorted: bool  # asPlainText in ascending CR ID order (3.9+)
    plain_text_inline: bool  # text/plain, attachment only with download=true (3.10)
    metadata_download_flag: bool  # ?download= on /results/metadata (3.10)
    selector_uuid_bug: bool  # componentUuids reads studyUuids (3.8/3.9)
    selector_drops_bad_numbers: bool  # non-numeric query values dropped (3.10) or 500
    results_delete_lists_ids: bool  # delete answers the deleted CR IDs (3.10)
    unknown_result_file_cr: ErrorKind  # single file with an unknown componentResultId

    def error_shape(self, kind: ErrorKind) -> ErrorShape:
        return self.errors[kind]

    def has(self, family: Family) -> bool:
        return family in self.families


_USER = frozenset({"USER"})

_CLASSIC_ROLES: Mapping[str, frozenset[str]] = {
    "token": _USER,
    "properties": _USER,
    "assets": _USER,
    "read": _USER,
    "write": _USER,
    "admin": frozenset({"ADMIN"}),
}

_SESSION_MSG_SIGN_IN = "You are not allowed to access this page. Please sign in."

PERSONALITY_39 = Personality(
    name="3.9",
    api_version="1.0.1",
    json_errors=False,
    errors=CLASSIC_ERRORS,
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
    families=frozenset({"delete_study", "create_39", "components_39"}),
    import_answer="info",
    import_answer_has_id=True,
    import_new_with_keep_flags="fail",
    import_raw_body=False,
    import_validates_parts=True,
    root_files_count_as_dirs=True,
    jas_needs_ids=False,
    jas_input_key="jsonData",
    jas_reads_input_aliases=False,
    unzip_failure="Unpacking ZIP archive failed",
    not_a_study="Study is invalid",
    entry_msg_max_bytes=1000,
    checks_worker_types=False,
    export_short_title_fails=True,
    archive_suffix_configurable=True,
    default_worker_types=frozenset({"Jatos", "PersonalMultiple", "PersonalSingle"}),
    codes_api="classic",
    results_archive_suffix="zip",
    metadata_group_id_text=False,
    metadata_quota_and_comment=True,
    result_path_os_separator=True,
    plain_text_sorted=True,
    plain_text_inline=False,
    metadata_download_flag=False,
    selector_uuid_bug=True,
    selector_drops_bad_numbers=False,
    results_delete_lists_ids=False,
    unknown_result_file_cr=ErrorKind.INTERNAL,
)

# 3.8.2 is 3.9 without the lock check on assets, the CSRF filter, DELETE study, create from
# JSON and the component endpoints, with the older sign-in page, apiVersion and import and
# results quirks (docs/jatos-api.md §1.6, §2.4, §7.1, §11, §14).
PERSONALITY_382 = dataclasses.replace(
    PERSONALITY_39,
    name="3.8.2",
    api_version="1.0.0",
    errors=CLASSIC_ERRORS_38,
    checks_lock=False,
    csrf_filter=False,
    signin_path="/jatos/login",
    missing_token_redirects=play_accepts_html,
    session_deny_message="You are not allowed to access this page. Please log in.",
    families=frozenset(),
    import_answer_has_id=False,
    import_new_with_keep_flags="ignore",
    import_validates_parts=False,
    jas_needs_ids=True,
    unzip_failure="Import of study failed",
    entry_msg_max_bytes=None,
    archive_suffix_configurable=False,
    results_archive_suffix="jrzip",
    metadata_group_id_text=True,
    metadata_quota_and_comment=False,
    plain_text_sorted=False,
)

# 3.8.1 is 3.8.2 without the listing route (`git diff v3.8.1 v3.8.2`, docs/jatos-api.md §1.3).
PERSONALITY_381 = dataclasses.replace(PERSONALITY_382, name="3.8.1", has_structure_route=False)

PERSONALITY_310 = Personality(
    name="3.10",
    api_version="1.1.0",
    json_errors=True,
    errors=ENVELOPE_ERRORS,
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
        "assets": _USER,
        "read": frozenset({"VIEWER", "USER"}),
        "write": _USER,
        "admin": frozenset({"ADMIN"}),
    },
    token_only=frozenset({"token"}),
    families=frozenset(
        {
            "delete_study",
            "create_39",
            "studies_post",
            "head_study",
            "patch_properties",
            "components_310",
            "batches",
            "study_codes_post",
            "results_delete_post",
        }
    ),
    import_answer="envelope",
    import_answer_has_id=True,
    import_new_with_keep_flags="import",
    import_raw_body=True,
    import_validates_parts=True,
    root_files_count_as_dirs=False,
    jas_needs_ids=False,
    jas_input_key="studyInput",
    jas_reads_input_aliases=True,
    unzip_failure="Unpacking ZIP archive failed",
    not_a_study="File is not a valid JATOS study",
    entry_msg_max_bytes=1000,
    checks_worker_types=True,
    export_short_title_fails=False,
    archive_suffix_configurable=True,
    default_worker_types=frozenset({"PersonalMultiple", "PersonalSingle"}),
    codes_api="3.10",
    results_archive_suffix="zip",
    metadata_group_id_text=False,
    metadata_quota_and_comment=True,
    result_path_os_separator=False,
    plain_text_sorted=True,
    plain_text_inline=True,
    metadata_download_flag=True,
    selector_uuid_bug=False,
    selector_drops_bad_numbers=True,
    results_delete_lists_ids=True,
    unknown_result_file_cr=ErrorKind.NOT_FOUND,
)

PERSONALITIES: Mapping[str, Personality] = {
    "3.8.1": PERSONALITY_381,
    "3.8": PERSONALITY_382,
    "3.8.2": PERSONALITY_382,
    "3.9": PERSONALITY_39,
    "3.9.8": PERSONALITY_39,
    "3.10": PERSONALITY_310,
    "3.10.5": PERSONALITY_310,
}


def get_personality(name: str) -> Personality:
    """The personality for `name` ("3.8.1", "3.8.2", "3.9", "3.10", …); ValueError else."""
    try:
        return PERSONALITIES[name]
    except KeyError:
        known = ", ".join(sorted(PERSONALITIES))
        raise ValueError(f"unknown JATOS personality {name!r} (known: {known})") from None
