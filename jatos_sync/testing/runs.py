"""Participant runs on the stand-in: opening a study link, component results, result data
and files, finishing, aborting, failing, and deleting results (docs/jatos-api.md §13, §14).

Owns the run rules JATOS applies (who may start a run from which link, what "the current
component result" is, that an abort purges the data and files of every component result
of the run) and the result files on disk
(`<uploads_root>/study_result_<srid>/comp-result_<crid>/<name>`). Used by the publix
endpoints, the control API and `StandInServer`'s Python API alike. Raises `RunError`
(status + JATOS's message); knows nothing about HTTP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from jatos_sync.testing.state import (
    COMPONENT_DONE,
    Component,
    ComponentResult,
    JatosState,
    StudyLink,
    StudyResult,
    now_ms,
)


class RunError(Exception):
    """A participant action JATOS refuses: `status` 400/403/404 and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _safe_name(name: str) -> str:
    """A result file name: one path element (JATOS's `getResultUploadFileSecurely`)."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
        raise RunError(400, f"Invalid filename: {name!r}")
    return name


class Runs:
    """Run operations over a `JatosState`; result files below `uploads_root()`."""

    def __init__(self, state: JatosState, uploads_root: Callable[[], Path]) -> None:
        self._state = state
        self._uploads_root = uploads_root

    # ------------------------------------------------------------------ files

    def upload_dir(self, srid: int, crid: int) -> Path:
        return self._uploads_root() / f"study_result_{srid}" / f"comp-result_{crid}"

    def remove_files(self, results: Iterable[ComponentResult]) -> None:
        """Delete the upload directories of these component results (and emptied parents)."""
        for cr in results:
            crdir = self.upload_dir(cr.study_result_id, cr.id)
            shutil.rmtree(crdir, ignore_errors=True)
            # Other component results may still have files there.
            with contextlib.suppress(OSError):
                crdir.parent.rmdir()

    # ------------------------------------------------------------------ starting

    def open_link(self, code: str, query: Mapping[str, str]) -> StudyResult:
        """What `GET /publix/<code>` does before the first component starts
        (docs/jatos-api.md §13.3)."""
        state = self._state
        with state.lock:
            link = state.links.get(code)
            if link is None:
                raise RunError(400, "No valid study link")
            if not link.active:
                raise RunError(403, "This study link is inactive")
            batch = state.batches[link.batch_id]
            study = state.studies[batch.study_id]
            if not study.active:
                raise RunError(403, f"The study (ID: {study.id}) was deactivated by an admin.")
            if not batch.active:
                raise RunError(403, f"The batch (ID: {batch.id}) is inactive.")
            if link.worker_type not in batch.allowed_worker_types:
                raise RunError(
                    403,
                    f"It's not allowed to run this study (ID: {study.id}) in this batch "
                    f'(ID: {batch.id}) with a worker of type "{link.worker_type}".',
                )
            if link.worker_type == "PersonalSingle" and self.results_of_link(link):
                raise RunError(403, "Study can be done only once.")
            limit = batch.max_total_workers
            if limit is not None and self._workers_in_batch(batch.id) >= limit:
                raise RunError(
                    403,
                    f"For the batch (ID: {batch.id}) the maximum number of workers is "
                    "already reached.",
                )
            if link.worker_id is not None:
                worker = state.workers[link.worker_id]
            else:
                worker = state.add_worker(link.worker_type)
            result = state.add_study_result(link, worker, at_ms=now_ms())
            result.url_query_parameters = dict(query)
            return result

    def results_of_link(self, link: StudyLink) -> list[StudyResult]:
        with self._state.lock:
            return [sr for sr in self._state.study_results.values() if sr.study_code == link.code]

    def _workers_in_batch(self, batch_id: int) -> int:
        return len(
            {
                sr.worker_id
                for sr in self._state.study_results.values()
                if sr.batch_id == batch_id and sr.worker_type != "Jatos"
            }
        )

    # ------------------------------------------------------------------ during a run

    def study_result(self, srid: int) -> StudyResult:
        with self._state.lock:
            sr = self._state.study_results.get(srid)
            if sr is None:
                raise RunError(404, f"Study result {srid} doesn't exist.")
            return sr

    def _running(self, srid: int) -> StudyResult:
        sr = self.study_result(srid)
        if sr.done:
            raise RunError(403, f"Study result {srid} is already finished ({sr.state}).")
        sr.last_seen_ms = now_ms()
        return sr

    def current(self, sr: StudyResult) -> ComponentResult | None:
        """The last component result if it is not done (`retrieveCurrentComponentResult`)."""
        last = sr.component_results[-1] if sr.component_results else None
        return last if last is not None and last.state not in COMPONENT_DONE else None

    def start_component(self, srid: int, component_ref: str | int | None) -> ComponentResult:
        """Start a component (the first active one after the current by default): the
        current one ends FINISHED, or RELOADED when the same reloadable one starts again; a
        non-reloadable reload fails the component and the run (docs/jatos-api.md §14.7)."""
        state = self._state
        with state.lock:
            sr = self._running(srid)
            study = state.studies[sr.study_id]
            component = self._pick_component(sr, study.components, component_ref)
            if not component.active:
                raise RunError(
                    403,
                    f"Component with ID {component.id} in study with ID {study.id} is not active.",
                )
            now = now_ms()
            last = self.current(sr)
            if last is not None:
                if last.component_id != component.id:
                    self._end(last, "FINISHED", now)
                elif component.reloadable:
                    self._end(last, "RELOADED", now)
                else:
                    self._end(last, "FAIL", now)
                    self._finish(sr, successful=False, message=None, now=now)
                    raise RunError(
                        403,
                        f"It's not allowed to reload this component (ID: {component.id}). "
                        f"Study (ID: {study.id}) is finished.",
                    )
            return state.add_component_result(sr, component, at_ms=now)

    def _pick_component(
        self, sr: StudyResult, components: list[Component], ref: str | int | None
    ) -> Component:
        if ref is None:
            last = sr.component_results[-1].component_id if sr.component_results else None
            ids = [c.id for c in components]
            start = ids.index(last) + 1 if last in ids else 0
            for component in components[start:]:
                if component.active:
                    return component
            raise RunError(403, f"The study with ID {sr.study_id} has no active components.")
        for component in components:
            if str(ref) in {str(component.id), component.uuid}:
                return component
        raise RunError(404, f"An component with ID {ref} of study {sr.study_id} doesn't exist.")

    def _current_or_error(self, sr: StudyResult) -> ComponentResult:
        current = self.current(sr)
        if current is None:
            raise RunError(403, f"Study result {sr.id} has no running component result.")
        return current

    def put_data(self, srid: int, text: str, *, append: bool = False) -> ComponentResult:
        """Replace (PUT) or append to (POST) the current component result's data
        (docs/jatos-api.md §14.7)."""
        with self._state.lock:
            sr = self._running(srid)
            cr = self._current_or_error(sr)
            cr.data = (cr.data or "") + text if append else text
            return cr

    def add_file(self, srid: int, filename: str, source: Path | bytes) -> ComponentResult:
        """Store an uploaded result file for the current component result (replacing one of
        the same name)."""
        name = _safe_name(filename)
        with self._state.lock:
            sr = self._running(srid)
            cr = self._current_or_error(sr)
            target = self.upload_dir(sr.id, cr.id) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{uuid.uuid4().hex}")
            if isinstance(source, bytes):
                tmp.write_bytes(source)
            else:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            return cr

    # ------------------------------------------------------------------ ending

    def finish(
        self, srid: int, *, successful: bool = True, message: str | None = None
    ) -> StudyResult:
        """`finishStudyResult`: FINISHED with a confirmation code, or FAIL
        (docs/jatos-api.md §14.7)."""
        with self._state.lock:
            sr = self._running(srid)
            self._finish(sr, successful=successful, message=message, now=now_ms())
            return sr

    def _finish(self, sr: StudyResult, *, successful: bool, message: str | None, now: int) -> None:
        current = self.current(sr)
        if current is not None:
            self._end(current, "FINISHED" if successful else "FAIL", now)
        for cr in sr.component_results:
            if cr.state not in COMPONENT_DONE:
                self._end(cr, "FINISHED", now)
        sr.state = "FINISHED" if successful else "FAIL"
        sr.confirmation_code = str(uuid.uuid4()) if successful else None
        sr.message = message
        sr.end_ms = now

    def abort(self, srid: int, message: str | None = None) -> StudyResult:
        """`abortStudy`: every component result of the run ABORTED with its data and files
        purged, including ones that had finished (docs/jatos-api.md §14.7)."""
        with self._state.lock:
            sr = self._running(srid)
            now = now_ms()
            current = self.current(sr)
            if current is not None:
                self._end(current, "ABORTED", now)
            for cr in sr.component_results:
                if cr.state not in COMPONENT_DONE:
                    self._end(cr, "FINISHED", now)
                cr.data = None
                cr.state = "ABORTED"
            shutil.rmtree(self._uploads_root() / f"study_result_{sr.id}", ignore_errors=True)
            sr.state = "ABORTED"
            sr.message = message
            sr.end_ms = now
            return sr

    @staticmethod
    def _end(cr: ComponentResult, state: str, now: int) -> None:
        cr.state = state
        cr.end_ms = now

    # ------------------------------------------------------------------ deleting

    def delete(self, results: Iterable[ComponentResult]) -> None:
        """Delete component results with their files; emptied study results go too."""
        doomed = list(results)
        with self._state.lock:
            self._state.remove_component_results(doomed)
        self.remove_files(doomed)
