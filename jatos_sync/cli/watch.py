"""`jatos-sync watch`: the daemon (jatos_sync.daemon.supervisor), with a greeting on the
terminal once it is ready: which folders it watches, for which studies, on which server.

Must not: run passes itself, or import the daemon before the command runs (watchdog is
imported only here).
"""

from __future__ import annotations

from jatos_sync.cli.context import Context
from jatos_sync.cli.human import shown
from jatos_sync.errors import JatosSyncError
from jatos_sync.sentences import GREETING


def watch(ctx: Context) -> int:
    from jatos_sync.daemon import supervisor

    GREETING.set(greeting(ctx))
    try:
        return supervisor.run(
            ctx.args,
            config_path=ctx.config_path,
            environ=ctx.environ,
            client_factory=ctx.client_factory,
        )
    finally:
        GREETING.set(None)


def greeting(ctx: Context) -> str | None:
    """`Watching /home/ann/stroop → study 42 on https://jatos.example.org`, or None when
    the configuration cannot be read (the daemon then says why)."""
    try:
        config = ctx.config()
        mappings = config.select(ctx.args.mappings)
    except JatosSyncError:
        return None
    where = [f"{shown(m.folder)} → study {shown(m.study)}" for m in mappings]
    if len(where) == 1:
        return f"Watching {where[0]} on {config.server.url}"
    return f"Watching {len(where)} folders on {config.server.url}: {'; '.join(where)}"
