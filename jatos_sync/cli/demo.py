"""`jatos-sync demo` (jatos_sync.demo), given the commands it runs: sync, watch, links and
results, each in-process on the demo's own configuration.

Must not: import the stand-in server itself (demo.py does, when the demo runs).
"""

from __future__ import annotations

from jatos_sync import demo as demonstration
from jatos_sync.cli.context import Context


def demo(ctx: Context) -> int:
    return demonstration.run(
        ctx.args,
        out=ctx.out,
        sync=ctx.runner("sync"),
        watch=ctx.runner("watch"),
        links=ctx.runner("links"),
        results=ctx.runner("results"),
    )
