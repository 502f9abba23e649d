"""`jatos-sync watch`: the daemon (jatos_sync.daemon.supervisor), with a greeting on the
terminal once it is ready: which folders it watches, for which studies, on which server.

Must not: run passes itself, or import the daemon before the command runs (watchdog is
imported only here).
"""

from __future__ import annotations

from collections.abc import Sequence

from jatos_sync.cli.context import Context
from jatos_sync.cli.human import shown
from jatos_sync.config import Config, MappingConfig
from jatos_sync.sentences import GREETING


def watch(ctx: Context) -> int:
    from jatos_sync.daemon import supervisor

    config = ctx.config()  # a broken one: exit 2, before anything runs
    GREETING.set(greeting(config, config.select(ctx.args.mappings)))
    try:
        return supervisor.run(
            ctx.args,
            config=config,
            environ=ctx.environ,
            client_factory=ctx.client_factory,
        )
    finally:
        GREETING.set(None)


def greeting(config: Config, mappings: Sequence[MappingConfig]) -> str:
    """`Watching /home/ann/stroop → study 42 on https://jatos.example.org`."""
    where = [f"{shown(m.folder)} → study {shown(m.study)}" for m in mappings]
    if len(where) == 1:
        return f"Watching {where[0]} on {config.server.url}"
    return f"Watching {len(where)} folders on {config.server.url}: {'; '.join(where)}"
