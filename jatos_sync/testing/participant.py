"""`python -m jatos_sync.testing participant …`: play a participant against a running stand-in.

Opens a real study link (`GET <url>/publix/<code>`, which starts a run as in JATOS), then
drives the run through the stand-in's control API (`/_standin/…`, loopback only, not part
of JATOS): start components, write data, upload result files, finish, fail or abort. The
URL and the test token come from `--url`/`--token` or `$JATOS_STANDIN_URL`/`$JATOS_TOKEN`
(what `serve` printed). Prints one JSON document per command on stdout; a refusal by the
server is a one-line message on stderr and exit code 1. Never prints the token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from jatos_sync.testing.codes import STUDY_RESULT_HEADER

_TIMEOUT_S = 30.0


class ParticipantError(Exception):
    """The stand-in refused (or could not be reached); the message says why."""


class Participant:
    """A small client of one running stand-in (`base_url` includes any prefix)."""

    def __init__(self, base_url: str, token: str) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in {"http", "https"}:
            raise ParticipantError(f"the stand-in URL must be http(s), not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"Participant({self.base_url!r})"

    def _request(
        self, method: str, path: str, *, body: bytes | None = None, auth: bool = True
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in __init__
            self.base_url + path, data=body, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ParticipantError(f"cannot reach the stand-in at {self.base_url}: {exc}") from exc

    def _control(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        status, _, data = self._request(method, "/_standin" + path, body=body)
        try:
            answer = json.loads(data.decode("utf-8")) if data else {}
        except ValueError:
            answer = {"error": data.decode("utf-8", "replace")}
        if status != 200:
            raise ParticipantError(f"{status}: {answer.get('error', answer)}")
        if not isinstance(answer, dict):
            raise ParticipantError(f"unexpected answer: {answer!r}")
        return answer

    def open(self, code: str, params: Mapping[str, str] | None = None) -> int:
        """Open the study link; the new study result's ID."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        path = f"/publix/{urllib.parse.quote(code, safe='')}{query}"
        status, headers, data = self._request("GET", path, auth=False)
        srid = next(
            (v for k, v in headers.items() if k.lower() == STUDY_RESULT_HEADER.lower()), None
        )
        if status != 200 or srid is None:
            raise ParticipantError(f"{status}: {data.decode('utf-8', 'replace').strip()}")
        return int(srid)

    def show(self, srid: int) -> dict[str, Any]:
        return self._control("GET", f"/runs/{srid}")

    def start_component(self, srid: int, component: str | None = None) -> dict[str, Any]:
        return self._control("POST", f"/runs/{srid}/start-component", {"component": component})

    def data(self, srid: int, text: str, *, append: bool = False) -> dict[str, Any]:
        return self._control("POST", f"/runs/{srid}/data", {"data": text, "append": append})

    def file(self, srid: int, path: Path, name: str | None = None) -> dict[str, Any]:
        target = urllib.parse.quote(name or path.name, safe="")
        status, _, data = self._request(
            "PUT", f"/_standin/runs/{srid}/files/{target}", body=path.read_bytes()
        )
        if status != 200:
            raise ParticipantError(f"{status}: {data.decode('utf-8', 'replace').strip()}")
        answer: dict[str, Any] = json.loads(data.decode("utf-8"))
        return answer

    def end(self, srid: int, how: str, message: str | None = None) -> dict[str, Any]:
        return self._control("POST", f"/runs/{srid}/{how}", {"message": message})

    def worker_types(self, batch_id: int, types: Sequence[str]) -> dict[str, Any]:
        return self._control("PUT", f"/batches/{batch_id}", {"allowedWorkerTypes": list(types)})


def add_parser(commands: Any) -> None:
    """The `participant` subcommand of `python -m jatos_sync.testing`."""
    parser = commands.add_parser(
        "participant", help="play a participant of a running stand-in (not JATOS's API)"
    )
    parser.add_argument("--url", default=None, help="stand-in base URL ($JATOS_STANDIN_URL)")
    parser.add_argument("--token", default=None, help="test token ($JATOS_TOKEN)")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="open a link, do a whole run, print it")
    run.add_argument("code")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--components", type=int, default=1, help="components to start")
    run.add_argument("--data", default=None, help="result data of the last component")
    run.add_argument("--file", action="append", default=[], type=Path, help="a result file")
    run.add_argument("--end", choices=["finish", "fail", "abort", "none"], default="finish")
    run.add_argument("--message", default=None)
    opener = sub.add_parser("open", help="open a study link; prints the new study result")
    opener.add_argument("code")
    opener.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    for name in ("show", "component", "data", "file", "finish", "fail", "abort"):
        cmd = sub.add_parser(name, help=f"{name} (a run by its study result ID)")
        cmd.add_argument("srid", type=int)
        if name == "component":
            cmd.add_argument("--component", default=None, help="ID or UUID (default: next)")
        elif name == "data":
            cmd.add_argument("text")
            cmd.add_argument("--append", action="store_true")
        elif name == "file":
            cmd.add_argument("path", type=Path)
            cmd.add_argument("--name", default=None)
        elif name in {"finish", "fail", "abort"}:
            cmd.add_argument("--message", default=None)
    types = sub.add_parser("worker-types", help="set a batch's allowed worker types")
    types.add_argument("batch_id", type=int)
    types.add_argument("types", nargs="+")


def _params(items: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParticipantError(f"--param needs KEY=VALUE, not {item!r}")
        params[key] = value
    return params


def _act(client: Participant, args: argparse.Namespace) -> dict[str, Any]:
    action = args.action
    if action == "open":
        return client.show(client.open(args.code, _params(args.param)))
    if action == "run":
        srid = client.open(args.code, _params(args.param))
        for _ in range(args.components):
            client.start_component(srid)
        if args.data is not None:
            client.data(srid, args.data)
        for path in args.file:
            client.file(srid, path)
        if args.end != "none":
            client.end(srid, args.end, args.message)
        return client.show(srid)
    if action == "show":
        return client.show(args.srid)
    if action == "component":
        return client.start_component(args.srid, args.component)
    if action == "data":
        return client.data(args.srid, args.text, append=args.append)
    if action == "file":
        return client.file(args.srid, args.path, args.name)
    if action == "worker-types":
        return client.worker_types(args.batch_id, args.types)
    return client.end(args.srid, action, args.message)


def run(
    args: argparse.Namespace, *, environ: Mapping[str, str], stdout: TextIO, stderr: TextIO
) -> int:
    url = args.url or environ.get("JATOS_STANDIN_URL")
    token = args.token or environ.get("JATOS_TOKEN")
    if not url or not token:
        stderr.write("participant: give --url and --token (or $JATOS_STANDIN_URL, $JATOS_TOKEN)\n")
        return 2
    try:
        answer = _act(Participant(url, token), args)
    except (ParticipantError, OSError) as exc:
        stderr.write(f"participant: {exc}\n")
        return 1
    stdout.write(json.dumps(answer) + "\n")
    return 0


def main_from(args: argparse.Namespace) -> int:
    return run(args, environ=os.environ, stdout=sys.stdout, stderr=sys.stderr)
