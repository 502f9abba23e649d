"""Study endpoints of the stand-in: properties, import, export, create, patch, delete
(docs/jatos-api.md §10, §11).

Owns the actions behind `GET /studies/properties`, `GET|PATCH /studies/{id}/properties`,
`POST /study`, `POST /studies` (3.10: archive or JSON), `POST /studies/create`,
`GET|HEAD|DELETE /studies/{id}`, with each release's flags, answers and destructive
quirks (an overwrite with keepAssets=false deletes the assets first; components merged by
UUID; 3.8.2's silent no-op and 3.9's 500 for a new UUID with a keep flag). Archive format
is `jzip.py`'s, property rules `props.py`'s, JSON shapes `views.py`'s. It keeps no state of
its own (records live in `state.py`) and does no socket I/O.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jatos_sync.testing import jzip, wire
from jatos_sync.testing.app import Action, Area, Call, raise_first_error
from jatos_sync.testing.personality import ApiError, ErrorKind
from jatos_sync.testing.props import (
    BindError,
    StudyProps,
    apply_batch,
    apply_component,
    apply_study,
    bind,
    input_from_body,
    study_errors,
)
from jatos_sync.testing.state import Study
from jatos_sync.testing.views import study_json
from jatos_sync.testing.wire import Response, drop_nulls

if TYPE_CHECKING:
    from jatos_sync.testing.jzip import JasStudy, Unpacked

_RAW_ZIP_TYPES = ("application/zip", "application/jzip", "application/octet-stream")


@dataclass(frozen=True)
class ImportFlags:
    """The query flags of an import and their defaults (docs/jatos-api.md §11.2)."""

    keep_properties: bool
    keep_assets: bool
    keep_current_assets_name: bool
    rename_assets: bool


class StudyActions(Area):
    def actions(self) -> dict[str, Action]:
        return {
            "all_properties": self.all_properties,
            "study_properties": self.study_properties,
            "study_exists": self.study_exists,
            "export": self.export,
            "delete_study": self.delete_study,
            "import": self.import_study,
            "import_or_create": self.import_or_create,
            "create_39": self.create_39,
            "create_deprecated": self.create_deprecated,
            "patch_properties": self.patch_properties,
        }

    # ------------------------------------------------------------------ reading

    def _json(self, study: Study, call: Call) -> dict[str, Any]:
        return study_json(
            study,
            self.p,
            self.state.users,
            with_components=call.query_bool("withComponentProperties", False),
            with_batches=call.query_bool("withBatchProperties", False),
            separator=self.app.site.path_separator,
        )

    def all_properties(self, call: Call) -> Response:
        with self.state.lock:
            studies = self.state.studies_of(call.username)
            return self.app.json_data([self._json(s, call) for s in studies])

    def study_properties(self, call: Call) -> Response:
        with self.state.lock:
            return self.app.json_data(self._json(self.app.study_for(call), call))

    def study_exists(self, call: Call) -> Response:
        # ADMIN only (docs/jatos-api.md §10.5); the stand-in checks no membership here.
        self.app.find_study(call.study_ref)
        return Response(204)

    def export(self, call: Call) -> Response:
        """`GET /studies/{id}`: the archive with Content-Length, lock not checked
        (docs/jatos-api.md §11.1)."""
        with self.state.lock:
            study = self.app.study_for(call)
            jas = jzip.jas_document(study, self.p)
            if self.app.omit_nulls:
                jas = drop_nulls(jas)
            jas_bytes = json.dumps(jas, ensure_ascii=False, separators=(",", ":")).encode()
            fd, name = tempfile.mkstemp(dir=self.app.site.tmp_dir(), prefix="export-")
            os.close(fd)
            target = Path(name)
            try:
                jzip.write_export(study, jas_bytes, target, self.p)
            except OSError:
                target.unlink(missing_ok=True)
                raise ApiError(
                    ErrorKind.EXPORT_FAILED, title=study.title, study_id=str(study.id)
                ) from None
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        f = target.open("rb")
        target.unlink()  # the open file stays readable; nothing is left behind
        disposition = wire.content_disposition("attachment", f"jatos_study_{study.uuid}.jzip")
        return Response(
            200,
            [("Content-Type", "application/zip"), ("Content-Disposition", disposition)],
            stream=f,
            stream_len=os.fstat(f.fileno()).st_size,
        )

    # ------------------------------------------------------------------ delete

    def delete_study(self, call: Call) -> Response:
        """Assets and all results go; a locked study is refused (docs/jatos-api.md §10.5)."""
        with self.state.lock:
            study = self.app.study_for(call, unlocked=True)
            removed = self.state.remove_study(study)
        self.app.runs.remove_files(removed)
        _remove_path(study.assets_dir)
        if not self.p.success_messages:
            return Response(200)
        return self.app.json_message(200, "Study deleted successfully")

    # ------------------------------------------------------------------ create from JSON

    def create_deprecated(self, call: Call) -> Response:
        """3.10's `POST /studies/create`: strict like `POST /studies`, never renames
        (docs/jatos-api.md §10.3)."""
        return self._create_310(call, call.raw_json(), rename=False)

    def create_39(self, call: Call) -> Response:
        body = call.json_body()
        if not isinstance(body, dict):
            raise ApiError(ErrorKind.INTERNAL)  # asJson() null → NullPointerException
        try:
            props: StudyProps = bind("study", body, StudyProps(), strict=False, aliases=False)
        except BindError as exc:
            raise ApiError(ErrorKind.IO, detail=exc.message) from None
        raise_first_error(study_errors(props, self.p), with_field=False)
        study_uuid = str(uuid.uuid4())
        with self.state.lock:
            study = self._new_study(call, study_uuid, study_uuid, props, active=True)
        return self.app.json(200, {"uuid": study.uuid, "id": study.id})

    def _create_310(self, call: Call, body: Any, *, rename: bool) -> Response:
        if not isinstance(body, dict):
            raise ApiError(ErrorKind.INVALID_JSON, detail="Request body is not a JSON object")
        body = input_from_body(body, "studyInput")
        try:
            props: StudyProps = bind("study", body, StudyProps(), strict=True, aliases=True)
        except BindError as exc:
            raise ApiError(ErrorKind.INVALID_JSON, detail=exc.message) from None
        raise_first_error(study_errors(props, self.p))
        study_uuid = str(uuid.uuid4())
        name = props.dir_name or study_uuid
        with self.state.lock:
            if self._dir_exists(name):
                if not rename:
                    raise ApiError(
                        ErrorKind.CREATE_DIR_EXISTS,
                        detail="Cannot create study: a study assets directory with the same "
                        "name exists already, but 'renameAssets' is set to false.",
                    )
                name = self._free_dir_name(name)
            study = self._new_study(call, study_uuid, name, props, active=props.active)
            return self.app.json_data(self._api_json(study), status=201)

    def _new_study(
        self, call: Call, study_uuid: str, dir_name: str, props: StudyProps, *, active: bool
    ) -> Study:
        """A study with an empty assets directory, a default batch, the caller as member."""
        target = self.app.site.assets_root / dir_name
        if target.exists():
            raise ApiError(ErrorKind.IO, detail=_dir_exists_message(dir_name))
        study = self.state.add_study(
            props.title or "",
            members=[call.username],
            locked=False,
            dir_name=dir_name,
            assets_root=self.app.site.assets_root,
            study_uuid=study_uuid,
            batch_worker_types=self.p.default_worker_types,
        )
        apply_study(study, props, active=active)
        target.mkdir(parents=True)
        return study

    def _api_json(self, study: Study) -> dict[str, Any]:
        return study_json(study, self.p, self.state.users, separator=self.app.site.path_separator)

    # ------------------------------------------------------------------ patch (3.10)

    def patch_properties(self, call: Call) -> Response:
        """Partial update; `active` is not pre-filled, so a PATCH without it re-activates;
        a new dirName renames the folder (docs/jatos-api.md §10.4)."""
        with self.state.lock:
            study = self.app.study_for(call, unlocked=True)
            body = call.json_object("studyInput")
            current = StudyProps(
                title=study.title,
                description=study.description,
                dir_name=study.dir_name,
                comments=study.comments,
                input=study.input,
                end_redirect_url=study.end_redirect_url,
                study_entry_msg=study.study_entry_msg,
                linear=study.linear,
                allow_preview=study.allow_preview,
                group_study=study.group_study,
                active=True,  # bindToProperties leaves it at the default
            )
            try:
                props: StudyProps = bind("study", body, current, strict=True, aliases=True)
            except BindError as exc:
                raise ApiError(ErrorKind.VALIDATION, detail=f"Error in field '{exc.key}'") from None
            raise_first_error(study_errors(props, self.p))
            new_name = props.dir_name or study.dir_name
            if new_name != study.dir_name:
                self._rename_assets(study, new_name)
            apply_study(study, props, active=props.active)
            return self.app.json_data(self._api_json(study))

    def _rename_assets(self, study: Study, new_name: str) -> None:
        """`renameStudyAssetsDir`: target exists → IO error; old one missing → a new empty
        directory. Not rolled back if something fails later (docs/jatos-api.md §10.4)."""
        root = self.app.site.assets_root
        old, new = root / study.dir_name, root / new_name
        if new.exists():
            raise ApiError(
                ErrorKind.IO,
                detail=f'Study assets directory "{study.dir_name}" couldn\'t be renamed to '
                f'"{new_name}" because it already exists.',
            )
        if old.exists():
            shutil.move(str(old), str(new))
        else:
            new.mkdir(parents=True)
        study.dir_name = new_name
        study.assets_dir = new

    # ------------------------------------------------------------------ import

    def _flags(self, call: Call) -> ImportFlags:
        return ImportFlags(
            keep_properties=call.query_bool("keepProperties", False),
            keep_assets=call.query_bool("keepAssets", False),
            keep_current_assets_name=call.query_bool("keepCurrentAssetsName", True),
            rename_assets=call.query_bool("renameAssets", True),
        )

    def import_or_create(self, call: Call) -> Response:
        """3.10 `POST /studies`: the Content-Type decides (docs/jatos-api.md §10.3, §11.2)."""
        ctype = call.body.content_type
        flags = self._flags(call)
        if call.body.multipart or ctype in _RAW_ZIP_TYPES or not ctype:
            return self._import(call, flags)
        if ctype == "application/json":
            body = call.json_body()
            if body is None:
                raise ApiError(
                    ErrorKind.INVALID_JSON, detail="Request body is empty or not valid JSON"
                )
            return self._create_310(call, body, rename=flags.rename_assets)
        raise ApiError(ErrorKind.WRONG_CONTENT_TYPE, detail=call.req.header("Content-Type") or "")

    def import_study(self, call: Call) -> Response:
        flags = self._flags(call)
        ctype = call.body.content_type
        if (
            self.p.import_raw_body
            and not call.body.multipart
            and ctype
            and ctype not in _RAW_ZIP_TYPES
        ):
            raise ApiError(
                ErrorKind.BAD_REQUEST_MESSAGE,
                detail=f"Unsupported Content-Type '{ctype}'. Use multipart/form-data, "
                f"[{', '.join(_RAW_ZIP_TYPES)}]",
            )
        return self._import(call, flags)

    def _import(self, call: Call, flags: ImportFlags) -> Response:
        part = call.part
        if part is None or (not call.body.multipart and not self.p.import_raw_body):
            raise ApiError(ErrorKind.MISSING_FILE)
        work = Path(tempfile.mkdtemp(dir=self.app.site.tmp_dir(), prefix="import-"))
        try:
            unpacked = jzip.unpack(part.tmp_path, work / "unzipped", self.p)
            jas = jzip.parse_jas(unpacked.jas.read_text("utf-8", errors="replace"), self.p)
            with self.state.lock:
                return self._import_parsed(call, flags, unpacked, jas)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _import_parsed(
        self, call: Call, flags: ImportFlags, unpacked: Unpacked, jas: JasStudy
    ) -> Response:
        props = jas.props
        for c in jas.components:  # checkForExistingComponents
            existing = self.state.component_by_uuid(c.uuid) if c.uuid else None
            if existing is not None and self.state.studies[existing.study_id].uuid != props.uuid:
                raise ApiError(
                    ErrorKind.IMPORT_FOREIGN_COMPONENT,
                    detail=f"An component of the imported study has the same UUID ({c.uuid}) "
                    "as an existing component.",
                )
        current = self.state.study_by_uuid(props.uuid) if props.uuid else None
        if current is not None and call.username not in current.members:
            raise ApiError(ErrorKind.IMPORT_NOT_MEMBER)
        dir_name = props.dir_name or ""
        info: dict[str, Any] = {"studyExists": current is not None}
        info["uuid"] = current.uuid if current is not None else props.uuid
        if current is not None:
            info["currentStudyTitle"] = current.title
            info["currentDirName"] = current.dir_name
        info["uploadedStudyTitle"] = props.title
        info["uploadedDirName"] = dir_name
        info["uploadedDirExists"] = self._dir_exists(dir_name)
        if current is None and info["uploadedDirExists"]:
            info["newDirName"] = self._free_dir_name(dir_name)
        # --- the confirmed part (importStudyConfirmed)
        if jas.missing_ids:
            raise ApiError(ErrorKind.INTERNAL)  # 3.8.2: a null UUID reaches the database
        unpacked.jas.unlink()
        if current is not None:
            self._overwrite(current, jas, unpacked, flags)
            study: Study | None = current
        elif self.p.import_new_with_keep_flags == "import" or not (
            flags.keep_properties or flags.keep_assets
        ):
            study = self._import_new(call, jas, unpacked, flags)
        elif self.p.import_new_with_keep_flags == "ignore":
            study = None  # 3.8.2: nothing happens, and the answer is 200 (docs/jatos-api.md §11.3)
        else:
            raise ApiError(
                ErrorKind.IO,
                detail="Impossible to import study: no new study and the existing study is "
                "not allowed to be overwritten",
            )
        if self.p.import_answer == "envelope":
            assert study is not None
            return self.app.json_data(self._api_json(study), status=200 if current else 201)
        if self.p.import_answer_has_id and study is not None:
            info["id"] = study.id
        return self.app.json(200, info)

    def _overwrite(
        self, study: Study, jas: JasStudy, unpacked: Unpacked, flags: ImportFlags
    ) -> None:
        """Same UUID: assets deleted first when replaced, properties and components merged;
        lock, active, members and batches stay (docs/jatos-api.md §11.3)."""
        if study.locked:
            raise ApiError(ErrorKind.STUDY_LOCKED, study_id=str(study.id))
        if not flags.keep_assets:
            name = study.dir_name if flags.keep_current_assets_name else (jas.props.dir_name or "")
            # Not rolled back if the move fails (docs/jatos-api.md §11.3).
            _remove_path(study.assets_dir)
            self._move_assets(unpacked, name)
        if flags.keep_properties:
            return
        apply_study(study, jas.props)
        if not flags.keep_current_assets_name and not flags.keep_assets:
            study.dir_name = jas.props.dir_name or study.dir_name
            study.assets_dir = self.app.site.assets_root / study.dir_name
        old = list(study.components)
        study.components = []  # rebuilt in .jas order; add_component appends here
        for props in jas.components:
            match = next((c for c in old if c.uuid == props.uuid), None)
            if match is None:
                match = self.state.add_component(study, component_uuid=props.uuid)
            else:
                old.remove(match)
                study.components.append(match)
            apply_component(match, props)
        for leftover in old:  # kept for their results, but inactive and last
            leftover.active = False
            study.components.append(leftover)

    def _import_new(
        self, call: Call, jas: JasStudy, unpacked: Unpacked, flags: ImportFlags
    ) -> Study:
        name = jas.props.dir_name or ""
        if self._dir_exists(name):
            if not flags.rename_assets:
                raise ApiError(ErrorKind.IMPORT_DIR_EXISTS)
            name = self._free_dir_name(name)
        self._move_assets(unpacked, name)
        study = self.state.add_study(
            jas.props.title or "",
            members=[call.username],
            locked=jas.locked,
            dir_name=name,
            assets_root=self.app.site.assets_root,
            study_uuid=jas.props.uuid,
            batch_worker_types=self.p.default_worker_types,
            with_default_batch=not jas.batches,
        )
        apply_study(study, jas.props, active=jas.active)
        for props in jas.components:
            apply_component(self.state.add_component(study, component_uuid=props.uuid), props)
        for b in jas.batches:
            batch = self.state.add_batch(study, batch_uuid=b.uuid)
            apply_batch(batch, b)
        return study

    def _move_assets(self, unpacked: Unpacked, name: str) -> None:
        """`moveStudyAssetsDir`: no root directory → an empty one; one → moved in under
        `name` (3.8/3.9 also "move" a lone root file); more → IO error
        (docs/jatos-api.md §11.5, §11.6)."""
        target = self.app.site.assets_root / name
        if len(unpacked.root_dirs) > 1:
            raise ApiError(
                ErrorKind.IO, detail="There are more than one directory in the ZIP file."
            )
        if target.exists():
            raise ApiError(ErrorKind.IO, detail=_dir_exists_message(name))
        if unpacked.root_dirs:
            shutil.move(str(unpacked.root_dirs[0]), str(target))
        else:
            target.mkdir(parents=True)

    def _dir_exists(self, name: str) -> bool:
        return bool(name) and os.path.lexists(self.app.site.assets_root / name)

    def _free_dir_name(self, name: str) -> str:
        """`findNonExistingStudyAssetsDirName`: name, name_2, name_3, …
        (docs/jatos-api.md §11.3)."""
        candidate, i = name, 2
        while self._dir_exists(candidate):
            candidate = f"{name}_{i}"
            i += 1
        return candidate


def _dir_exists_message(name: str) -> str:
    return f"Study assets' directory ({name}) couldn't be created because it already exists."


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()
