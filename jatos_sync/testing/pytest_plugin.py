"""pytest fixtures for the JATOS stand-in server (registered via the `pytest11` entry point).

Owns two fixtures: `jatos_standin` (a started 3.10 server with user "alice", her token in
`server.token` and an empty study in `server.study`) and `jatos_standin_factory` (the same
for any `StandInServer` keyword arguments; every server is stopped at teardown). Loaded
into every pytest run of this environment, so it imports nothing heavy at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jatos_sync.testing.server import StandInServer

StandInFactory = Callable[..., "StandInServer"]


@pytest.fixture
def jatos_standin_factory() -> Iterator[StandInFactory]:
    """Call with `StandInServer` keyword arguments (plus `populate=False` to skip the
    default user/token/study); returns a started server. All are stopped at teardown."""
    from jatos_sync.testing.server import StandInServer

    servers: list[StandInServer] = []

    def make(*, populate: bool = True, username: str = "alice", **kwargs: Any) -> StandInServer:
        server = StandInServer(**kwargs)
        servers.append(server)
        server.start()
        if populate:
            server.populate(username)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def jatos_standin(jatos_standin_factory: StandInFactory) -> StandInServer:
    """A started 3.10 stand-in with user "alice", `server.token` and `server.study`."""
    return jatos_standin_factory(personality="3.10")
