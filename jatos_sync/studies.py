"""The study operations of each JATOS version, on top of `JatosClient`.

Owns what the endpoints of docs/jatos-api.md §10-§14 mean per version, for the study itself:
reading a study with its components and batches, creating one with a chosen UUID (a jzip
import with both keep flags false, then a check that it exists,
docs/jatos-api.md §15.2 items 1-3), carrying a `DefinitionPlan` out (a `.jas` re-import with
`keepProperties=false&keepAssets=true`, or on 3.10 PATCH and the component endpoints),
deleting components, counting the results a deletion destroys (`/results/metadata`),
exporting the archive and making study codes. Answers are parsed defensively (definition.py)
and JATOS's refusals become the program's errors here. `StudyStep` is the study's part of a
sync pass: before the files, the study exists and its plan is made (and a locked study stops
the pass); after them, the definition is brought in step and checked.

It must not decide what to change (definition.py), send HTTP itself (client.py) or talk to
the user (the cli package).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import structlog

from jatos_sync.answers import ApiAnswer, not_jatos
from jatos_sync.client import Download, JatosClient, Params
from jatos_sync.config import MappingConfig
from jatos_sync.definition import (
    Change,
    Definition,
    DefinitionPlan,
    ServerBatch,
    ServerComponent,
    ServerStudy,
    component_body,
    default_title,
    dir_name_for,
    jas_document,
    plan_definition,
)
from jatos_sync.errors import (
    AccessError,
    JatosSyncError,
    RequestTooLargeError,
    ServerUnavailableError,
    StudyLockedError,
    StudyNotFoundError,
    StudyRefusedError,
    UnsupportedServerError,
)
from jatos_sync.jzip import Archive, build_archive, check_export
from jatos_sync.model import API_VERSION_310, API_VERSION_382, PathProblem, RelPath
from jatos_sync.study_json import parse_study

log = structlog.get_logger("jatos_sync.studies")

_CODE = re.compile(r"[A-Za-z0-9]{1,64}")  # JATOS makes 11 alphanumerics (docs/jatos-api.md §13.3)

# The worker types a participant link can have (docs/jatos-api.md §13): the command line's
# name → JATOS's name (in `allowedWorkerTypes`) and the abbreviation the code endpoints
# take.
WORKER_TYPES: Mapping[str, tuple[str, str]] = {
    "personal-single": ("PersonalSingle", "ps"),
    "personal-multiple": ("PersonalMultiple", "pm"),
    "general-single": ("GeneralSingle", "gs"),
    "general-multiple": ("GeneralMultiple", "gm"),
}
GENERAL_TYPES = frozenset({"general-single", "general-multiple"})
MAX_CODES = 1000  # 3.10 refuses more in one request (docs/jatos-api.md §13.2)


# ============================================================================ reading


def _ref(study: str | int) -> str:
    return quote(str(study), safe="")


def read_study(client: JatosClient, study: str | int) -> ServerStudy:
    """`GET /studies/{id}/properties` with components and batches (docs/jatos-api.md §10.1),
    parsed."""
    params = {"withComponentProperties": "true", "withBatchProperties": "true"}
    return parse_study(client.study_properties(study, params=params), what=f"study {study}")


def find_study(client: JatosClient, study: str | int) -> ServerStudy | None:
    """The study, or None when the server has none by that ID or UUID. A study that exists
    but that the token's user may not see is an error (`AccessError`), not None."""
    try:
        return read_study(client, study)
    except StudyNotFoundError:
        return None


# ============================================================================ writing


def _send(
    client: JatosClient,
    method: str,
    path: str,
    *,
    what: str,
    body: Any = None,
    params: Params | None = None,
    idempotent: bool = True,
) -> ApiAnswer:
    """A write request; JATOS's 400 (its validation) becomes `StudyRefusedError`."""
    answer = client.api_json(
        method,
        path,
        what=what,
        params=params,
        json_body=body,
        ok=(200, 201, 400),
        idempotent=idempotent,
    )
    if answer.status == 400:
        raise _refused(answer, what)
    return answer


def _refused(answer: ApiAnswer, what: str) -> JatosSyncError:
    message = answer.message or "no reason given"
    if "aren't a user of it" in message:  # ≤3.9 (docs/jatos-api.md §11.5)
        return AccessError(
            f"{what}: the study exists on the server, but your JATOS user is not a member "
            f"of it ({message}). Ask a member to add you under the study's Members."
        )
    if "same UUID" in message:
        return StudyRefusedError(
            f"{what}: JATOS refused it: a component UUID of the definition belongs to "
            f"another study ({message}). Remove that `uuid:` from the component."
        )
    return StudyRefusedError(f"{what}: JATOS refused it ({message}); nothing of it was changed.")


def _import(client: JatosClient, archive: Path, *, keep_assets: bool, what: str) -> bool:
    """`POST /study` (≤3.9) or `POST /studies` (3.10) with the archive as the part `study`
    (docs/jatos-api.md §11.2). Both keep flags false creates (or replaces the assets: only
    for a study that does not exist yet); `keepProperties=false&keepAssets=true` changes
    properties and components only (docs/jatos-api.md §11.3, §15.2 item 2). False when the
    archive was refused as too large (HTTP 413, by JATOS or a proxy in front of it,
    docs/jatos-api.md §5.1): nothing was imported then."""
    route = "/studies" if client.api_version == API_VERSION_310 else "/study"
    flags = {"keepProperties": "false", "keepAssets": "true" if keep_assets else "false"}
    try:
        answer = client.api_upload(
            route,
            archive,
            part="study",
            filename="study.jzip",
            what=what,
            params=flags,
            ok=(200, 201, 400),
        )
    except RequestTooLargeError:
        return False
    if answer.status == 400:
        raise _refused(answer, what)
    return True


def create_study(
    client: JatosClient,
    definition: Definition,
    *,
    study_uuid: str,
    dir_name: str,
    folder: Path,
    files: Sequence[RelPath],
) -> ServerStudy:
    """Create the study `study_uuid` from `definition` and the `files` of `folder`, through
    a jzip import (the only way to choose its UUID, docs/jatos-api.md §10.3), then check
    that it exists: 3.8.2 answers success without importing in some cases
    (docs/jatos-api.md §15.2 item 3). The caller has made sure that no study has this UUID:
    with both keep flags false, an import over an existing study would delete its files
    first."""
    uuids = [c.uuid or str(uuid.uuid4()) for c in definition.components]
    jas = jas_document(definition, study_uuid=study_uuid, dir_name=dir_name, component_uuids=uuids)
    what = f"the creation of study {study_uuid}"
    with tempfile.TemporaryDirectory(prefix="jatos-sync-") as tmp:
        archive = Path(tmp) / "study.jzip"
        build_archive(
            archive,
            jas=jas,
            dir_name=dir_name,
            folder=folder,
            files=files,
            guard=lambda path: client.token_guard(path).check,
        )
        if not _import(client, archive, keep_assets=False, what=what):
            # Too large for the server or a proxy in front of it: the study alone, and the
            # pass's file sync uploads the files one by one (each within the limit or not).
            log.warning(
                "study_archive_too_large",
                study=study_uuid,
                hint="the study is created without its files; they are uploaded one by one",
            )
            build_archive(archive, jas=jas, dir_name=dir_name, folder=folder)
            if not _import(client, archive, keep_assets=False, what=what):
                raise ServerUnavailableError(
                    f"{what}: even an archive without files was refused as too large (HTTP "
                    "413); ask the JATOS admin to raise the request size limit."
                )
            files = ()
    study = find_study(client, study_uuid)
    if study is None:
        raise ServerUnavailableError(
            f"{what}: JATOS answered the import, but has no study with this UUID afterwards; "
            "nothing else was changed. Try `jatos-sync sync` again, or import the study in "
            "the JATOS GUI."
        )
    log.info("study_created", study=study_uuid, id=study.id, files=len(files))
    return study


def apply_plan(
    client: JatosClient, study: ServerStudy, definition: Definition, plan: DefinitionPlan
) -> None:
    """Carry `plan` out on `study` (docs/jatos-api.md §10.4, §11.3, §12)."""
    what = f"the definition of study {study.uuid}"
    if plan.reimport:
        uuids = [u or str(uuid.uuid4()) for u in plan.component_uuids]
        jas = jas_document(
            definition, study_uuid=study.uuid, dir_name=study.dir_name, component_uuids=uuids
        )
        with tempfile.TemporaryDirectory(prefix="jatos-sync-") as tmp:
            archive = Path(tmp) / "definition.jzip"
            build_archive(
                archive,
                jas=jas,
                dir_name=study.dir_name,
                folder=Path(tmp),
                guard=lambda path: client.token_guard(path).check,
            )
            if not _import(client, archive, keep_assets=True, what=what):
                raise ServerUnavailableError(
                    f"{what}: the server refused the study's .jas (a few kilobytes) as too "
                    "large (HTTP 413); ask the JATOS admin to raise the request size limit."
                )
    else:
        if plan.study_patch:
            _send(
                client,
                "PATCH",
                f"/studies/{study.id}/properties",
                body=dict(plan.study_patch),
                what=f"{what}: its properties",
            )
        for component in plan.creates:
            _send(
                client,
                "POST",
                f"/studies/{study.id}/components",
                body=component_body(component),
                what=f"{what}: creating component {component.title!r}",
                idempotent=False,  # a retried creation would add a second component
            )
        for component_id, body in plan.updates:
            _send(
                client,
                "PATCH",
                f"/components/{component_id}",
                body=dict(body),
                what=f"{what}: component {component_id}",
            )
        for component_id in plan.deactivates:
            _send(
                client,
                "PATCH",
                f"/components/{component_id}",
                body={"active": False},
                what=f"{what}: deactivating component {component_id}",
            )
    for leftover in plan.deletes:
        delete_component(client, study, leftover)


def delete_component(client: JatosClient, study: ServerStudy, component: ServerComponent) -> None:
    """Delete a component and, with it, all its results (docs/jatos-api.md §12). 3.10: `DELETE
    /components/{id}`; 3.9.7+: `DELETE /studies/{id}/components/{cid}` (the study named
    exactly as JATOS compares it); earlier versions cannot."""
    what = f"deleting component {component.title!r} of study {study.uuid}"
    if client.api_version == API_VERSION_382:
        raise StudyRefusedError(f"{what}: JATOS 3.8.2 cannot delete components through its API")
    path = (
        f"/components/{component.id}"
        if client.api_version == API_VERSION_310
        else f"/studies/{study.id}/components/{component.id}"
    )
    try:
        _send(client, "DELETE", path, what=what)
    except UnsupportedServerError:
        raise StudyRefusedError(
            f"{what}: this JATOS has no endpoint for it (3.9.7 and newer have one); it stays "
            "deactivated. Delete it in the JATOS GUI if you really want its results gone."
        ) from None
    log.warning("component_deleted", study=study.uuid, component=component.title)


def count_results(client: JatosClient, study: ServerStudy) -> dict[int, int]:
    """How many results (component results) each component of `study` has, from
    `GET /results/metadata?studyId=` (docs/jatos-api.md §14.2; parsed defensively,
    docs/jatos-api.md §15.2 item 15)."""
    from jatos_sync.results.metadata import fetch_metadata  # only to count before deleting

    what = f"the results of study {study.uuid}"
    try:
        metadata = fetch_metadata(client, str(study.id), what=what)
    except JatosSyncError as exc:
        raise type(exc)(
            f"Could not count the results of the components to delete ({exc}); nothing was deleted."
        ) from exc
    return dict(
        Counter(c.component_id for r in metadata.results for c in r.components if c.component_id)
    )


# ============================================================================ archives and links


def export_study(client: JatosClient, study: str | int, dest: IO[bytes]) -> Download:
    """`GET /studies/{id}`: the study's archive, streamed into `dest` (docs/jatos-api.md §11.1)."""
    return client.api_download(f"/studies/{_ref(study)}", dest, what=f"the export of study {study}")


def export_checked(
    client: JatosClient, study: str | int, path: Path
) -> tuple[ServerStudy, Archive]:
    """The study, and its archive exported into the new file `path` (on disk when this
    returns), checked to be a whole archive of this study: `ArchiveError` otherwise."""
    found = read_study(client, study)
    with path.open("xb") as stream:
        export_study(client, found.id, stream)
        stream.flush()
        os.fsync(stream.fileno())
    return found, check_export(path, study_uuid=found.uuid)


def study_codes(
    client: JatosClient,
    study: ServerStudy,
    *,
    worker_type: str,
    batch: ServerBatch,
    amount: int,
    comment: str | None,
) -> list[str]:
    """New study codes (docs/jatos-api.md §13): 3.10 `POST /studies/{id}/studyCodes` with a
    JSON body, ≤3.9 `GET …/studyCodes?…` (whose comment JATOS URL-decodes once more). The
    batch is always named: JATOS does not check that it belongs to the study
    (docs/jatos-api.md §15.2 item 17)."""
    _full, abbreviation = WORKER_TYPES[worker_type]
    what = f"study codes for study {study.uuid}"
    if client.api_version == API_VERSION_310:
        body: dict[str, Any] = {"type": abbreviation, "batchId": batch.id, "amount": amount}
        if comment:
            body["comment"] = comment
        answer = _send(
            client,
            "POST",
            f"/studies/{study.id}/studyCodes",
            body=body,
            what=what,
            idempotent=False,
        )
    else:
        params = {"type": abbreviation, "batchId": str(batch.id), "amount": str(amount)}
        if comment:
            params["comment"] = quote(comment, safe="")
        answer = _send(
            client,
            "GET",
            f"/studies/{study.id}/studyCodes",
            params=params,
            what=what,
            idempotent=False,
        )
    data = answer.json.get("data") if isinstance(answer.json, dict) else None
    if (
        not isinstance(data, list)
        or not data
        or not all(isinstance(c, str) and _CODE.fullmatch(c) for c in data)
    ):
        raise not_jatos(answer, what, base_url=client.base_url)
    return list(data)


def link_url(base_url: str, code: str) -> str:
    """A participant's link: `<base>/publix/<code>`, under the server's path prefix
    (docs/jatos-api.md §13.3)."""
    return f"{base_url.rstrip('/')}/publix/{code}"


# ============================================================================ the step of a pass


@dataclass
class StudyStep:
    """The study's part of one sync pass for a mapping with `create:` or `definition:`.

    `prepare` runs before the files: it reads the study, creates it when it is missing and
    `create: true` (not in a dry run), plans the definition, and refuses to go on with a
    locked study that would be changed (nothing is changed then). `finish` runs after the
    files: it brings the definition in step (never before every component's HTML file is
    on the server) and checks the result with a second read.
    """

    mapping: MappingConfig
    client: JatosClient
    allow_delete: bool = False
    count_losses: bool = True  # count the results of a withheld deletion too (sync.full_pass)
    changes: list[Change] = field(default_factory=list)
    study: ServerStudy | None = None  # None after `prepare` only in a dry run that creates it
    plan: DefinitionPlan | None = None

    @property
    def exists(self) -> bool:
        return self.study is not None

    def prepare(self, *, dry_run: bool, files: Callable[[], Sequence[RelPath]]) -> None:
        mapping, definition = self.mapping, self.mapping.definition
        study = find_study(self.client, mapping.study)
        if study is None:
            if not mapping.create:
                raise StudyNotFoundError(
                    f"study {mapping.study}: no such study on {self.client.base_url}. Check "
                    "`study:` in the configuration (`jatos-sync check` lists the studies you "
                    "can access), or add `create: true` to the mapping to create it."
                )
            new = _creation_definition(mapping)
            refuse_token(self.client, new, mapping=mapping.name)
            created = [Change("created", study=new.title)]
            created += [Change("created", component=c.title) for c in new.components]
            if dry_run:
                self.changes += created
                return
            study = create_study(
                self.client,
                new,
                study_uuid=mapping.study,
                dir_name=dir_name_for(mapping.name, mapping.study),
                folder=mapping.folder,
                files=files(),
            )
            self.changes += created
        self.study = study
        if definition is None:
            return
        plan = self._plan(study, definition)
        if plan.writes:
            refuse_token(self.client, definition, mapping=mapping.name)
        self.plan = plan
        if plan.writes and study.locked:
            if not dry_run:
                raise StudyLockedError(
                    f"Study {mapping.study} ({study.title!r}) is locked in JATOS, and its "
                    f"definition differs from {mapping.name!r}'s ({len(plan.changes)} "
                    "change(s)); nothing was changed. Unlock it on the study's page in JATOS "
                    "to let jatos-sync change it."
                )
            log.warning("study_locked", mapping=mapping.name, study=mapping.study)

    def _plan(self, study: ServerStudy, definition: Definition) -> DefinitionPlan:
        plan = self._plan_for(study, definition, allow_delete=self.allow_delete)
        if plan.deletes or (plan.withheld and self.count_losses):  # what each destroys
            results = count_results(self.client, study)
            plan = self._plan_for(
                study, definition, allow_delete=self.allow_delete, results=results
            )
        if self.mapping.delete_components and self.client.api_version == API_VERSION_382:
            log.warning(
                "components_not_deleted",
                mapping=self.mapping.name,
                hint="JATOS 3.8.2 cannot delete components through its API; they are "
                "deactivated instead",
            )
        return plan

    @property
    def withheld(self) -> str:
        """Why deletions of components wait (for the result), or ""."""
        if self.plan is None or not self.plan.withheld:
            return ""
        return (
            f"{len(self.plan.withheld)} component(s) to delete (delete_components: true) "
            "would destroy their results; run `jatos-sync sync --yes` to delete them"
        )

    def finish(self, *, dry_run: bool, server_files: Collection[RelPath]) -> list[PathProblem]:
        """Bring the definition in step; return the HTML files that are not on the server
        (then nothing was changed). The changes made are in `changes`."""
        definition, study, plan = self.mapping.definition, self.study, self.plan
        if definition is None or plan is None or study is None:
            return []
        if dry_run or not plan.writes:
            self.changes += plan.changes
            return []
        missing = [
            PathProblem(
                RelPath(c.html),
                f"the HTML file of component {c.title!r} is not on the server, so the "
                "study's definition was not changed; it is tried again on the next pass",
            )
            for c in definition.components
            if RelPath(c.html) not in server_files
        ]
        if missing:
            return missing
        apply_plan(self.client, study, definition, plan)
        self.changes += plan.changes
        for change in plan.changes:
            log.info("definition_changed", mapping=self.mapping.name, **change.to_json())
        again = self._plan_for(read_study(self.client, study.uuid), definition, allow_delete=False)
        if again.writes:
            left = "; ".join(str(c.to_json()) for c in again.changes[:3])
            raise ServerUnavailableError(
                f"JATOS answered the changes of study {study.uuid}'s definition, but still "
                f"differs from it ({left}). Check the study in the JATOS GUI."
            )
        return []

    def _plan_for(
        self,
        study: ServerStudy,
        definition: Definition,
        *,
        allow_delete: bool,
        results: Mapping[int, int] | None = None,
    ) -> DefinitionPlan:
        return plan_definition(
            definition,
            study,
            api_version=self.client.api_version or "",
            delete_components=self.mapping.delete_components,
            allow_delete=allow_delete,
            results=results,
        )


def _creation_definition(mapping: MappingConfig) -> Definition:
    """What a new study is made of: the definition, or (without one) a study titled after
    the mapping, with no components."""
    if mapping.definition is not None:
        return mapping.definition
    return Definition(title=default_title(mapping.name))


def refuse_token(client: JatosClient, definition: Definition, *, mapping: str) -> None:
    """Refuse a definition that holds the API token (pasted into an input or a text by
    mistake): JATOS shows inputs to every participant's browser (docs/safety.md, rule 9)."""
    uuids = ["" for _ in definition.components]
    document = jas_document(definition, study_uuid="", dir_name="", component_uuids=uuids)
    client.token_guard(
        RelPath("jatos-sync.yaml"),
        message=f"The definition of mapping {mapping!r} holds the API token (in an input or a "
        "text), and JATOS shows inputs to every participant; nothing was changed. Remove it "
        "from the configuration, and make a new token in JATOS.",
    ).check(json.dumps(document, ensure_ascii=False).encode("utf-8"))
