"""Study codes and the participant side of the stand-in (docs/jatos-api.md §13).

Owns `GET /studies/{id}/studyCodes` (3.8/3.9), `GET|POST /studies/{id}/studyCodes` and
`GET|PATCH /studyCodes/{code}` (3.10) with each release's parameter rules, and the two
participant pages: `GET /publix/<code>` (opening a link starts a run: a new study result in
state STARTED) and the entry page `GET /publix/run?code=`. The run rules are `runs.py`'s;
this module only answers HTTP and keeps no state of its own.
"""

from __future__ import annotations

import html
from typing import Any

from jatos_sync.testing import wire
from jatos_sync.testing.app import Action, Area, Call
from jatos_sync.testing.personality import ApiError, ErrorKind
from jatos_sync.testing.props import has_html, worker_type
from jatos_sync.testing.runs import RunError
from jatos_sync.testing.state import Batch, Study
from jatos_sync.testing.views import study_link_json
from jatos_sync.testing.wire import Response

_PERSONAL = ("PersonalSingle", "PersonalMultiple")
_GENERAL = ("GeneralSingle", "GeneralMultiple", "MT")
STUDY_RESULT_HEADER = "X-Standin-Study-Result"  # the stand-in's own, not JATOS's


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>\n"
    ).encode()


class CodeActions(Area):
    def actions(self) -> dict[str, Action]:
        return {
            "study_codes": self.study_codes,
            "get_study_code": self.get_study_code,
            "patch_study_code": self.patch_study_code,
            "publix_run": self.publix_run,
            "publix_entry": self.publix_entry,
        }

    # ------------------------------------------------------------------ generating codes

    def study_codes(self, call: Call) -> Response:
        if self.p.codes_api == "classic":
            return self._codes_classic(call)
        return self._codes_310(call)

    def _int_param(self, call: Call, name: str) -> int | None:
        raw = call.query_value(name)
        if raw is None:
            return None
        value = wire.parse_java_long(raw.strip())
        if value is None:  # Play's binder refuses it
            raise ApiError(ErrorKind.BAD_REQUEST, detail=f"Cannot parse parameter {name}")
        return value

    def _codes_classic(self, call: Call) -> Response:
        """3.8/3.9: `type` required; batchId not checked against the study; amount < 1 is 1;
        the comment is URL-decoded; lock ignored (docs/jatos-api.md §13.1)."""
        kind = call.query_value("type")
        if kind is None:
            raise ApiError(ErrorKind.BAD_REQUEST, detail="Missing parameter: type")
        batch_id = self._int_param(call, "batchId")
        amount = self._int_param(call, "amount")
        with self.state.lock:
            study = self.app.study_for(call)
            batch = self._classic_batch(study, batch_id)
            wtype = worker_type(kind)
            if wtype in _PERSONAL:
                raw = call.query_value("comment") or ""
                try:
                    comment = wire.java_url_decode(raw) if raw else ""
                except wire.MalformedEscapeError:
                    raise ApiError(ErrorKind.INTERNAL) from None
                count = max(1 if amount is None else amount, 1)
                codes = [
                    self.state.add_personal_link(batch, wtype, comment).code for _ in range(count)
                ]
            elif wtype in _GENERAL:
                codes = [self.state.general_link(batch, wtype).code]
            else:
                raise ApiError(ErrorKind.BAD_REQUEST_MESSAGE, detail="Unknown worker type")
            return self.app.json_data(codes)

    def _classic_batch(self, study: Study, batch_id: int | None) -> Batch:
        batch = study.default_batch if batch_id is None else self.state.batches.get(batch_id)
        if batch is None:
            raise ApiError(ErrorKind.INTERNAL)  # a null batch → NullPointerException
        return batch

    def _codes_310(self, call: Call) -> Response:
        """3.10: query or JSON body (query wins); type/amount/comment validated; an unknown
        batch is 404 (docs/jatos-api.md §13.2)."""
        body = call.json_body()
        fields = body if isinstance(body, dict) else {}
        batch_id = self._int_param(call, "batchId")
        if batch_id is None:
            batch_id = _json_field(fields, "batchId", int)
        kind = call.query_value("type")
        if kind is None:
            kind = _json_field(fields, "type", str)
        comment = call.query_value("comment")
        if comment is None:
            comment = _json_field(fields, "comment", str)
        amount = self._int_param(call, "amount")
        if amount is None:
            amount = _json_field(fields, "amount", int)
        with self.state.lock:
            study = self.app.study_for(call)
            batch = (
                self.state.batches.get(batch_id) if batch_id is not None else study.default_batch
            )
            if batch is None:
                raise ApiError(ErrorKind.NOT_FOUND, detail="Batch doesn't exist.")
            self.app.check_access(self.state.studies[batch.study_id], call)
            wtype = worker_type(kind)
            if kind is not None and wtype is None:
                raise ApiError(ErrorKind.VALIDATION, detail="Unknown type")
            count = 1 if amount is None else amount
            problem = _code_props_error(wtype, comment, count)
            if problem is not None:
                raise ApiError(ErrorKind.VALIDATION, detail=problem)
            assert wtype is not None
            if wtype in _PERSONAL:
                codes = [
                    self.state.add_personal_link(batch, wtype, comment).code for _ in range(count)
                ]
            elif wtype in _GENERAL:
                codes = [self.state.general_link(batch, wtype).code]
            else:  # Jatos, MTSandbox
                raise ApiError(ErrorKind.BAD_REQUEST_MESSAGE, detail="Unknown type")
            return self.app.json_data(codes)

    # ------------------------------------------------------------------ one code (3.10)

    def _link(self, call: Call) -> Any:
        link = self.state.links.get(call.segment("code"))
        if link is None:
            raise ApiError(ErrorKind.NOT_FOUND, detail="Study code doesn't exist.")
        batch = self.state.batches[link.batch_id]
        self.app.check_access(self.state.studies[batch.study_id], call)
        return link

    def _link_json(self, link: Any) -> dict[str, Any]:
        worker = self.state.workers.get(link.worker_id) if link.worker_id is not None else None
        try:
            return study_link_json(link, worker, self.app.prefix + "/")
        except LookupError:
            # A general code has no worker, and JATOS's handler needs one (views.py).
            raise ApiError(ErrorKind.INTERNAL) from None

    def get_study_code(self, call: Call) -> Response:
        with self.state.lock:
            return self.app.json_data(self._link_json(self._link(call)))

    def patch_study_code(self, call: Call) -> Response:
        """`{"active": false}` deactivates a link; lock not checked (docs/jatos-api.md §13.2)."""
        body = call.json_body()
        with self.state.lock:
            link = self._link(call)
            if not isinstance(body, dict) or "active" not in body:
                raise ApiError(ErrorKind.INVALID_REQUEST, detail="Missing active field")
            active = body["active"]
            if isinstance(active, int) and not isinstance(active, bool):
                active = active != 0
            if not isinstance(active, bool):
                raise ApiError(
                    ErrorKind.INVALID_REQUEST, detail="'active' field must be of type Boolean"
                )
            link.active = active
            return self.app.json_data(self._link_json(link))

    # ------------------------------------------------------------------ participants

    def publix_run(self, call: Call) -> Response:
        """Opening a link: 400 unknown code, 403 inactive link/study/batch or a worker type
        the batch does not allow, else a study result in state STARTED and a page."""
        code = call.segment("code")
        query = dict(call.query())
        try:
            result = self.app.runs.open_link(code, query)
        except RunError as exc:
            return _publix_error(call, exc)
        page = _page(
            "JATOS",
            f'<div id="study-run" data-study-result-id="{result.id}" '
            f'data-study-result-uuid="{result.uuid}">Study run started.</div>',
        )
        response = wire.html_response(200, page)
        response.headers.append((STUDY_RESULT_HEADER, str(result.id)))
        return response

    def publix_entry(self, call: Call) -> Response:
        """The study entry page: always 200, with the code's validity (docs/jatos-api.md §13.3)."""
        code = call.query_value("code") or ""
        valid, message, entry_msg = False, "", ""
        if code:
            with self.state.lock:
                link = self.state.links.get(code)
                if link is None:
                    message = "No valid study code"
                else:
                    valid = True
                    study = self.state.studies[self.state.batches[link.batch_id].study_id]
                    entry_msg = study.study_entry_msg or ""
                    started = [
                        sr for sr in self.app.runs.results_of_link(link) if sr.state != "PRE"
                    ]
                    if link.worker_type == "PersonalSingle" and started:
                        valid, message = False, "This study link is valid only once."
        body = (
            f'<div id="study-entry" data-valid="{str(valid).lower()}">'
            f"<p>{html.escape(entry_msg)}</p><p>{html.escape(message)}</p>"
        )
        if valid:
            body += f'<a href="{html.escape(self.app.prefix)}/publix/{html.escape(code)}">▶</a>'
        return wire.html_response(200, _page("JATOS", body + "</div>"))


def _json_field(fields: dict[str, Any], name: str, kind: type) -> Any:
    """3.10 `getFieldFromJson`: absent → None; a value of the wrong type → 400."""
    if name not in fields or fields[name] is None:
        return None
    value = fields[name]
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, (str, int, float, bool)):
        return value if isinstance(value, str) else str(value)
    type_name = "Long" if name == "batchId" else ("Integer" if kind is int else "String")
    raise ApiError(ErrorKind.INVALID_REQUEST, detail=f"'{name}' field must be of type {type_name}")


def _code_props_error(wtype: str | None, comment: str | None, amount: int) -> str | None:
    """`StudyCodeProperties.validate` (first error, as `validateProps` reports it)."""
    if wtype is None:
        return "Error in field 'type' - Invalid type"
    if comment is not None and len(comment) > 255:
        return "Error in field 'comment' - Comment too long"
    if has_html(comment):
        return "Error in field 'comment' - No HTML allowed"
    if amount <= 0 or amount > 1000:
        return "Error in field 'amount' - Amount must be > 0 and <= 1000"
    return None


def _publix_error(call: Call, exc: RunError) -> Response:
    """Publix errors: an HTML page for browsers, the plain message otherwise."""
    accept = (call.req.header("Accept") or "").lower()
    if "text/html" in accept:
        return wire.html_response(
            exc.status, _page("JATOS error", f"<h1>{html.escape(exc.message)}</h1>")
        )
    return Response(
        exc.status, [("Content-Type", "text/plain; charset=utf-8")], exc.message.encode()
    )
