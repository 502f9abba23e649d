"""`jatos-sync init` (jatos_sync.init), wired to the terminal: the dialogue's requests try
once with a short time limit (a wrong address must not stall a person through retries),
and so does the `check` that closes it; `init --create` then syncs with the
configuration's own settings.

Must not: ask, write or check anything itself (jatos_sync.init does).
"""

from __future__ import annotations

from jatos_sync import init as initialising
from jatos_sync.cli.context import QUICK_TIMEOUT_S, Context, default_client, quick_client
from jatos_sync.credentials import Token


def init(ctx: Context) -> int:
    from jatos_sync.client import JatosClient

    def dialogue_client(url: str, token: Token) -> JatosClient:
        return JatosClient(url, token, retries=0, timeout_s=QUICK_TIMEOUT_S)

    return initialising.run(
        ctx.args,
        environ=ctx.environ,
        stdin=ctx.stdin,
        out=ctx.out,
        err=ctx.err,
        client_factory=dialogue_client,
        # A client factory handed in (tests) is kept; the production one gets one try.
        check=ctx.runner(
            "check", client_factory=quick_client if ctx.client_factory is default_client else None
        ),
        sync=ctx.runner("sync"),
    )
