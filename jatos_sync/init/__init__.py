"""`jatos-sync init`: write a commented `jatos-sync.yaml`, then run `check`.

The conversation (or the flags, without a terminal) is questions.py's, the file's text
render.py's. Either way it refuses to overwrite an existing file without `--force` (with
it, the old file's answers are the defaults, and the old file is kept as .bak), validates
the text it is about to write with the real config parser, writes it atomically, and ends
with `check` (a callable from the CLI) whose exit code it returns. No log line interrupts
the conversation: logging is silenced until the file is written.

It must never write, print or log the token: the YAML names only where the token is
(`token_file` or `token_env`). It does not sync anything, and talks to the server only to
list the user's studies (docs/jatos-api.md §10.1).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from jatos_sync.client import JatosClient
from jatos_sync.config import default_config_path, load_config, parse_config
from jatos_sync.credentials import Token
from jatos_sync.errors import EXIT_CONFIG, ConfigError, JatosSyncError, worst_exit_code
from jatos_sync.init import study as study_modes
from jatos_sync.init.questions import (
    InputEndedError,
    Previous,
    Session,
    default_name,
    default_token_file,
    normalize_url,
    parse_study_ref,
    pick_study,
    row_label,
    study_table,
)
from jatos_sync.init.render import (
    Answers,
    render_config,
    store_token,
    write_config,
    yaml_quote,
)
from jatos_sync.logs import is_terminal, redact, silenced

__all__ = [
    "Answers",
    "default_name",
    "default_token_file",
    "normalize_url",
    "parse_study_ref",
    "pick_study",
    "render_config",
    "row_label",
    "run",
    "store_token",
    "study_table",
    "write_config",
    "yaml_quote",
]


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str],
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
    client_factory: Callable[[str, Token], JatosClient],
    check: Callable[[Path], int],
    sync: Callable[[Path], int] | None = None,
    read_secret: Callable[[str], str] = getpass.getpass,
    cwd: Path | None = None,
) -> int:
    """The `init` command; returns `check`'s exit code (with --create, the worse of the
    sync's and check's), or 2 when nothing was written."""
    here = cwd or Path.cwd()
    target = Path(args.config) if getattr(args, "config", None) else default_config_path(environ)
    config_path = Path(os.path.abspath(here / target.expanduser()))
    force = bool(getattr(args, "force", False))
    if config_path.exists() and not force:
        print(
            f"jatos-sync init: {config_path} already exists. Use --force to replace it (the "
            "old file is kept as .bak), or -c OTHER.yaml to write another file.",
            file=err,
        )
        return EXIT_CONFIG
    interactive = is_terminal(stdin)
    mode = study_modes.mode_of(args)
    if mode == "create" and sync is None:
        raise ConfigError("init --create needs the sync command to create the study")
    session = Session(
        args,
        environ=environ,
        stdin=stdin,
        out=out,
        read_secret=read_secret,
        client_factory=client_factory,
        here=here,
        config_path=config_path,
        interactive=interactive,
        previous=_previous(config_path) if force else None,
    )
    if not interactive:
        needed = study_modes.required_flags(mode)
        missing = [flag for flag in needed if not session.given(flag[2:].replace("-", "_"))]
        if missing:
            example = {
                "create": "--create --url https://jatos.example.org --folder experiment",
                "from_archive": "--from study.jzip --url https://jatos.example.org",
                "adopt": "--adopt --url https://jatos.example.org --study 42",
            }.get(mode or "", "--url https://jatos.example.org --study 42 --folder experiment")
            print(
                "jatos-sync init: not on a terminal, so nothing can be asked; give "
                + " and ".join(missing)
                + f" (and optionally --folder, --token-file, --name). Example: jatos-sync init "
                f"{example}",
                file=err,
            )
            return EXIT_CONFIG
    try:
        with silenced():
            answers = study_modes.collect(session, mode) if mode else session.collect()
        text = render_config(answers, config_path=config_path)
        # The real parser is the judge: never write a file the other commands would refuse.
        study_modes.check_written(parse_config(text, path=config_path), answers)
        backup = write_config(config_path, text)
    except InputEndedError:
        print("jatos-sync init: the input ended; nothing was written.", file=err)
        return EXIT_CONFIG
    except JatosSyncError as exc:
        print(f"jatos-sync init: {redact(str(exc))}", file=err)
        return exc.exit_code
    except OSError as exc:
        print(f"jatos-sync init: could not write {config_path}: {exc.strerror or exc}", file=err)
        return EXIT_CONFIG
    print(f"\nWrote {config_path}", file=out)
    if backup is not None:
        print(f"  (the previous file is kept as {backup})", file=out)
    synced = 0
    if mode == "create" and sync is not None:
        print("Creating the study and uploading the folder (jatos-sync sync):", file=out)
        out.flush()
        synced = sync(config_path)
    print("Checking the setup (jatos-sync check):", file=out)
    out.flush()
    code = worst_exit_code([synced, check(config_path)])
    default = Path(os.path.abspath(here / default_config_path(environ).expanduser()))
    option = "" if config_path == default else f"-c {config_path} "
    _next_steps(answers, config_path, option, code, out, token_in_env=session.token_needs_export)
    return code


def _previous(config_path: Path) -> Previous | None:
    """The answers of the file `--force` replaces, if it can be read."""
    if not config_path.exists():
        return None
    try:
        return Previous.of(load_config(config_path))
    except JatosSyncError:
        return None  # a broken file offers no defaults; it is still kept as .bak


def _next_steps(
    answers: Answers, config_path: Path, option: str, code: int, out: TextIO, *, token_in_env: bool
) -> None:
    """What to do now; `option` is the `-c FILE ` the user must add ("" for the default)."""
    print("", file=out)
    if token_in_env:
        print(
            f"Before syncing, put your token into ${answers.token_env} in your shell "
            f"(export {answers.token_env}=…), or name a token file with --token-file.",
            file=out,
        )
    if code != 0:
        print(
            "Fix what `check` reported above (or edit the file), then run "
            f"`jatos-sync {option}check` again.",
            file=out,
        )
        return
    name = shlex.quote(answers.name)
    steps = [
        (f"jatos-sync {option}status", "what a sync would change"),
        (f"jatos-sync {option}sync", "upload the folder to the study"),
        (f"jatos-sync {option}watch", "keep syncing while you edit"),
    ]
    try:
        empty = not [p for p in answers.folder.iterdir() if p != config_path]
    except OSError:
        empty = False
    if empty:  # a new lab member starts from the server's copy
        steps.insert(0, (f"jatos-sync {option}pull {name}", "download the study's files"))
    if answers.definition is not None:  # the study is code: its lifecycle
        steps[1] = (f"jatos-sync {option}sync", "upload the folder, then the study's definition")
        steps += [
            (f"jatos-sync {option}links {name}", "a link for participants"),
            (f"jatos-sync {option}export {name}", "a snapshot of the study as a .jzip"),
        ]
    width = max(len(command) for command, _ in steps)
    print("Next steps:", file=out)
    for command, what in steps:
        print(f"  {command.ljust(width)}   {what}", file=out)
