"""Component and batch endpoints of the stand-in (docs/jatos-api.md §12, §10.5).

Owns the actions of 3.9.7+'s `POST /studies/{id}/components/create` and
`DELETE /studies/{id}/components/{cid}`, 3.10's component set (create, list, get, patch
with `htmlFileRename` and the null-path edge, delete) and 3.10's batch set. Deleting a
component or batch deletes its results. New components are appended; no endpoint reorders.
It keeps no state of its own and touches the disk only to move a component's HTML file.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from jatos_sync.testing import wire
from jatos_sync.testing.app import Action, Area, Call, raise_first_error
from jatos_sync.testing.personality import ApiError, ErrorKind
from jatos_sync.testing.props import (
    BatchProps,
    BindError,
    ComponentProps,
    apply_batch,
    apply_component,
    batch_errors,
    batch_props,
    bind,
    component_errors,
)
from jatos_sync.testing.state import Batch, Component, Study
from jatos_sync.testing.views import batch_json, component_json
from jatos_sync.testing.wire import Response


class ComponentActions(Area):
    def actions(self) -> dict[str, Action]:
        return {
            "create_component_39": self.create_39,
            "delete_component_39": self.delete_39,
            "create_component": self.create,
            "list_components": self.list_components,
            "get_component": self.get,
            "patch_component": self.patch,
            "delete_component": self.delete,
            "create_batch": self.create_batch,
            "list_batches": self.list_batches,
            "get_batch": self.get_batch,
            "patch_batch": self.patch_batch,
            "delete_batch": self.delete_batch,
        }

    # ------------------------------------------------------------------ helpers

    def _component(self, call: Call, *, unlocked: bool = False) -> Component:
        """`getComponentFromIdOrUuid` + `canUserAccessComponent` (docs/jatos-api.md §12)."""
        ref = call.segment("cid")
        cid = wire.parse_java_long(wire.java_trim(ref))
        component = self.state.components.get(cid) if cid is not None else None
        if cid is None:
            component = self.state.component_by_uuid(ref)
        if component is None:
            if self.p.json_model == "classic":
                what = "ID" if cid is not None else "UUID"
                raise ApiError(
                    ErrorKind.NOT_FOUND, detail=f"Couldn't find component with {what} {ref}"
                )
            raise ApiError(ErrorKind.NOT_FOUND, detail="Component doesn't exist.")
        self.app.check_access(self.state.studies[component.study_id], call, unlocked=unlocked)
        return component

    def _batch(self, call: Call, *, unlocked: bool = False) -> Batch:
        ref = call.segment("bid")
        bid = wire.parse_java_long(wire.java_trim(ref))
        batch = self.state.batches.get(bid) if bid is not None else self.state.batch_by_uuid(ref)
        if batch is None:
            raise ApiError(ErrorKind.NOT_FOUND, detail="Batch doesn't exist.")
        self.app.check_access(self.state.studies[batch.study_id], call, unlocked=unlocked)
        return batch

    def _remove_component(self, component: Component) -> None:
        removed = self.state.remove_component(component)
        self.app.runs.remove_files(removed)

    # ------------------------------------------------------------------ 3.9.7+

    def create_39(self, call: Call) -> Response:
        """Lenient binding; `active` ignored (always true); 200 `{uuid, id}`
        (docs/jatos-api.md §12.1)."""
        with self.state.lock:
            study = self.app.study_for(call, unlocked=True)
            body = call.json_body()
            if not isinstance(body, dict):
                raise ApiError(ErrorKind.INTERNAL)  # asJson() null → NullPointerException
            try:
                props: ComponentProps = bind(
                    "component", body, ComponentProps(), strict=False, aliases=False
                )
            except BindError as exc:
                raise ApiError(ErrorKind.IO, detail=exc.message) from None
            raise_first_error(component_errors(props, self.p), with_field=False)
            props.active = True
            component = self.state.add_component(study)
            apply_component(component, props)
            return self.app.json(200, {"uuid": component.uuid, "id": component.id})

    def delete_39(self, call: Call) -> Response:
        """`{id}` must name the component's study by ID or UUID, exactly
        (docs/jatos-api.md §12.1)."""
        with self.state.lock:
            component = self._component(call, unlocked=True)
            study = self.state.studies[component.study_id]
            if call.study_ref not in {str(study.id), study.uuid}:
                raise ApiError(ErrorKind.FORBIDDEN, detail="Component does not belong to study")
            self._remove_component(component)
        return Response(200)

    # ------------------------------------------------------------------ 3.10 components

    def _component_json(self, component: Component) -> dict[str, Any]:
        return component_json(component, self.p)

    def create(self, call: Call) -> Response:
        with self.state.lock:
            study = self.app.study_for(call, unlocked=True)
            body = call.json_object("componentInput")
            try:
                props: ComponentProps = bind(
                    "component", body, ComponentProps(), strict=True, aliases=True
                )
            except BindError as exc:
                raise ApiError(ErrorKind.INVALID_JSON, detail=exc.message) from None
            raise_first_error(component_errors(props, self.p))
            component = self.state.add_component(study)
            apply_component(component, props)
            return self.app.json_data(self._component_json(component))  # 200, not 201

    def list_components(self, call: Call) -> Response:
        with self.state.lock:
            study = self.app.study_for(call)
            return self.app.json_data([self._component_json(c) for c in study.components])

    def get(self, call: Call) -> Response:
        with self.state.lock:
            return self.app.json_data(self._component_json(self._component(call)))

    def patch(self, call: Call) -> Response:
        with self.state.lock:
            component = self._component(call, unlocked=True)
            body = call.json_object("componentInput")
            current = ComponentProps(
                uuid=component.uuid,
                title=component.title,
                html_file_path=component.html_file_path,
                reloadable=component.reloadable,
                active=component.active,
                comments=component.comments,
                input=component.input,
            )
            try:
                props: ComponentProps = bind("component", body, current, strict=True, aliases=True)
            except BindError as exc:
                raise ApiError(ErrorKind.VALIDATION, detail=f"Error in field '{exc.key}'") from None
            raise_first_error(component_errors(props, self.p))
            study = self.state.studies[component.study_id]
            self._rename_html(study, component, props)
            html_path = component.html_file_path
            apply_component(component, props)
            component.html_file_path = html_path  # set by the rename step only
            return self.app.json_data(self._component_json(component))

    def _rename_html(self, study: Study, component: Component, props: ComponentProps) -> None:
        """`renameHtmlFilePath`: blank → ""; a stored null path cannot be replaced (a
        NullPointerException, docs/jatos-api.md §12.2); with `htmlFileRename` the file moves too."""
        new = props.html_file_path
        if new is None or not new.strip():
            component.html_file_path = ""
            return
        old = component.html_file_path
        if old is None:
            raise ApiError(ErrorKind.INTERNAL)
        current = study.assets_dir / old if old.strip() else None
        if current is None or not current.exists():
            component.html_file_path = new
            return
        if props.html_file_rename and new != old:
            target = study.assets_dir / new
            if os.path.lexists(target):
                raise ApiError(
                    ErrorKind.IO, detail=f"Could not rename {old} to {new}: target exists"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(current), str(target))
        component.html_file_path = new

    def delete(self, call: Call) -> Response:
        with self.state.lock:
            self._remove_component(self._component(call, unlocked=True))
        return self.app.json_message(200, "Component deleted successfully")

    # ------------------------------------------------------------------ 3.10 batches

    def create_batch(self, call: Call) -> Response:
        with self.state.lock:
            study = self.app.study_for(call, unlocked=True)
            body = call.json_object("batchInput")
            try:
                props: BatchProps = bind("batch", body, BatchProps(), strict=True, aliases=True)
            except BindError as exc:
                raise ApiError(ErrorKind.INVALID_JSON, detail=exc.message) from None
            raise_first_error(batch_errors(props, self.p))
            batch = self.state.add_batch(study)
            apply_batch(batch, props)
            return self.app.json_data(batch_json(batch, self.p))  # 200, not 201

    def list_batches(self, call: Call) -> Response:
        with self.state.lock:
            study = self.app.study_for(call)
            return self.app.json_data([batch_json(b, self.p) for b in study.batches])

    def get_batch(self, call: Call) -> Response:
        with self.state.lock:
            return self.app.json_data(batch_json(self._batch(call), self.p))

    def patch_batch(self, call: Call) -> Response:
        """Partial update; `allowedWorkerTypes` is replaced wholesale (docs/jatos-api.md §10.5)."""
        with self.state.lock:
            batch = self._batch(call, unlocked=True)
            body = call.json_object("batchInput")
            try:
                props: BatchProps = bind(
                    "batch", body, batch_props(batch), strict=True, aliases=True
                )
            except BindError as exc:
                raise ApiError(ErrorKind.VALIDATION, detail=f"Error in field '{exc.key}'") from None
            raise_first_error(batch_errors(props, self.p))
            apply_batch(batch, props)
            return self.app.json_data(batch_json(batch, self.p))

    def delete_batch(self, call: Call) -> Response:
        """Results, links and workers of the batch go; even the default batch
        (docs/jatos-api.md §10.5)."""
        with self.state.lock:
            batch = self._batch(call, unlocked=True)
            removed = self.state.remove_batch(batch)
        self.app.runs.remove_files(removed)
        return self.app.json_message(200, "Batch deleted successfully")
