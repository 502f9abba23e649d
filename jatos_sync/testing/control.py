"""The stand-in's own control API under `/_standin/` — NOT part of JATOS.

Lets a test or `python -m jatos_sync.testing participant` play a participant whose run was
started by opening a real study link (`GET /publix/<code>`): start components, write or
append result data, upload result files, finish, fail or abort; and change a batch's
allowed worker types, as JATOS's GUI can in every version. Answers only requests from a
loopback address that carry a valid token of the stand-in (any role). Bodies and tokens
are never logged.

    GET  /_standin/runs/<srid>                      the run as JSON
    POST /_standin/runs/<srid>/start-component      {"component": <id or uuid>} (optional)
    POST /_standin/runs/<srid>/data                 {"data": "...", "append": false}
    PUT  /_standin/runs/<srid>/files/<name>         raw bytes of a result file
    POST /_standin/runs/<srid>/finish | fail | abort | heartbeat   {"message": "..."}
    PUT  /_standin/batches/<bid>                    {"allowedWorkerTypes": ["gs", ...]}
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from jatos_sync.testing.app import Action, Area, Call
from jatos_sync.testing.personality import ApiError
from jatos_sync.testing.props import worker_type
from jatos_sync.testing.runs import RunError
from jatos_sync.testing.state import StudyResult, now_ms
from jatos_sync.testing.wire import Response


def run_json(sr: StudyResult) -> dict[str, Any]:
    """A run as the control API shows it (IDs, states, data sizes)."""
    return {
        "id": sr.id,
        "uuid": sr.uuid,
        "studyId": sr.study_id,
        "batchId": sr.batch_id,
        "workerId": sr.worker_id,
        "workerType": sr.worker_type,
        "studyCode": sr.study_code,
        "state": sr.state,
        "componentResults": [
            {
                "id": cr.id,
                "componentId": cr.component_id,
                "state": cr.state,
                "dataSize": None if cr.data is None else len(cr.data),
            }
            for cr in sr.component_results
        ],
    }


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class ControlActions(Area):
    def actions(self) -> dict[str, Action]:
        return {
            "control_get": self._guarded(self.get_run),
            "control_post": self._guarded(self.post),
            "control_file": self._guarded(self.put_file),
            "control_batch": self._guarded(self.put_batch),
        }

    def _guarded(self, action: Action) -> Action:
        def run(call: Call) -> Response:
            if not _is_loopback(call.req.client_host):
                return _error(403, "the stand-in's control API answers loopback clients only")
            try:
                found = self.app.token_user(call.req, None)
            except ApiError:
                found = None
            if found is None:
                return _error(401, "a valid token of this stand-in is required")
            try:
                return action(call)
            except RunError as exc:
                return _error(exc.status, exc.message)
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, f"bad request: {exc}")

        return run

    def _body(self, call: Call) -> dict[str, Any]:
        if not call.body.data:
            return {}
        body = json.loads(call.body.data.decode("utf-8"))
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _answer(self, sr: StudyResult) -> Response:
        with self.state.lock:
            return _json(200, run_json(sr))

    def get_run(self, call: Call) -> Response:
        return self._answer(self.app.runs.study_result(int(call.segment("srid"))))

    def post(self, call: Call) -> Response:
        runs = self.app.runs
        srid = int(call.segment("srid"))
        verb = call.segment("verb")
        body = self._body(call)
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            raise ValueError("message must be a string")
        if verb == "start-component":
            runs.start_component(srid, body.get("component"))
        elif verb == "data":
            text = body.get("data")
            if not isinstance(text, str):
                raise ValueError("data must be a string")
            runs.put_data(srid, text, append=body.get("append") is True)
        elif verb == "finish":
            runs.finish(srid, message=message)
        elif verb == "fail":
            runs.finish(srid, successful=False, message=message)
        elif verb == "abort":
            runs.abort(srid, message)
        elif verb == "heartbeat":
            with self.state.lock:
                runs.study_result(srid).last_seen_ms = now_ms()
        else:
            return _error(404, f"unknown action {verb!r}")
        return self._answer(runs.study_result(srid))

    def put_file(self, call: Call) -> Response:
        srid = int(call.segment("srid"))
        part = call.part
        self.app.runs.add_file(srid, call.segment("filename"), part.tmp_path if part else b"")
        return self._answer(self.app.runs.study_result(srid))

    def put_batch(self, call: Call) -> Response:
        types = self._body(call).get("allowedWorkerTypes")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ValueError("allowedWorkerTypes must be a list of worker types")
        normalised = [worker_type(t) for t in types]
        if None in normalised:
            raise ValueError(f"unknown worker type in {types}")
        with self.state.lock:
            batch = self.state.batches.get(int(call.segment("bid")))
            if batch is None:
                return _error(404, "no such batch")
            batch.allowed_worker_types = {t for t in normalised if t is not None}
            return _json(
                200, {"id": batch.id, "allowedWorkerTypes": sorted(batch.allowed_worker_types)}
            )


def _json(status: int, payload: Any) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(status, [("Content-Type", "application/json")], body)


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})
