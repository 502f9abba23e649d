"""The configuration file that `jatos-sync init` writes: its text, and writing it (and a
token file) to disk.

Owns `Answers` (everything the file says; never the token) and `render_config`, which is
pure: the real parser accepts what it returns. `write_config` writes atomically and keeps
an existing file as `.bak`; `store_token` writes a file only the user can read. It must
never put the token into the configuration text.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from jatos_sync.config import SCHEMA_PATH
from jatos_sync.credentials import DEFAULT_TOKEN_ENV, Token
from jatos_sync.definition import Definition, json_value
from jatos_sync.state import replace_file, write_private

WHERE_TO_CREATE = "Create one in JATOS: your user menu (top right) → API tokens → New token."


@dataclass(frozen=True)
class Answers:
    """Everything the configuration file says; never the token itself."""

    url: str
    folder: Path  # absolute
    study: str  # numeric ID or lower-case UUID
    name: str
    token_file: Path | None = None  # None: the token is read from $token_env
    token_env: str = DEFAULT_TOKEN_ENV
    study_title: str = ""
    ignore: tuple[str, ...] = field(default_factory=tuple)
    create: bool = False  # create: true (the study is a UUID)
    definition: Definition | None = None  # the study itself, as code


def yaml_quote(text: str) -> str:
    """`text` as a YAML double-quoted scalar that reads back as exactly `text`."""
    out: list[str] = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _shown_path(path: Path, *, base: Path) -> str:
    """`path` for the file: relative to `base` when inside it, `~/…` under home."""
    try:
        relative = path.relative_to(base)
    except ValueError:
        pass
    else:
        return relative.as_posix() if relative.parts else "."
    with contextlib.suppress(ValueError, RuntimeError):
        return "~/" + path.relative_to(Path("~").expanduser()).as_posix()
    return str(path)


def one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def render_config(answers: Answers, *, config_path: Path, today: date | None = None) -> str:
    """The commented configuration file. Pure; `parse_config` accepts what it returns."""
    base = config_path.parent
    written = (today or date.today()).isoformat()
    if answers.token_file is not None:
        token_lines = [
            f"  token_file: {yaml_quote(_shown_path(answers.token_file, base=base))}"
            "   # holds only the token; chmod 600",
            f"  # token_env: {DEFAULT_TOKEN_ENV}   # or: read it from this environment variable",
        ]
    else:
        token_lines = [
            f"  token_env: {answers.token_env}   # the environment variable that holds the token",
            "  # token_file: ~/.config/jatos-sync/token   # or: a file only you can read",
        ]
    study = answers.study if answers.study.isdigit() else yaml_quote(answers.study)
    title = f" ({one_line(answers.study_title)})" if answers.study_title else ""
    ignore = "[" + ", ".join(yaml_quote(p) for p in answers.ignore) + "]"
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_PATH.as_uri()}",
        f"# jatos-sync configuration, written by `jatos-sync init` on {written}.",
        "# Test it with `jatos-sync check`; see what a sync would do with `jatos-sync status`.",
        "# Lines starting with # are comments; remove the # of an optional setting to use it.",
        "",
        "server:",
        "  # The address of your JATOS server, as in the browser, without /jatos/… (keep a",
        "  # path prefix if your JATOS has one).",
        f"  url: {yaml_quote(answers.url)}",
        "  # Where jatos-sync finds your JATOS API token (jap_…). The token itself never goes",
        f"  # into this file. {WHERE_TO_CREATE}",
        *token_lines,
        "  # Optional settings:",
        "  # timeout: 30s        # for each request to the server",
        "  # retries: 4          # after a dropped connection, a timeout or HTTP 502/503/504",
        "  # concurrency: 4      # how many files are sent at the same time (1-32)",
        "  # verify_tls: true    # false only for a test server with a self-signed certificate",
        "",
        "# Where jatos-sync remembers what it synced and keeps backups of replaced files",
        "# (default: ~/.local/state/jatos-sync). It must be outside every synced folder.",
        "# state_dir: ~/.local/state/jatos-sync",
        "",
        "# How `jatos-sync watch` follows your edits:",
        "# watch:",
        "#   debounce: 300ms          # a file still open for writing waits this quiet time",
        "#   delete_delay: 2s         # deletions wait this long (editors delete and recreate)",
        "#   reconcile_interval: 10m  # compare with the server in full this often",
        "#   polling: auto            # auto, always or never: check the folder by polling",
        "",
        "# Each mapping keeps one study's files identical to one local folder.",
        "mappings:",
        f"  - name: {yaml_quote(answers.name)}   # for the command line: jatos-sync sync NAME",
        "    # The local folder; a relative path is relative to this file.",
        f"    folder: {yaml_quote(_shown_path(answers.folder, base=base))}",
        f"    # The study's ID or UUID, as shown on its page in JATOS{title}.",
        f"    study: {study}",
        "    # Files that are never synced, in .gitignore syntax, on top of the built-in list",
        "    # (.git, .DS_Store, editor backups, …). A .jatosignore file in the folder works too.",
        f"    ignore: {ignore}",
        "    # Delete a file on the server when you delete it locally.",
        "    delete: true",
        "    # Optional settings:",
        "    # backup: true            # keep a copy of a server file someone else changed",
        "    # max_delete: 500         # hold back a pass that would delete more files",
        "    # max_delete_percent: 50  # ... or more than this share of the study's files",
        *definition_lines(answers),
        "",
    ]
    return "\n".join(lines)


def definition_lines(answers: Answers) -> list[str]:
    """`create:` and `definition:` of the mapping, when the study is code."""
    definition = answers.definition
    if definition is None:
        return []
    lines = [
        "    # Create the study, with the UUID above, on a server that has none (a new lab",
        "    # server, a review server); where it exists, sync keeps it in step.",
        "    create: true" if answers.create else "    # create: true",
        "    # The study itself, kept in step by `jatos-sync sync` and `watch` after the files.",
        "    # Keys left out take JATOS's defaults. A component left out is deactivated, never",
        "    # deleted; its uuid identifies it, so a new title does not make a new component.",
        "    definition:",
        f"      title: {yaml_quote(definition.title)}",
    ]
    texts = (
        ("description", definition.description),
        ("comments", definition.comments),
        ("end_redirect_url", definition.end_redirect_url),
        ("entry_message", definition.entry_message),
    )
    lines += [f"      {key}: {yaml_quote(value)}" for key, value in texts if value]
    if definition.input is not None:
        lines.append(f"      input: {yaml_json(definition.input)}   # any JSON value")
    flags = (
        ("linear", definition.linear),
        ("allow_preview", definition.allow_preview),
        ("group_study", definition.group_study),
    )
    lines += [f"      {key}: true" for key, value in flags if value]
    if not definition.components:
        lines.append("      components: []   # add one per HTML page: - title: …, html: …")
        return lines
    lines.append("      components:   # in study order")
    for c in definition.components:
        lines += [
            f"        - title: {yaml_quote(c.title)}",
            f"          html: {yaml_quote(c.html)}",
        ]
        if c.uuid:
            lines.append(f"          uuid: {c.uuid}")
        if c.input is not None:
            lines.append(f"          input: {yaml_json(c.input)}")
        if c.reloadable:
            lines.append("          reloadable: true")
        if not c.active:
            lines.append("          active: false")
        if c.comments:
            lines.append(f"          comments: {yaml_quote(c.comments)}")
    return lines


def yaml_json(text: str) -> str:
    """Stored JSON text as a YAML flow value that reads back as the same JSON value."""
    value = json_value(text)
    if isinstance(value, str):
        return yaml_quote(value)
    return _flow(value)


def _flow(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, float):
        mantissa, e, exponent = repr(value).partition("e")
        # YAML 1.1 reads a float only with a dot before its exponent (1e+100 is text there).
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}{e}{exponent}"
    if isinstance(value, str):
        return yaml_quote(value)
    return json.dumps(value)


def write_config(path: Path, text: str) -> Path | None:
    """Write `text` to `path` atomically; an existing file is kept as `<path>.bak`.

    Returns the backup's path, if one was made.
    """
    backup: Path | None = None
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
    # 0o666 before the umask, like any new file: the file holds no secret.
    replace_file(path, text.encode("utf-8"), mode=0o666)
    return backup


def store_token(path: Path, token: Token) -> None:
    """Write the token to `path`, readable by the user only (directory 0700, file 0600),
    atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, (token.reveal() + "\n").encode("utf-8"))
