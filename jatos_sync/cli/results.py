"""`jatos-sync results`: one results pass per mapping with a `results:` section
(jatos_sync.results), reported in words or as one JSON document with `--json`.

Must not: touch the study's files (results only read from the server).
"""

from __future__ import annotations

import json

from jatos_sync.cli.context import Context
from jatos_sync.cli.human import print_results
from jatos_sync.errors import ConfigError, worst_exit_code


def results(ctx: Context) -> int:
    """One results pass per mapping with `results:`. No token check first: a pass with
    nothing new is the one metadata request, which refuses a bad token just as well."""
    config = ctx.config()
    selected = config.select(ctx.args.mappings)
    if without := [m.name for m in selected if m.results is None and ctx.args.mappings]:
        raise ConfigError(
            f"{config.path}: mapping {', '.join(map(repr, without))} has no results: section; "
            "add one with folder: (where the results go) to mirror its study's results"
        )
    chosen = [m for m in selected if m.results is not None]
    if not chosen:
        raise ConfigError(
            f"{config.path}: no mapping has a results: section; add one with folder: (where "
            "the results go), e.g.  results: {folder: ../data/stroop}"
        )
    from jatos_sync.results import run_results  # imports msgspec: only for this command

    store = ctx.store(config)
    client = ctx.client(config)
    try:
        outcomes = run_results(
            chosen,
            client=client,
            synced=[(m.name, m.folder) for m in config.mappings],
            state_root=store.root,
        )
    finally:
        client.close()
    code = worst_exit_code([o.exit_code for o in outcomes])
    if ctx.args.json:
        document = {
            "ok": code == 0,
            "exit_code": code,
            "mappings": [o.to_json() for o in outcomes],
        }
        print(json.dumps(document, ensure_ascii=False, indent=2), file=ctx.out)
        return code
    for outcome in outcomes:
        print_results(outcome, ctx.out)
    return code
