"""The modes of `jatos-sync init` that make the study itself code.

- `--create`: a new study from a folder. A new UUID, `create: true`, and a definition
  titled after `--title` (or the folder) with one component per top-level HTML page
  (`index.html` first), each with its own new `uuid:`. The command then syncs (which
  creates the study and uploads the files) and checks.
- `--from FILE.jzip`: an archive that jspsych-builder, lab.js or a JATOS export made. Its
  assets are unpacked into the folder (never replacing a local file with other content),
  and the configuration names the archive's UUID with `create: true` and its `.jas` as the
  definition, so the next sync updates that study rather than making a second one.
- `--adopt`: an existing study. Its archive is exported (the `.jas` holds every property,
  also the description that JATOS 3.9 and older do not show otherwise), missing files are
  unpacked into the folder (local files are kept), and the study's definition is written
  into the configuration.

Owns these three conversations; the questions they share are questions.py's, the file's
text render.py's, archives jzip.py's and definitions definition.py's. It must never write,
print or log the token.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from jatos_sync.config import Config
from jatos_sync.credentials import DEFAULT_TOKEN_ENV, Token, check_token_format, token_from_file
from jatos_sync.definition import (
    ComponentDef,
    Definition,
    default_title,
    html_path_problem,
    title_problem,
)
from jatos_sync.errors import ArchiveError, ConfigError
from jatos_sync.ignore import IgnoreRules
from jatos_sync.init.questions import Session
from jatos_sync.init.render import Answers
from jatos_sync.jzip import read_archive, unpack_assets
from jatos_sync.studies import export_checked
from jatos_sync.study_json import definition_from_jas

MODES = ("create", "from_archive", "adopt")
_TITLE_TAG = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HEAD_BYTES = 64 * 1024


def mode_of(args: argparse.Namespace) -> str | None:
    return next((m for m in MODES if getattr(args, m, None)), None)


def required_flags(mode: str | None) -> list[str]:
    """The flags a mode needs when nothing can be asked (no terminal)."""
    return {"create": ["--url"], "from_archive": ["--url"]}.get(mode or "", ["--url", "--study"])


def collect(session: Session, mode: str) -> Answers:
    if session.interactive:
        session.say("Press Enter to accept the [default]; Ctrl-C to stop without writing.\n")
    if mode == "create":
        return _create(session)
    if mode == "from_archive":
        return _from_archive(session)
    return _adopt(session)


# ------------------------------------------------------------------------------ --create


def _create(session: Session) -> Answers:
    url = session.url()
    token_file, token = session.token(url)
    url, _ = session.reach(url, token or session.quiet_token(token_file), listing=False)
    folder = session.folder()
    title = session.args.title
    if not title:
        title = default_title(folder.name)
        if session.interactive:
            title = session.ask("The study's title", default=title)
    if problem := title_problem(title, study=True):
        raise ConfigError(f"--title: {problem}")
    components = page_components(folder, say=session.say)
    if not components:
        session.say(
            f"  {folder} has no HTML page at its top level yet: the study starts without "
            "components (add them under definition: components: in the file)."
        )
    definition = Definition(title=title, components=tuple(components))
    return session.answers(
        url,
        token_file,
        folder,
        str(uuid.uuid4()),
        title=title,
        create=True,
        definition=definition,
    )


def page_components(folder: Path, *, say: Callable[[str], None]) -> list[ComponentDef]:
    """One component per top-level HTML page JATOS can serve as one, `index.html` first,
    each titled after its <title> (else its name) and with a new UUID."""
    try:
        rules = IgnoreRules.for_folder(folder)
        names = sorted(
            (e.name for e in os.scandir(folder) if e.name.lower().endswith((".html", ".htm"))),
            key=lambda n: (n != "index.html", n.lower()),
        )
    except OSError as exc:
        raise ConfigError(f"cannot read {folder}: {exc.strerror or exc}") from exc
    components = []
    for name in names:
        path = folder / name
        if rules.match_entry(name) or not path.is_file() or path.stat().st_size == 0:
            continue
        if problem := html_path_problem(name):
            say(f"  {name} cannot be a component: {problem}")
            continue
        components.append(ComponentDef(title=_page_title(path), html=name, uuid=str(uuid.uuid4())))
    return components


def _page_title(path: Path) -> str:
    """The page's <title>, if JATOS would take it as a component title, else its name."""
    fallback = re.sub(r"[_-]+", " ", path.stem).strip().capitalize() or path.stem
    try:
        with path.open("rb") as stream:
            head = stream.read(_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return fallback
    found = _TITLE_TAG.search(head)
    if found is None:
        return fallback
    title = " ".join(html.unescape(found.group(1)).split())[:255]
    return title if title and title_problem(title, study=False) is None else fallback


# ------------------------------------------------------------------------------ --from


def _from_archive(session: Session) -> Answers:
    source = Path(os.path.abspath(session.here / Path(session.args.from_archive).expanduser()))
    archive = read_archive(source)
    adopted = definition_from_jas(archive.jas)
    packed = {str(p) for p in archive.files}
    for component in adopted.definition.components:
        if component.html not in packed:
            raise ArchiveError(
                f"{source}: the HTML file of component {component.title!r} "
                f"({component.html}) is not in the archive; nothing was unpacked"
            )
    url = session.url()
    token_file, token = session.token(url)
    url, _ = session.reach(url, token or session.quiet_token(token_file), listing=False)
    default = adopted.dir_name or re.sub(r"[^A-Za-z0-9_-]+", "_", source.stem) or "study"
    folder = session.folder(default=default)
    study = adopted.uuid
    if study is None:
        study = str(uuid.uuid4())
        session.say(f"  The archive names no study UUID; the new study gets {study}.")
    written, _kept = unpack_assets(source, archive, folder)
    session.say(f"  Unpacked {len(written)} file(s) of {source.name} into {folder}.")
    for name in archive.ignored:
        session.say(f"  Left out {name}: not part of the study's files.")
    return session.answers(
        url,
        token_file,
        folder,
        study,
        title=adopted.definition.title,
        create=True,
        definition=adopted.definition,
    )


# ------------------------------------------------------------------------------ --adopt


def _adopt(session: Session) -> Answers:
    url = session.url()
    token_file, token = session.token(url)
    token = token or _token(session, token_file)
    listing = not session.given("study")
    url, studies = session.reach(url, token, listing=listing)
    folder = session.folder()
    ref, _title = session.study(url, studies if listing else None)
    client = session.client_factory(url, token)
    with client, tempfile.TemporaryDirectory(prefix="jatos-sync-adopt-") as tmp:
        archive_path = Path(tmp) / "study.jzip"
        try:
            study, archive = export_checked(client, ref, archive_path)
        except ArchiveError as exc:
            raise ConfigError(f"the export of study {ref} is not whole ({exc})") from None
        adopted = definition_from_jas(archive.jas)
        written, kept = unpack_assets(archive_path, archive, folder, keep_existing=True)
    session.say(
        f"  Study {study.title!r} ({study.uuid}): {len(adopted.definition.components)} "
        f"component(s); {len(written)} file(s) downloaded into {folder}."
    )
    if kept:
        session.say(
            f"  Kept {len(kept)} local file(s) that differ from the server's (e.g. {kept[0]}); "
            "`jatos-sync status` shows what a sync would change."
        )
    if study.locked:
        session.say("  Note: the study is locked in JATOS; unlock it before syncing changes.")
    return session.answers(
        url, token_file, folder, study.uuid, title=study.title, definition=adopted.definition
    )


def _token(session: Session, token_file: Path | None) -> Token:
    """The token `--adopt` needs to read the study: from `--token-file`, else the
    environment."""
    if token_file is not None:
        return token_from_file(token_file)
    text = session.environ.get(DEFAULT_TOKEN_ENV, "")
    if not text.strip():
        raise ConfigError(
            f"init --adopt reads the study from the server and needs the API token: put it "
            f"into ${DEFAULT_TOKEN_ENV}, or give --token-file"
        )
    return check_token_format(text, source=f"${DEFAULT_TOKEN_ENV}")


# ------------------------------------------------------------------------------ the file


def check_written(config: Config, answers: Answers) -> None:
    """The definition must read back from the file exactly as it was meant (YAML and JSON
    differ in corners, such as numbers written 1e+100)."""
    written = config.mappings[0].definition if config.mappings else None
    if written != answers.definition:
        raise ConfigError(
            "the definition could not be written so that it reads back the same (an input "
            "with a value YAML reads differently?); nothing was written"
        )
