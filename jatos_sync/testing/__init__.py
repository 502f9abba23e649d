"""A local stand-in for JATOS's HTTP API (tests, `jatos-sync demo`, users' CI).

    from jatos_sync.testing import StandInServer

    with StandInServer(personality="3.9") as server:
        server.populate("alice")            # user, token (server.token), study (server.study)
        ...                                 # talk to server.url with the token

Personalities: "3.10" (JATOS 3.10.5), "3.9" (3.9.8), "3.8.2" (alias "3.8") and "3.8.1".
It serves the study assets endpoints, study properties, import/export of study archives,
create and change (per version: create from JSON, PATCH, components, batches, delete),
study codes, participant links (`/publix/<code>` starts a run) and results (metadata,
streamed zips, files, delete), with each release's status codes, bodies and quirks as
docs/jatos-api.md describes them. Participants are played from Python (`start_run`,
`start_component`, `put_data`, `add_result_file`, `finish_run`, `abort_run`, …) or through
`python -m jatos_sync.testing participant`, which opens real links and then uses the
stand-in's own control API under `/_standin/` (loopback only, token required; not JATOS).

Importing this package starts nothing and imports nothing else: the names below load their
modules on first use, so the pytest plugin living in this package stays cheap for test runs
that never use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jatos_sync.testing.faults import Faults
    from jatos_sync.testing.runs import RunError
    from jatos_sync.testing.server import RequestRecord, StandInServer, Study, standin
    from jatos_sync.testing.tokens import make_token, token_checksum_ok

__all__ = [
    "Faults",
    "RequestRecord",
    "RunError",
    "StandInServer",
    "Study",
    "make_token",
    "standin",
    "token_checksum_ok",
]

_HOMES = {
    "Faults": "jatos_sync.testing.faults",
    "RequestRecord": "jatos_sync.testing.server",
    "RunError": "jatos_sync.testing.runs",
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
