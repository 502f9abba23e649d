"""`jatos-sync check`: is everything in place for each mapping? Read-only.

For each mapping it reports the server's JATOS version, the token's owner and expiry, the
study's title, IDs and lock state, file counts on both sides, and each problem in words a
researcher understands, with the exit code of the worst problem (README, "Exit codes").
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from jatos_sync.client import JatosClient, host_is_loopback
from jatos_sync.config import MappingConfig
from jatos_sync.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    AccessError,
    JatosSyncError,
    StudyLockedError,
    StudyNotFoundError,
    worst_exit_code,
)
from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import API_VERSION_382, StudyInfo, TokenInfo, jatos_version_for_api
from jatos_sync.scan import check_folder, scan_folder
from jatos_sync.state import StateStore, mapping_key

log = structlog.get_logger("jatos_sync.check")

# Warn this long before a token expires (JATOS offers 7/30/60/90-day tokens).
EXPIRY_WARNING_S = 7 * 24 * 3600


@dataclass
class CheckReport:
    name: str
    study: str
    folder: str
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (exit code, message)
    warnings: list[str] = field(default_factory=list)
    reachable: list[StudyInfo] = field(default_factory=list)  # when `study:` is wrong

    @property
    def exit_code(self) -> int:
        return worst_exit_code([code for code, _ in self.problems])


def token_warnings(info: TokenInfo, *, now_s: float) -> list[str]:
    if info.expiration_ms is None:
        return []
    left_s = info.expiration_ms / 1000 - now_s
    if 0 < left_s < EXPIRY_WARNING_S:
        return [
            f"the token expires in {left_s / 86400:.1f} days; create a new one in JATOS "
            "(user menu → API tokens) before it does"
        ]
    return []


def warn_before_connecting(url: str) -> None:
    """Plain http sends the token in clear text, except to this machine."""
    if url.startswith("http://") and not host_is_loopback(url):
        log.warning(
            "insecure_url", url=url, hint="the token travels unencrypted over http://; use https://"
        )


def warn_about_token(info: TokenInfo) -> None:
    for warning in token_warnings(info, now_s=time.time()):
        log.warning("token_expiring", message=warning)


def describe_expiry(info: TokenInfo) -> str:
    if info.expiration_ms is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.expiration_ms / 1000))


def check_mapping(
    mapping: MappingConfig, *, client: JatosClient, token: TokenInfo, store: StateStore
) -> CheckReport:
    report = CheckReport(mapping.name, mapping.study, str(mapping.folder))
    report.facts["jatos_version"] = jatos_version_for_api(token.api_version)
    report.facts["api_version"] = token.api_version
    report.facts["token_user"] = token.username or "(not reported by this JATOS version)"
    report.facts["token_name"] = token.name
    report.facts["token_expires"] = describe_expiry(token)
    report.warnings += token_warnings(token, now_s=time.time())

    try:
        check_folder(mapping.folder)
        rules = IgnoreRules.for_folder(mapping.folder, mapping.ignore)
        # The checksum cache of earlier passes spares reading every file for a count.
        cache = store.load(mapping_key(client.base_url, mapping.study, mapping.folder)).cache
        local = scan_folder(mapping.folder, rules, cache=cache)
        report.facts["local_files"] = len(local.files)
        if local.errors:
            report.problems.append(
                (
                    EXIT_PARTIAL,
                    f"{len(local.errors)} local file(s) cannot be read, e.g. "
                    f"{local.errors[0].path}: {local.errors[0].reason}",
                )
            )
    except JatosSyncError as exc:
        report.problems.append((exc.exit_code, str(exc)))

    try:
        study = client.study(mapping.study)
        report.facts.update(
            study_title=study.title, study_id=study.id, study_uuid=study.uuid, locked=study.locked
        )
        if study.locked:
            # JATOS checks the lock on file changes from 3.8.6 on (docs/jatos-api.md §7.1).
            old = token.api_version == API_VERSION_382
            report.problems.append(
                (
                    StudyLockedError.exit_code,
                    "the study is locked in JATOS: "
                    + (
                        "this JATOS (3.8.2) does not stop file changes to a locked study, so "
                        "unlock it on the study's page before you sync, or leave it alone"
                        if old
                        else "uploads and deletions will be refused until you unlock it on "
                        "the study's page"
                    ),
                )
            )
        remote = client.list_assets(mapping.study)
        report.facts["server_files"] = len(remote.files)
    except JatosSyncError as exc:
        if isinstance(exc, StudyNotFoundError) and mapping.create:  # the next sync creates it
            report.facts["study"] = "not on this server yet"
            report.warnings.append(
                f"study {mapping.study} does not exist on this server yet; `jatos-sync sync` "
                "creates it (create: true)"
            )
        else:
            report.problems.append((exc.exit_code, str(exc)))
            wrong_study = isinstance(exc, (StudyNotFoundError, AccessError))
            if wrong_study and "study_id" not in report.facts:
                # A wrong `study:` is fixed by knowing the right one: say what the token can
                # reach.
                with contextlib.suppress(JatosSyncError):
                    report.reachable = sorted(client.list_studies(), key=lambda s: s.id)

    try:
        store.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(store.root, os.W_OK):
            raise PermissionError("not writable")
        report.facts["state_dir"] = str(store.root)
    except OSError as exc:
        report.problems.append(
            (EXIT_PARTIAL, f"the state directory {store.root} cannot be written ({exc})")
        )
    return report


def exit_code_for(reports: list[CheckReport]) -> int:
    return worst_exit_code([r.exit_code for r in reports]) if reports else EXIT_OK
