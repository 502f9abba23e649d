"""A local stand-in for JATOS's study-assets HTTP API (tests, `jatos-sync demo`, users' CI).

    from jatos_sync.testing import StandInServer

    with StandInServer(personality="3.9") as server:
        server.populate("alice")            # user, token (server.token), study (server.study)
        ...                                 # talk to server.url with the token

Personalities: "3.10" (JATOS 3.10.5), "3.9" (3.9.8), "3.8.1". Behaviour follows
JATOS_ASSETS_API.md. Importing this package starts nothing and imports nothing else: the
names below load their modules on first use, so the pytest plugin living in this package
stays cheap for test runs that never use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jatos_sync.testing.faults import Faults
    from jatos_sync.testing.server import RequestRecord, StandInServer, Study, standin
    from jatos_sync.testing.tokens import make_token, token_checksum_ok

__all__ = [
    "Faults",
    "RequestRecord",
    "StandInServer",
    "Study",
    "make_token",
    "standin",
    "token_checksum_ok",
]

_HOMES = {
    "Faults": "jatos_sync.testing.faults",
    "RequestRecord": "jatos_sync.testing.server",
    "StandInServer": "jatos_sync.testing.server",
    "Study": "jatos_sync.testing.server",
    "standin": "jatos_sync.testing.server",
    "make_token": "jatos_sync.testing.tokens",
    "token_checksum_ok": "jatos_sync.testing.tokens",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(__all__)
