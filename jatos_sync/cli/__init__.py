"""The command line: `main(argv) -> int`, dispatch and exit codes — and nothing else.

`main` parses the command line (parser.py, which imports only the standard library),
configures logging, and runs the command's function from the module `COMMANDS` names,
imported only then: `--version`, `--help` and a usage error import nothing heavy, and
each command imports only what it uses. A `JatosSyncError` becomes one line of words and
its exit code here, and only here (README, "Exit codes"); no traceback reaches the user
for an expected failure, and an unexpected one is one line too (its traceback only with
`-v`).

Bare `jatos-sync` prints the help and exits 2, like any command line that does nothing:
a script whose command went missing (an empty variable) must not pass as a success.
"""

from __future__ import annotations

import importlib
import os
import sys

from jatos_sync.cli.parser import HelpShown, UsageError, build_parser, version_text
from jatos_sync.errors import EXIT_CONFIG, EXIT_INTERRUPTED, InternalError, JatosSyncError

TYPE_CHECKING = False  # not typing's: importing typing costs --version a few ms
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TextIO

    from jatos_sync.cli.context import Context
    from jatos_sync.client import JatosClient
    from jatos_sync.config import Config

__all__ = ["COMMANDS", "build_parser", "main", "main_entry"]

# command -> "module:function" of the package; the module is imported when the command runs.
COMMANDS: dict[str, str] = {
    "init": "init:init",
    "check": "check:check",
    "sync": "passes:sync",
    "watch": "watch:watch",
    "status": "passes:status",
    "pull": "pull:pull",
    "results": "results:results",
    "export": "study:export",
    "links": "study:links",
    "config": "config:config",
    "demo": "demo:demo",
}


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
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.verbose and args.quiet:
            parser.error("-v (say more) and -q (say less) cannot be used together")
    except HelpShown as shown:
        print(shown.text, end="", file=out)
        return 0
    except UsageError as exc:
        from jatos_sync.logs import redact

        # A token typed on the command line by mistake must not be repeated into CI logs.
        print(redact(str(exc)), file=err)
        print("Run `jatos-sync --help` for usage.", file=err)
        return EXIT_CONFIG
    if args.version:
        print(version_text(), file=out)
        return 0
    if args.command is None:
        print(parser.format_help(), end="", file=out)
        return EXIT_CONFIG
    return _run(
        args,
        environ=environ,
        out=out,
        err=err,
        stdin=stdin or sys.stdin,
        client_factory=client_factory,
    )


def _run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    stdin: TextIO,
    client_factory: Callable[[Config, Any], JatosClient] | None,
) -> int:
    from jatos_sync.cli.context import Context, default_client
    from jatos_sync.logs import configure_logging
    from jatos_sync.progress import bar_safe

    # Log lines are written above a live progress bar instead of through it.
    err = bar_safe(err)
    verbosity = 1 if args.verbose else -1 if args.quiet else 0
    configure_logging(verbosity=verbosity, fmt=args.log_format, stream=err, environ=environ)
    ctx = Context(args, environ, out, err, stdin, client_factory or default_client)
    try:
        return _command(args.command)(ctx)
    except JatosSyncError as exc:
        return _failed(args, exc, out=out, err=err)
    except KeyboardInterrupt:
        print(f"jatos-sync: {ctx.how_far()}", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last resort: a bug is one line and exit 1, not a traceback
        import structlog

        structlog.get_logger("jatos_sync.cli").debug(
            "internal_error", command=args.command, exc_info=exc
        )
        return _failed(args, InternalError.wrapping(exc), out=out, err=err)


def _command(name: str) -> Callable[[Context], int]:
    module, function = COMMANDS[name].split(":")
    handler: Callable[[Context], int] = getattr(
        importlib.import_module(f"jatos_sync.cli.{module}"), function
    )
    return handler


def _failed(args: argparse.Namespace, exc: JatosSyncError, *, out: TextIO, err: TextIO) -> int:
    """A command that stopped: one log event, one line on stderr, the JSON document."""
    import json

    import structlog

    from jatos_sync.logs import redact

    message = redact(str(exc))
    structlog.get_logger("jatos_sync.cli").error(
        "command_failed", command=args.command, error=message, exit_code=exc.exit_code
    )
    if getattr(args, "json", False):  # a script still gets its one JSON document
        document = {"ok": False, "exit_code": exc.exit_code, "error": message, "mappings": []}
        print(json.dumps(document, ensure_ascii=False), file=out)
    print(f"jatos-sync: {message}", file=err)
    return exc.exit_code


def main_entry() -> None:
    sys.exit(main())
