"""One reconcile pass for a mapping: scan, list, plan, apply, remember. Shared by the
one-shot commands (`sync`, `status`) and the daemon.

It owns the order of the steps and the per-mapping result (PRODUCT.md §6 JSON). It must not
parse HTTP (client.py), decide what to change (plan.py) or talk to the user (cli.py).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from jatos_sync.apply import Outcome, Target, apply_plan
from jatos_sync.client import JatosClient
from jatos_sync.config import MappingConfig
from jatos_sync.errors import EXIT_OK, EXIT_PARTIAL, EXIT_SAFETY, JatosSyncError, SafetyStop
from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import PathProblem, RelPath
from jatos_sync.plan import Plan, Policy, make_plan, next_synced
from jatos_sync.scan import check_folder, scan_folder
from jatos_sync.state import StateStore, mapping_key

log = structlog.get_logger("jatos_sync.sync")


@dataclass
class MappingResult:
    """What a pass did (or, for a dry run, would do) for one mapping."""

    name: str
    study: str
    folder: Path
    dry_run: bool = False
    uploaded: list[RelPath] = field(default_factory=list)
    deleted: list[RelPath] = field(default_factory=list)
    unchanged: int = 0
    withheld: list[RelPath] = field(default_factory=list)
    withheld_reason: str = ""
    skipped: list[PathProblem] = field(default_factory=list)
    failed: list[PathProblem] = field(default_factory=list)
    backed_up: list[RelPath] = field(default_factory=list)
    error: JatosSyncError | None = None

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if self.withheld_reason:
            return EXIT_SAFETY
        if self.failed or self.withheld:
            return EXIT_PARTIAL
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": self.name,
            "study": self.study,
            "folder": str(self.folder),
            "uploaded": [str(p) for p in self.uploaded],
            "deleted": [str(p) for p in self.deleted],
            "unchanged": self.unchanged,
            "withheld": [str(p) for p in self.withheld],
            "skipped": [{"path": str(p.path), "reason": p.reason} for p in self.skipped],
            "failed": [{"path": str(p.path), "error": p.reason} for p in self.failed],
            "backed_up": [str(p) for p in self.backed_up],
            "exit_code": self.exit_code,
        }
        if self.withheld_reason:
            result["withheld_reason"] = self.withheld_reason
        if self.error is not None:
            result["error"] = str(self.error)
        return result


def policy_for(mapping: MappingConfig, *, allow_mass_delete: bool, api_version: str) -> Policy:
    return Policy(
        delete=mapping.delete,
        backup=mapping.backup,
        max_delete=mapping.max_delete,
        max_delete_percent=mapping.max_delete_percent,
        allow_mass_delete=allow_mass_delete,
        api_version=api_version,
    )


def run_pass(
    mapping: MappingConfig,
    *,
    client: JatosClient,
    store: StateStore,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    concurrency: int = 4,
    stop: threading.Event | None = None,
) -> MappingResult:
    """One full reconcile pass for `mapping`; errors end up in the result, never raised."""
    result = MappingResult(mapping.name, mapping.study, mapping.folder, dry_run=dry_run)
    key = mapping_key(client.base_url, mapping.study, mapping.folder)
    try:
        check_folder(mapping.folder)
        store.ensure_outside(mapping.folder)
        # JATOS reads every file to answer the listing (API reference §2.2): scan the local
        # folder while it does, instead of one after the other.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jatos-sync-list") as pool:
            listing = pool.submit(client.list_assets, mapping.study)
            rules = IgnoreRules.for_folder(mapping.folder, mapping.ignore)
            state = store.load(key)
            local = scan_folder(mapping.folder, rules, cache=state.cache)
            log.info(
                "scan_done",
                mapping=mapping.name,
                files=len(local.files),
                bytes_hashed=state.cache.bytes_read,
                cache_hits=state.cache.hits,
            )
            remote = listing.result()
        api_version = remote.api_version
        plan = make_plan(
            local,
            remote,
            state.synced,
            policy_for(mapping, allow_mass_delete=allow_mass_delete, api_version=api_version),
            ignored=rules,
        )
        result.unchanged = len(plan.unchanged)
        result.failed = [PathProblem(p.path, f"could not read: {p.reason}") for p in local.errors]
        result.withheld = list(plan.withheld)
        result.withheld_reason = plan.withheld_reason
        if plan.withheld_reason:
            log.warning(
                "deletions_withheld",
                mapping=mapping.name,
                count=len(plan.withheld),
                reason=plan.withheld_reason,
            )
        if dry_run:
            _describe_plan(result, plan)
            state.synced = next_synced(state.synced, remote, plan, uploaded={}, deleted=set())
            store.save(key, state)
            return result
        outcome = apply_plan(
            plan,
            Target(
                client=client,
                study=mapping.study,
                folder=mapping.folder,
                backup_root=store.backup_dir(key),
                concurrency=concurrency,
            ),
            scanned=dict(local.files),
            api_version=api_version,
            stop=stop,
        )
        _record_outcome(result, plan, outcome)
        state.synced = next_synced(
            state.synced, remote, plan, uploaded=outcome.uploaded, deleted=outcome.deleted
        )
        store.save(key, state)
        if outcome.fatal is not None:
            raise outcome.fatal
    except SafetyStop as exc:
        result.error = exc
        log.error("mapping_stopped", mapping=mapping.name, error=str(exc))
    except JatosSyncError as exc:
        result.error = exc
        log.error("mapping_failed", mapping=mapping.name, error=str(exc))
    return result


def _describe_plan(result: MappingResult, plan: Plan) -> None:
    result.uploaded = list(plan.uploads)
    result.deleted = list(plan.deletes)
    result.backed_up = list(plan.backups)
    result.skipped = list(plan.skipped)


def _record_outcome(result: MappingResult, plan: Plan, outcome: Outcome) -> None:
    result.uploaded = [p for p in plan.uploads if p in outcome.uploaded]
    result.deleted = sorted(outcome.deleted)
    result.backed_up = list(outcome.backed_up)
    result.skipped = list(plan.skipped) + outcome.skipped
    result.failed += outcome.failed
    result.withheld += outcome.not_deleted
