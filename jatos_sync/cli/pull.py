"""`jatos-sync pull`: a study's files downloaded into its mapping's folder
(jatos_sync.pull), with a progress bar and a marked summary line on a terminal.

Must not: delete anything (pull never does), or decide what to download.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TextIO

from jatos_sync.apply import ProgressSink
from jatos_sync.cli.context import Context
from jatos_sync.cli.human import PLAIN, Style, print_pull
from jatos_sync.config import Config
from jatos_sync.errors import EXIT_OK
from jatos_sync.pull import DownloadClient, select_mapping
from jatos_sync.pull import pull as pull_mapping
from jatos_sync.state import StateStore


def pull(ctx: Context) -> int:
    config = ctx.config()
    client, _info = ctx.connect(config)
    try:
        return run(
            ctx.args,
            config=config,
            client=client,
            store=ctx.store(config),
            out=ctx.out,
            progress=ctx.progress(
                enabled=not (ctx.args.json or ctx.args.quiet), label="downloading"
            ),
            style=Style.of(ctx.out, ctx.environ),
        )
    finally:
        client.close()


def run(
    args: argparse.Namespace,
    *,
    config: Config,
    client: DownloadClient,
    store: StateStore,
    out: TextIO,
    progress: ProgressSink | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    stop: threading.Event | None = None,
    style: Style = PLAIN,
) -> int:
    """The `pull` command; returns the exit code (README, "Exit codes") or raises
    JatosSyncError."""
    mapping = select_mapping(config, getattr(args, "mapping", None))
    result = pull_mapping(
        mapping,
        client=client,
        store=store,
        force=bool(getattr(args, "force", False)),
        concurrency=config.server.concurrency,
        progress=progress,
        clock=clock,
        stop=stop,
    )
    if getattr(args, "json", False):
        document = {
            "ok": result.exit_code == EXIT_OK,
            "exit_code": result.exit_code,
            "mappings": [result.to_json()],
        }
        print(json.dumps(document, ensure_ascii=False, indent=2), file=out)
    else:
        print_pull(result, out, style)
    if result.fatal is not None:
        raise result.fatal
    return result.exit_code
