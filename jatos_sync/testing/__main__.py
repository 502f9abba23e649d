"""`python -m jatos_sync.testing serve|participant …`: the stand-in from the shell.

`serve` prints one JSON line `{"url", "token", "study_id", "study_uuid", "batch_id",
"component_ids", "study_code", "study_link", "personality", "api_version"}` to stdout (this
is a *test* server: printing its freshly minted test token is intended), then serves until
SIGINT/SIGTERM and exits 0. Binds to loopback unless told otherwise. `participant` plays a
participant of a running `serve` (see `participant.py`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from jatos_sync.testing import participant
from jatos_sync.testing.personality import PERSONALITIES
from jatos_sync.testing.props import worker_type
from jatos_sync.testing.server import StandInServer


def _worker_type(name: str) -> str:
    if worker_type(name) is None:
        raise argparse.ArgumentTypeError(f"unknown worker type {name!r}")
    return name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jatos_sync.testing", description="JATOS stand-in server for tests"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve until SIGINT/SIGTERM")
    serve.add_argument("--personality", choices=sorted(PERSONALITIES), default="3.10")
    serve.add_argument("--port", type=int, default=0, help="0 = any free port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--prefix", default="", help='URL path prefix, e.g. "/jatos-prefix"')
    serve.add_argument("--data", type=Path, default=None, help="data dir (default: temp dir)")
    serve.add_argument("--study-title", default="Test study")
    serve.add_argument("--user", default="alice")
    serve.add_argument(
        "--components", type=int, default=1, help="components of the study (index.html, …)"
    )
    serve.add_argument(
        "--worker-types",
        nargs="+",
        type=_worker_type,
        default=None,
        metavar="TYPE",
        help="allowed worker types of the default batch (e.g. ps pm gs gm)",
    )
    participant.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "participant":
        return participant.main_from(args)
    stop_event = stop or threading.Event()
    if stop is None:

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop_event.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    server = StandInServer(
        personality=args.personality,
        data_dir=args.data,
        prefix=args.prefix,
        host=args.host,
        port=args.port,
    )
    with server:
        server.populate(args.user, study_title=args.study_title)
        study = server.study
        assert study is not None and study.default_batch is not None
        components = [
            server.add_component(study, f"Component {i}", html_file_path=f"component_{i}.html")
            for i in range(1, args.components + 1)
        ]
        if args.worker_types:
            server.set_allowed_worker_types(study, args.worker_types)
        code = server.study_link(study, "PersonalMultiple")
        line = {
            "url": server.url,
            "token": server.token,
            "study_id": study.id,
            "study_uuid": study.uuid,
            "batch_id": study.default_batch.id,
            "component_ids": [c.id for c in components],
            "study_code": code,
            "study_link": server.link_url(code),
            "personality": server.personality.name,
            "api_version": server.api_version,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        while not stop_event.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
