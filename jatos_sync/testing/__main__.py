"""`python -m jatos_sync.testing serve …`: run a stand-in JATOS server from the shell.

Prints one JSON line `{"url", "token", "study_id", "study_uuid"}` to stdout (this is a
*test* server: printing its freshly minted test token is intended), then serves until
SIGINT/SIGTERM and exits 0. Binds to loopback unless told otherwise.
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

from jatos_sync.testing.personality import PERSONALITIES
from jatos_sync.testing.server import StandInServer


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
    return parser


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    args = _parser().parse_args(argv)
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
        assert server.study is not None
        line = {
            "url": server.url,
            "token": server.token,
            "study_id": server.study.id,
            "study_uuid": server.study.uuid,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        while not stop_event.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
