"""`jatos-sync config schema`: the JSON Schema of jatos-sync.yaml; `config` alone prints
its help.

Must not: read a configuration file, or import anything that talks to a server.
"""

from __future__ import annotations

from jatos_sync.cli.context import Context


def config(ctx: Context) -> int:
    if ctx.args.config_command != "schema":
        print(ctx.args.config_help(), end="", file=ctx.out)
        return 0
    from jatos_sync.config_doc import schema_text  # imports msgspec: only for this command

    print(schema_text(), end="", file=ctx.out)
    return 0
