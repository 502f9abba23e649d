"""`jatos-sync export` and `jatos-sync links`: the study as a .jzip archive
(jatos_sync.export) and links for participants (jatos_sync.codes).

Must not: change the study (neither command does).
"""

from __future__ import annotations

from jatos_sync.cli.context import Context


def export(ctx: Context) -> int:
    from jatos_sync import export as exporting

    config = ctx.config()
    client, _info = ctx.connect(config)
    with client:
        return exporting.run(ctx.args, config=config, client=client, out=ctx.out)


def links(ctx: Context) -> int:
    from jatos_sync import codes

    config = ctx.config()
    client, _info = ctx.connect(config)
    with client:
        return codes.run(ctx.args, config=config, client=client, out=ctx.out)
