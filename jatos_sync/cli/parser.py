"""The command line's grammar: every command, option, help text and example.

Owns `build_parser()`. It imports argparse and the standard library only — no
configuration, HTTP, YAML or logging machinery — so that `jatos-sync --help`, `--version`
and a mistyped option answer at once. The commands themselves live in modules that are
imported only when their command runs (`jatos_sync.cli.COMMANDS`); their options are
defined here, so that listing them costs nothing.

Must not: import anything beyond the standard library (a test watches the import set of
`--help`), or do anything but describe the command line.
"""

from __future__ import annotations

import argparse
import os

from jatos_sync import __version__

# Not `from typing import TYPE_CHECKING`: typing costs --version a few ms; type checkers
# treat a constant of this name alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

HELP_WIDTH = 80  # --help stays within this many columns on wider terminals too
DEFAULT_TOKEN_ENV = "JATOS_TOKEN"  # noqa: S105 -- a variable name; as credentials.py says
# The kinds of participant links and how many personal links one request may make; the
# tests check them against jatos_sync.studies and jatos_sync.codes.
LINK_TYPES = ("personal-single", "personal-multiple", "general-single", "general-multiple")
DEFAULT_LINK_TYPE = "personal-multiple"
MAX_LINKS = 1000

_MAPPING = "the name: of a mapping in jatos-sync.yaml"
_MAPPINGS_HELP = f"{_MAPPING} (default: all of them)"
_ONE_MAPPING_HELP = f"{_MAPPING}; may be left out when the file has only one"
_JSON_HELP = "print one JSON document on stdout (for scripts)"

DESCRIPTION = "Keep the study assets of JATOS studies in step with local folders."
EPILOG = """\
MAPPING, where a command takes one, is the name: of a mapping in
jatos-sync.yaml (one folder and its study); left out, the command works on
every mapping (pull, export and links: on the only one).

The options above work before and after the command: jatos-sync sync -q is
jatos-sync -q sync.

First time here? In your experiment's folder:
  jatos-sync init      asks for your JATOS address, API token and study
  jatos-sync check     is everything in place?
  jatos-sync sync      upload the folder to the study
  jatos-sync watch     keep uploading each file you save (Ctrl-C stops)
Try it all without a JATOS of your own: jatos-sync demo
Each command's options and an example: jatos-sync COMMAND --help
"""

INIT_DESCRIPTION = """\
Write jatos-sync.yaml (or the file -c names), then run `jatos-sync check`.

On a terminal, init asks its questions: the JATOS address, the API token (the
input stays hidden; it can store the token in a file only you can read), the
folder, and which of your studies to sync (from a list). Press Enter to take
the [default]; Ctrl-C stops without writing anything.

Without a terminal (a script, CI) nothing can be asked: give --url and --study
(and optionally --folder, --token-file, --name). The token is then read from
$JATOS_TOKEN, or from --token-file.

With --force, an existing file is replaced (and kept as .bak); its answers are
the defaults of the questions, and of the flags you leave out."""

INIT_EPILOG = """\
examples:
  jatos-sync init                         ask everything (on a terminal)
  jatos-sync init --url https://jatos.example.org --study 42 --folder exp
  jatos-sync init --force                 change the answers of a file
  jatos-sync init --create --url https://jatos.example.org   a new study
  jatos-sync init --from study.jzip --url https://jatos.example.org"""


class UsageError(Exception):
    """A command line argparse refused; the message names the problem."""


class HelpShown(Exception):  # not a failure: the help was asked for
    """`--help` was given: `text` is the help of the parser it was given to."""

    def __init__(self, text: str) -> None:
        super().__init__("help")
        self.text = text


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps --help within `HELP_WIDTH` columns (argparse fills the whole terminal)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=26, width=min(_columns(), HELP_WIDTH) - 2)


def _columns() -> int:
    """The terminal's width, as shutil.get_terminal_size says it (without importing shutil,
    which costs --version more than all of argparse)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(1).columns
    except OSError:
        return HELP_WIDTH


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting, so that `main` decides where
    help and usage errors go and which exit code they get."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def print_help(self, file: Any = None) -> None:
        if file is not None:
            super().print_help(file)
            return
        raise HelpShown(self.format_help())


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; the commands in the order people need them."""
    parser = _Parser(prog="jatos-sync", description=DESCRIPTION, epilog=EPILOG, add_help=False)
    commands = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=_Parser
    )
    options = parser.add_argument_group("options")  # after the commands in --help
    options.add_argument("-h", "--help", action="help", help="show this help and stop")
    options.add_argument(
        "--version", action="store_true", help="print the version of jatos-sync and stop"
    )
    _add_global_options(options, before_the_command=True)

    for name, summary, arguments, epilog in _commands():
        sub = commands.add_parser(
            name,
            help=summary,
            description=INIT_DESCRIPTION
            if name == "init"
            else f"{summary[0].upper()}{summary[1:]}.",
            epilog=epilog,
        )
        arguments(sub)
        _add_global_options(sub, before_the_command=False)
    return parser


def _add_global_options(parser: Any, *, before_the_command: bool) -> None:
    """-c, -v/-q and --log-format: on the main parser with their defaults, and on every
    command's parser without (`SUPPRESS`), so that a value given before the command is not
    overwritten by the command's default."""
    default: Any = (lambda value: value) if before_the_command else (lambda _: argparse.SUPPRESS)
    group = (
        parser
        if before_the_command
        else parser.add_argument_group("options of every command (also before it)")
    )
    group.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default(None),
        help="the configuration file (default: $JATOS_SYNC_CONFIG, else ./jatos-sync.yaml)",
    )
    noise = group.add_mutually_exclusive_group()
    noise.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="say more: each HTTP request, and the details of each event",
    )
    noise.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="say only what went wrong (warnings and errors)",
    )
    group.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default=default("auto"),
        help="auto: sentences on a terminal, JSON lines otherwise",
    )


def _examples(*pairs: tuple[str, str]) -> str:
    width = max(len(command) for command, _ in pairs)
    lines = [f"  jatos-sync {command.ljust(width)}   {what}" for command, what in pairs]
    return "example" + ("s" if len(pairs) > 1 else "") + ":\n" + "\n".join(lines)


SYNC_EPILOG = """\
Uploads new and changed files; deletes on the server what you deleted here
(only files it synced from this folder before). Files added in JATOS are kept.

examples:
  jatos-sync sync --dry-run    what would change; nothing is sent
  jatos-sync sync              every mapping
  jatos-sync sync stroop -q    one mapping, quietly"""

WATCH_EPILOG = """\
First a full sync, then each saved file is uploaded a moment later. Runs until
Ctrl-C; as a service it runs under systemd (docs/service.md).

examples:
  jatos-sync watch           every mapping
  jatos-sync watch stroop    only this one"""

PULL_EPILOG = """\
Never deletes; a local file that differs from the server's is kept unless
--force (then a copy of it is saved first).

examples:
  jatos-sync pull           the only mapping, e.g. in a new lab member's folder
  jatos-sync pull stroop    one of several mappings"""

RESULTS_EPILOG = """\
For each mapping with a results: section (see the README, "Getting your data").

examples:
  jatos-sync results           every mapping with results:
  jatos-sync results stroop    one"""

LINKS_EPILOG = """\
examples:
  jatos-sync links                          one personal link
  jatos-sync links stroop --amount 20       20 personal links
  jatos-sync links --type general-multiple  one link for everyone"""

DEMO_EPILOG = """\
Copies a sample experiment into a folder, creates its study on a stand-in JATOS
on this machine, syncs, plays a participant, brings their results home, then
watches the folder. Needs no JATOS, no token and no configuration.

examples:
  jatos-sync demo                      watch until Ctrl-C
  jatos-sync demo --once               sync once and stop
  jatos-sync demo --folder my-sample   keep the copy in my-sample/"""


def _mappings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mappings", nargs="*", metavar="MAPPING", help=_MAPPINGS_HELP)


def _one_mapping(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mapping", nargs="?", metavar="MAPPING", help=_ONE_MAPPING_HELP)


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """`init [--url URL] [--study ID|UUID] [--folder DIR] [--token-file FILE] [--name NAME]
    [--force] [--create [--title T] | --from FILE.jzip | --adopt]`; the file written is the
    global `-c` (default ./jatos-sync.yaml)."""
    parser.add_argument("--url", help="the JATOS server's address, e.g. https://jatos.example.org")
    parser.add_argument(
        "--study", metavar="ID", help="the study's ID or UUID (shown on its page in JATOS)"
    )
    parser.add_argument(
        "--folder", metavar="DIR", help="the local folder to sync (default: the current one)"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"a file holding the API token (default: the token is read from ${DEFAULT_TOKEN_ENV})",
    )
    parser.add_argument("--name", help="the mapping's name (default: the folder's name)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing configuration file (the old one is kept as .bak)",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--create",
        action="store_true",
        help="make a new study from the folder (one component per top-level HTML page), "
        "then create it on the server and upload the folder",
    )
    modes.add_argument(
        "--from",
        dest="from_archive",
        metavar="FILE.jzip",
        help="adopt a study archive (a JATOS export, jspsych-builder, lab.js): unpack it "
        "into the folder and keep its UUID and definition",
    )
    modes.add_argument(
        "--adopt",
        action="store_true",
        help="write the definition of the existing study --study into the configuration",
    )
    parser.add_argument(
        "--title", help="with --create: the study's title (default: the folder's name)"
    )


def _json_and_mappings(parser: argparse.ArgumentParser) -> None:
    """`[--json] [MAPPING ...]`: check, status, results."""
    _json(parser)
    _mappings(parser)


def _sync(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    _json(parser)
    parser.add_argument(
        "--yes",
        action="store_true",
        help="carry out deletions a safety guard withheld, and let a first sync replace "
        "server files this folder never synced",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also delete server files that were never synced from this folder (a copy of "
        "each is kept)",
    )
    _mappings(parser)


def add_pull_arguments(parser: argparse.ArgumentParser) -> None:
    """`pull [--force] [--json] [MAPPING]`."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace local files that differ from the server's; a copy of each is kept "
        "in the state directory",
    )
    _json(parser)
    _one_mapping(parser)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """`export [MAPPING] [-o FILE]`."""
    _one_mapping(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the archive (default: <mapping>-<UTC time>.jzip here)",
    )


def add_links_arguments(parser: argparse.ArgumentParser) -> None:
    """`links [MAPPING] [--type T] [--amount N] [--batch ID] [--comment TEXT] [--json]`."""
    _one_mapping(parser)
    parser.add_argument(
        "--type",
        choices=LINK_TYPES,
        default=DEFAULT_LINK_TYPE,
        metavar="TYPE",
        help=f"the kind of link: {', '.join(LINK_TYPES)} (default: {DEFAULT_LINK_TYPE})",
    )
    parser.add_argument(
        "--amount",
        type=int,
        default=1,
        help=f"how many personal links to make (1-{MAX_LINKS}; a general link is one for all)",
    )
    parser.add_argument(
        "--batch", type=int, metavar="ID", help="the batch's ID (default: the study's first)"
    )
    parser.add_argument("--comment", help="a note JATOS keeps with personal links")
    _json(parser)


def _config(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(config_help=parser.format_help)
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", title="subcommands")
    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of jatos-sync.yaml (for editors)",
        description="Print the JSON Schema of jatos-sync.yaml, for editors that\n"
        "complete and check the file as you type.",
        formatter_class=_Formatter,
    )
    _add_global_options(schema, before_the_command=False)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """`demo [--once] [--folder DIR]`."""
    parser.add_argument(
        "--once", action="store_true", help="sync once and stop instead of watching for edits"
    )
    parser.add_argument(
        "--folder",
        metavar="DIR",
        help="copy the sample experiment into this new or empty folder and keep it "
        "(default: a temporary folder, removed at the end)",
    )


def version_text() -> str:
    return f"jatos-sync {__version__}"


def _commands() -> list[tuple[str, str, Callable[[argparse.ArgumentParser], None], str]]:
    """(name, summary, its arguments, its epilog), in the order people need them."""
    return [
        ("init", "write jatos-sync.yaml; asks on a terminal", add_init_arguments, INIT_EPILOG),
        (
            "check",
            "is everything in place? server, token, study, folder",
            _json_and_mappings,
            _examples(("check", "every mapping"), ("check stroop", "one")),
        ),
        ("sync", "make each study match its folder, once", _sync, SYNC_EPILOG),
        ("watch", "sync, then upload each file you save (Ctrl-C stops)", _mappings, WATCH_EPILOG),
        (
            "status",
            "what sync would change; changes nothing",
            _json_and_mappings,
            _examples(
                ("status", "every mapping, and what a running watch does"),
                ("status --json", "the same for a script"),
            ),
        ),
        ("pull", "download a study's files into its folder", add_pull_arguments, PULL_EPILOG),
        (
            "results",
            "bring the participants' results home, once",
            _json_and_mappings,
            RESULTS_EPILOG,
        ),
        (
            "export",
            "save a study as a .jzip archive",
            add_export_arguments,
            _examples(
                ("export", "<mapping>-<UTC time>.jzip here"),
                ("export stroop -o stroop-v1.jzip", "a file of your choice"),
            ),
        ),
        ("links", "make links for participants, one per line", add_links_arguments, LINKS_EPILOG),
        (
            "config",
            "about the configuration file itself",
            _config,
            _examples(("config schema > jatos-sync.schema.json", "for your editor")),
        ),
        ("demo", "try it all against a built-in JATOS stand-in", add_demo_arguments, DEMO_EPILOG),
    ]
