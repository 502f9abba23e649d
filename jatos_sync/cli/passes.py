"""`jatos-sync sync` and `jatos-sync status`: one pass per mapping (a dry run for
`status`), and the report — one JSON document with `--json`, else a summary line per
mapping and what needs attention.

Owns wiring the passes to the terminal: the progress bar, the question a first sync asks
before it replaces files the folder never synced (docs/safety.md, rule 6), the running
daemon's report in `status`. The passes themselves are sync.py's.

Must not: decide what to sync, or map errors to exit codes beyond the results' own.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from jatos_sync.cli.context import Context
from jatos_sync.cli.human import Style, print_daemon, print_paths, print_result
from jatos_sync.config import Config
from jatos_sync.errors import JatosSyncError, worst_exit_code
from jatos_sync.logs import is_terminal
from jatos_sync.model import RelPath
from jatos_sync.sync import Confirm, MappingResult, check_distinct_studies, run_pass


def sync(ctx: Context) -> int:
    dry_run = bool(ctx.args.dry_run)
    results = _run_passes(
        ctx,
        ctx.config(),
        dry_run=dry_run,
        allow_mass_delete=bool(ctx.args.yes),
        prune=bool(ctx.args.prune),
    )
    return _report(ctx, results, dry_run=dry_run)


def status(ctx: Context) -> int:
    config = ctx.config()
    results = _run_passes(ctx, config, dry_run=True, allow_mass_delete=False)
    daemon = _daemon_status(ctx, config)
    _report(ctx, results, dry_run=True, daemon=daemon)
    if daemon is not None and not ctx.args.json:
        print_daemon(daemon, ctx.out)
    # `status` reports; the report was made, so it succeeds unless something stopped it.
    return worst_exit_code([r.error.exit_code for r in results if r.error is not None])


def _daemon_status(ctx: Context, config: Config) -> dict[str, Any] | None:
    from jatos_sync.daemon.status import read_status

    return read_status(ctx.store(config))


def _run_passes(
    ctx: Context, config: Config, *, dry_run: bool, allow_mass_delete: bool, prune: bool = False
) -> list[MappingResult]:
    mappings = config.select(ctx.args.mappings)
    client, _info = ctx.connect(config)
    store = ctx.store(config)
    stop = threading.Event()
    show_progress = not (dry_run or ctx.args.json or ctx.args.quiet)
    try:
        check_distinct_studies(config.mappings, client)
        return [
            run_pass(
                mapping,
                client=client,
                store=store,
                dry_run=dry_run,
                allow_mass_delete=allow_mass_delete,
                prune=prune,
                confirm=_confirm_on_terminal(ctx, client),
                concurrency=config.server.concurrency,
                stop=stop,
                progress=ctx.progress(enabled=show_progress, label=mapping.name),
            )
            for mapping in mappings
        ]
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        client.close()


def _confirm_on_terminal(ctx: Context, client: Any) -> Confirm | None:
    """On a terminal, ask before a first sync replaces files the folder never synced
    (docs/safety.md, rule 6); elsewhere (CI, pipes, --json) `--yes` is the only way."""
    if ctx.args.json or not (is_terminal(ctx.stdin) and is_terminal(ctx.err)):
        return None

    def confirm(study: str, paths: list[RelPath]) -> bool:
        try:
            title = f" ({client.study(study).title!r})"
        except JatosSyncError:
            title = ""
        print(
            f"Study {study}{title} already holds {len(paths)} file(s) that this folder never "
            "synced, and this first sync would replace them (a copy of each is kept):",
            file=ctx.err,
        )
        print_paths(ctx.err, "", paths)
        ctx.err.write("Is this the right study? Replace them [y/N]: ")
        ctx.err.flush()
        return ctx.stdin.readline().strip().lower() in ("y", "yes")

    return confirm


def _report(
    ctx: Context,
    results: list[MappingResult],
    *,
    dry_run: bool,
    daemon: dict[str, Any] | None = None,
) -> int:
    code = worst_exit_code([r.exit_code for r in results])
    if ctx.args.json:
        document: dict[str, Any] = {
            "ok": code == 0,
            "dry_run": dry_run,
            "exit_code": code,
            "mappings": [r.to_json() for r in results],
        }
        if daemon is not None:
            document["daemon"] = daemon
        print(json.dumps(document, ensure_ascii=False, indent=2), file=ctx.out)
    else:
        style = Style.of(ctx.out, ctx.environ)
        for result in results:
            print_result(result, ctx.out, style)
    return code
