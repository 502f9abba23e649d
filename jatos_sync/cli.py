"""Command line: argparse, `main(argv) -> int`, exit codes — and nothing else.

Each command is a short function that wires config, token, client and state together and
prints the result. `JatosSyncError` becomes a one-line message and its exit code here, and
only here (PRODUCT.md §5). No traceback reaches the user for an expected failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from jatos_sync import __version__, demo
from jatos_sync import codes as links_cmd
from jatos_sync import export as export_cmd
from jatos_sync import init as init_cmd
from jatos_sync import pull as pull_cmd
from jatos_sync.apply import ProgressSink
from jatos_sync.check import (
    check_mapping,
    exit_code_for,
    warn_about_token,
    warn_before_connecting,
)
from jatos_sync.client import JatosClient
from jatos_sync.config import Config, default_config_path, load_config
from jatos_sync.credentials import load_token
from jatos_sync.daemon import supervisor
from jatos_sync.daemon.status import read_status
from jatos_sync.definition import describe
from jatos_sync.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    ConfigError,
    InternalError,
    JatosSyncError,
    worst_exit_code,
)
from jatos_sync.logs import configure_logging, is_terminal, redact
from jatos_sync.model import RelPath, StudyInfo
from jatos_sync.progress import Tally, bar_safe, progress_for
from jatos_sync.state import StateStore
from jatos_sync.sync import Confirm, MappingResult, check_distinct_studies, run_pass

if TYPE_CHECKING:
    from jatos_sync.results import ResultsOutcome

log = structlog.get_logger("jatos_sync.cli")
LIST_LIMIT = 20  # how many paths a human summary lists before "… and N more"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors get exit code 2 via main."""

    def error(self, message: str) -> Any:  # argparse's signature returns NoReturn
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jatos-sync",
        description="Keep the study assets of JATOS studies in step with local folders.",
    )
    parser.add_argument("--version", action="version", version=f"jatos-sync {__version__}")
    parser.add_argument(
        "-c", "--config", help="config file (default: $JATOS_SYNC_CONFIG or ./jatos-sync.yaml)"
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="log HTTP requests too")
    noise.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="auto: readable lines on a terminal, JSON lines otherwise",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sync = commands.add_parser("sync", help="one reconcile pass, then exit")
    sync.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    sync.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    sync.add_argument(
        "--yes",
        action="store_true",
        help="carry out deletions a safety guard withheld, and let a first sync replace "
        "server files this folder never synced",
    )
    sync.add_argument(
        "--prune",
        action="store_true",
        help="also delete server files that were never synced from this folder (a copy of "
        "each is kept)",
    )
    sync.add_argument("mappings", nargs="*", metavar="MAPPING")

    status = commands.add_parser("status", help="what sync would do; changes nothing")
    status.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    status.add_argument("mappings", nargs="*", metavar="MAPPING")

    pull_cmd.add_arguments(
        commands.add_parser("pull", help="download a study's assets into its folder")
    )
    init_cmd.add_arguments(
        commands.add_parser("init", help="write a config file (asks on a terminal)")
    )
    export_cmd.add_arguments(commands.add_parser("export", help="the study as a .jzip file"))
    links_cmd.add_arguments(
        commands.add_parser("links", help="participant links for a study, one per line")
    )
    demo_cmd = commands.add_parser(
        "demo", help="the whole thing against a built-in JATOS stand-in server"
    )
    demo.add_arguments(demo_cmd)

    supervisor.add_arguments(
        commands.add_parser("watch", help="daemon: reconcile, then follow edits")
    )

    results = commands.add_parser(
        "results", help="mirror each study's results into its results folder, then exit"
    )
    results.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    results.add_argument("mappings", nargs="*", metavar="MAPPING")

    config = commands.add_parser("config", help="about the configuration file itself")
    config.set_defaults(config_help=config.format_help)
    config_commands = config.add_subparsers(dest="config_command", parser_class=_Parser)
    config_commands.add_parser("schema", help="print the JSON Schema of jatos-sync.yaml")

    check = commands.add_parser("check", help="config, token, access and lock, per mapping")
    check.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    check.add_argument("mappings", nargs="*", metavar="MAPPING")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
    client_factory: Callable[[Config, Any], JatosClient] | None = None,
) -> int:
    """Run one command; return its exit code."""
    environ = os.environ if environ is None else environ
    out = stdout or sys.stdout
    # Log lines are written above a live progress bar instead of through it.
    err = bar_safe(stderr or sys.stderr)
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        # A token typed on the command line by mistake must not be repeated into CI logs.
        print(redact(str(exc)), file=err)
        print("Run `jatos-sync --help` for usage.", file=err)
        return EXIT_CONFIG
    verbosity = 1 if args.verbose else -1 if args.quiet else 0
    configure_logging(verbosity=verbosity, fmt=args.log_format, stream=err, environ=environ)
    ctx = _Context(args, environ, out, err, stdin or sys.stdin, client_factory or _default_client)
    handler: Callable[[_Context], int] = {
        "sync": _cmd_sync,
        "status": _cmd_status,
        "check": _cmd_check,
        "watch": _cmd_watch,
        "pull": _cmd_pull,
        "init": _cmd_init,
        "export": _cmd_export,
        "links": _cmd_links,
        "demo": _cmd_demo,
        "config": _cmd_config,
        "results": _cmd_results,
    }[args.command]
    try:
        return handler(ctx)
    except JatosSyncError as exc:
        return _failed(args, exc, out=out, err=err)
    except KeyboardInterrupt:
        print(f"jatos-sync: {ctx.how_far()}", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last resort: a bug is one line and exit 1, not a traceback
        log.debug("internal_error", command=args.command, exc_info=exc)
        return _failed(args, InternalError.wrapping(exc), out=out, err=err)


def _failed(args: argparse.Namespace, exc: JatosSyncError, *, out: TextIO, err: TextIO) -> int:
    """A command that stopped: one log event, one line on stderr, the JSON document."""
    message = redact(str(exc))
    log.error("command_failed", command=args.command, error=message, exit_code=exc.exit_code)
    if getattr(args, "json", False):  # a script still gets its one JSON document
        document = {"ok": False, "exit_code": exc.exit_code, "error": message, "mappings": []}
        print(json.dumps(document, ensure_ascii=False), file=out)
    print(f"jatos-sync: {message}", file=err)
    return exc.exit_code


def main_entry() -> None:
    sys.exit(main())


class _Context:
    """What every command needs: arguments, environment, streams and the client seam."""

    def __init__(
        self,
        args: argparse.Namespace,
        environ: Mapping[str, str],
        out: TextIO,
        err: TextIO,
        stdin: TextIO,
        client_factory: Callable[[Config, Any], JatosClient],
    ) -> None:
        self.args, self.environ, self.out, self.err, self.stdin = args, environ, out, err, stdin
        self._client_factory = client_factory
        self.tallies: list[Tally] = []  # the passes' file counts, for Ctrl-C

    def tally(self, bar: ProgressSink | None) -> Tally:
        tally = Tally(bar)
        self.tallies.append(tally)
        return tally

    def how_far(self) -> str:
        """What Ctrl-C leaves behind, and how to finish."""
        files = sum(t.files for t in self.tallies)
        done = sum(t.done for t in self.tallies)
        command = f"jatos-sync {self.args.command}"
        if not files:
            return f"interrupted; nothing was left half done. Run `{command}` again to finish."
        return (
            f"interrupted after {done} of {files} files. Nothing is lost: run `{command}` "
            "again to finish; what is already done is not done twice."
        )

    @property
    def config_path(self) -> Path:
        path = Path(self.args.config) if self.args.config else default_config_path(self.environ)
        return path.absolute()

    def config(self) -> Config:
        return load_config(self.config_path)

    def runner(self, *command: str) -> Callable[[Path], int]:
        """Run another command of this program in-process, on another config file."""

        def run(config_path: Path) -> int:
            argv = ["-c", str(config_path), "--log-format", self.args.log_format, *command]
            return main(
                argv,
                environ=self.environ,
                stdout=self.out,
                stderr=self.err,
                client_factory=self._client_factory,
            )

        return run

    def connect(self, config: Config) -> tuple[JatosClient, Any]:
        token = load_token(config.server, environ=self.environ)
        warn_before_connecting(config.server.url)
        client = self._client_factory(config, token)
        try:
            info = client.token_info()
        except BaseException:
            client.close()
            raise
        warn_about_token(info)
        return client, info

    def store(self, config: Config) -> StateStore:
        return StateStore(config.state_dir)

    def client(self, config: Config) -> JatosClient:
        """A client without the token check of `connect` (the first request checks it)."""
        token = load_token(config.server, environ=self.environ)
        warn_before_connecting(config.server.url)
        return self._client_factory(config, token)


def _default_client(config: Config, token: Any) -> JatosClient:
    return JatosClient.for_server(config.server, token)


def _run_passes(
    ctx: _Context, config: Config, *, dry_run: bool, allow_mass_delete: bool, prune: bool = False
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
                progress=ctx.tally(
                    progress_for(ctx.err, enabled=show_progress, label=mapping.name)
                ),
            )
            for mapping in mappings
        ]
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        client.close()


def _confirm_on_terminal(ctx: _Context, client: JatosClient) -> Confirm | None:
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
        _print_paths(ctx.err, "", paths)
        ctx.err.write("Is this the right study? Replace them [y/N]: ")
        ctx.err.flush()
        return ctx.stdin.readline().strip().lower() in ("y", "yes")

    return confirm


def _cmd_sync(ctx: _Context) -> int:
    dry_run = bool(ctx.args.dry_run)
    results = _run_passes(
        ctx,
        ctx.config(),
        dry_run=dry_run,
        allow_mass_delete=bool(ctx.args.yes),
        prune=bool(ctx.args.prune),
    )
    return _report(ctx, results, dry_run=dry_run)


def _cmd_watch(ctx: _Context) -> int:
    return supervisor.run(
        ctx.args,
        config_path=ctx.config_path,
        environ=ctx.environ,
        client_factory=ctx._client_factory,
    )


def _cmd_status(ctx: _Context) -> int:
    config = ctx.config()
    results = _run_passes(ctx, config, dry_run=True, allow_mass_delete=False)
    daemon = read_status(ctx.store(config))
    _report(ctx, results, dry_run=True, daemon=daemon)
    if daemon is not None and not ctx.args.json:
        _print_daemon(daemon, ctx.out)
    # `status` reports; the report was made, so it succeeds unless something stopped it.
    return worst_exit_code([r.error.exit_code for r in results if r.error is not None])


def _report(
    ctx: _Context,
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
        for result in results:
            _print_result(result, ctx.out)
    return code


def _print_result(r: MappingResult, out: TextIO) -> None:
    verb = ("would upload", "would delete") if r.dry_run else ("uploaded", "deleted")
    counts = [
        f"{len(r.uploaded)} {verb[0]}",
        f"{len(r.deleted)} {verb[1]}",
        f"{r.unchanged} unchanged",
    ]
    counts += [f"{len(r.skipped)} skipped"] if r.skipped else []
    counts += [f"{len(r.failed)} failed"] if r.failed else []
    counts += [f"{len(r.withheld)} deletions withheld"] if r.withheld else []
    counts += [f"{len(r.definition)} change(s) of the study itself"] if r.definition else []
    if r.error is not None and not (r.uploaded or r.deleted or r.failed or r.definition):
        print(f"{r.name} → study {r.study}: stopped. {redact(str(r.error))}", file=out)
        return
    print(f"{r.name} → study {r.study}: {', '.join(counts)}", file=out)
    for change in r.definition[:LIST_LIMIT]:
        print(f"  {shown(describe(change, dry_run=r.dry_run))}", file=out)
    if len(r.definition) > LIST_LIMIT:
        print(f"  … and {len(r.definition) - LIST_LIMIT} more", file=out)
    if r.definition_withheld:
        print(f"  withheld: {r.definition_withheld}", file=out)
    if r.error is not None:
        print(f"  stopped: {redact(str(r.error))}", file=out)
    if r.dry_run:
        _print_paths(out, verb[0], r.uploaded)
        _print_paths(out, verb[1], r.deleted)
        _print_paths(out, "would first save the server's copy of", r.backed_up)
    elif r.backed_up:
        _print_paths(out, "saved the server's copy of", r.backed_up)
    for problem in r.skipped:
        print(f"  skipped {shown(problem.path)}: {shown(problem.reason)}", file=out)
    for problem in r.failed:
        print(f"  failed {shown(problem.path)}: {shown(redact(problem.reason))}", file=out)
    if r.state_error:
        print(f"  {r.state_error}", file=out)
    if r.withheld:
        reason = r.withheld_reason or "an upload in this pass failed; they wait for the next pass"
        print(f"  withheld {len(r.withheld)} deletion(s): {reason}", file=out)
        _print_paths(out, "withheld", r.withheld)
    if r.server_only:
        print(
            f"  kept {len(r.server_only)} server file(s) that were never synced from this "
            "folder (added in the JATOS GUI or by a colleague); `jatos-sync sync --prune` "
            "deletes them after saving a copy:",
            file=out,
        )
        _print_paths(out, "only on the server:", r.server_only)


def _print_daemon(daemon: dict[str, Any], out: TextIO) -> None:
    """What a running `watch` daemon reports (its status file in the state directory)."""
    pids = ", ".join(str(p) for p in daemon.get("pids") or [daemon.get("pid")])
    print(f"\nwatch daemon (pid {pids}) is running:", file=out)
    mappings = [m for m in daemon.get("mappings") or [] if isinstance(m, dict)]
    if mappings and all(m.get("state") == "paused" for m in mappings):
        print(
            "  NOTHING IS BEING SYNCED: every mapping is paused. Fix what each one's last "
            "error says; the daemon tries again by itself.",
            file=out,
        )
    for m in daemon.get("mappings") or []:
        age = m.get("oldest_pending_age_s")
        since = f", oldest {age:.0f} s ago" if isinstance(age, (int, float)) else ""
        last = m.get("last_sync_age_s")
        last_text = f"{last:.0f} s ago" if isinstance(last, (int, float)) else "not yet"
        print(
            f"  {m.get('name')}: {m.get('state')}, {m.get('mode')}, "
            f"{m.get('pending', 0)} pending{since}; last sync {last_text}",
            file=out,
        )
        if m.get("last_error"):
            print(f"    last error: {shown(redact(str(m['last_error'])))}", file=out)
        for problem in m.get("not_followed") or []:
            print(f"    not followed: {shown(str(problem))}", file=out)
        if m.get("server_only"):
            print(
                f"    {m['server_only']} server file(s) never synced from this folder are kept "
                "(`jatos-sync sync --prune` deletes them)",
                file=out,
            )
        if isinstance(m.get("results"), dict):
            _print_daemon_results(m["results"], out)


def _print_daemon_results(r: dict[str, Any], out: TextIO) -> None:
    """A results mirror's line in `status`: its last pass, its counts, its last error."""
    age = r.get("last_pass_age_s")
    last = f"last pass {age:.0f} s ago" if isinstance(age, (int, float)) else "no pass yet"
    print(
        f"    results into {shown(r.get('folder'))}: {r.get('state')}, {last}; "
        f"{r.get('final', 0)} final, {r.get('running', 0)} running, "
        f"{r.get('withdrawn', 0)} withdrawn",
        file=out,
    )
    if r.get("last_error"):
        print(f"    results error: {shown(redact(str(r['last_error'])))}", file=out)


def shown(path: object) -> str:
    """A path for a terminal: control characters (escape sequences) are shown escaped."""
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _print_paths(out: TextIO, label: str, paths: Sequence[object]) -> None:
    prefix = f"  {label} " if label else "  "
    for path in paths[:LIST_LIMIT]:
        print(f"{prefix}{shown(path)}", file=out)
    if len(paths) > LIST_LIMIT:
        print(f"  … and {len(paths) - LIST_LIMIT} more", file=out)


def _cmd_check(ctx: _Context) -> int:
    config = ctx.config()
    mappings = config.select(ctx.args.mappings)
    client, info = ctx.connect(config)
    store = ctx.store(config)
    try:
        check_distinct_studies(config.mappings, client)
        reports = [
            check_mapping(mapping, client=client, token=info, store=store) for mapping in mappings
        ]
    finally:
        client.close()
    code = exit_code_for(reports)
    if ctx.args.json:
        document = {
            "ok": code == 0,
            "exit_code": code,
            "server": config.server.url,
            "mappings": [
                {
                    "name": r.name,
                    "study": r.study,
                    "folder": r.folder,
                    **r.facts,
                    "warnings": r.warnings,
                    "problems": [{"exit_code": c, "message": m} for c, m in r.problems],
                    **(
                        {"reachable_studies": [_study_json(s) for s in r.reachable]}
                        if r.reachable
                        else {}
                    ),
                }
                for r in reports
            ],
        }
        print(json.dumps(document, ensure_ascii=False, indent=2), file=ctx.out)
        return code
    print(f"server {config.server.url}", file=ctx.out)
    for r in reports:
        print(f"{r.name} → study {r.study} ({r.folder})", file=ctx.out)
        for key, value in r.facts.items():
            print(f"  {key.replace('_', ' ')}: {value}", file=ctx.out)
        for warning in r.warnings:
            print(f"  warning: {warning}", file=ctx.out)
        for _code, message in r.problems:
            print(f"  PROBLEM: {redact(message)}", file=ctx.out)
        if r.reachable:
            print(
                "  The studies your token can reach (put an ID or UUID in `study:`):", file=ctx.out
            )
            for study in r.reachable:
                print(f"    {study.id:>6}  {study.uuid}  {shown(study.title)}", file=ctx.out)
        if not r.problems:
            print("  ok: ready to sync", file=ctx.out)
    return code


def _study_json(study: StudyInfo) -> dict[str, object]:
    return {"id": study.id, "uuid": study.uuid, "title": study.title}


def _cmd_results(ctx: _Context) -> int:
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
        _print_results(outcome, ctx.out)
    return code


def _print_results(o: ResultsOutcome, out: TextIO) -> None:
    head = f"{o.name} → study {o.study}, results in {shown(o.folder)}"
    if o.error is not None and not (o.new or o.updated or o.withdrawn):
        print(f"{head}: stopped. {redact(str(o.error))}", file=out)
        return
    parts = [f"{len(o.new)} new", f"{len(o.updated)} updated", f"{len(o.withdrawn)} withdrawn"]
    parts += [f"{len(o.deleted_on_server)} deleted on the server"] if o.deleted_on_server else []
    parts += [f"{o.unchanged} unchanged"] + ([f"{len(o.failed)} failed"] if o.failed else [])
    print(f"{head}: {', '.join(parts)} (component results)", file=out)
    c = o.counts
    print(
        f"  in the folder: {c['final']} final, {c['running']} running, {c['withdrawn']} "
        f"withdrawn, {c['deleted_on_server']} deleted on the server; see results.csv",
        file=out,
    )
    if o.error is not None:
        print(f"  stopped: {redact(str(o.error))}", file=out)
    for problem in o.failed:
        print(f"  failed {shown(problem.path)}: {shown(redact(problem.reason))}", file=out)


def _cmd_demo(ctx: _Context) -> int:
    return demo.run(
        ctx.args,
        out=ctx.out,
        sync=ctx.runner("sync"),
        watch=ctx.runner("watch"),
        links=ctx.runner("links"),
        results=ctx.runner("results"),
    )


def _cmd_config(ctx: _Context) -> int:
    """`config schema` prints the JSON Schema; `config` alone, its help."""
    if ctx.args.config_command != "schema":
        print(ctx.args.config_help(), end="", file=ctx.out)
        return 0
    from jatos_sync.config_doc import schema_text  # imports msgspec: only for this command

    print(schema_text(), end="", file=ctx.out)
    return 0


def _cmd_pull(ctx: _Context) -> int:
    config = ctx.config()
    client, _info = ctx.connect(config)
    try:
        return pull_cmd.run(
            ctx.args,
            config=config,
            client=client,
            store=ctx.store(config),
            out=ctx.out,
            progress=ctx.tally(
                progress_for(
                    ctx.err, enabled=not (ctx.args.json or ctx.args.quiet), label="downloading"
                )
            ),
        )
    finally:
        client.close()


def _cmd_init(ctx: _Context) -> int:
    return init_cmd.run(
        ctx.args,
        environ=ctx.environ,
        stdin=ctx.stdin,
        out=ctx.out,
        err=ctx.err,
        # Few retries and a short timeout: a mistyped URL must not stall an interactive session.
        client_factory=lambda url, token: JatosClient(url, token, retries=1, timeout_s=15.0),
        check=ctx.runner("check"),
        sync=ctx.runner("sync"),
    )


def _cmd_export(ctx: _Context) -> int:
    config = ctx.config()
    client, _info = ctx.connect(config)
    with client:
        return export_cmd.run(ctx.args, config=config, client=client, out=ctx.out)


def _cmd_links(ctx: _Context) -> int:
    config = ctx.config()
    client, _info = ctx.connect(config)
    with client:
        return links_cmd.run(ctx.args, config=config, client=client, out=ctx.out)
