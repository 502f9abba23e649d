"""`jatos-sync pull`: a study's files downloaded into its mapping's folder
(jatos_sync.pull), with a progress bar and a marked summary line on a terminal.

Must not: delete anything (pull never does), or decide what to download.
"""

from __future__ import annotations

from jatos_sync import pull as pulling
from jatos_sync.cli.context import Context
from jatos_sync.cli.human import Style


def pull(ctx: Context) -> int:
    config = ctx.config()
    client, _info = ctx.connect(config)
    try:
        return pulling.run(
            ctx.args,
            config=config,
            client=client,
            store=ctx.store(config),
            out=ctx.out,
            progress=ctx.progress(
                enabled=not (ctx.args.json or ctx.args.quiet), label="downloading"
            ),
            mark=Style.of(ctx.out, ctx.environ).head,
        )
    finally:
        client.close()
