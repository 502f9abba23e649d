"""The `jatos-sync init` conversation: on a terminal it asks for the JATOS address, the API
token (pasted with the input hidden, and then optionally stored in a file only the user
can read), the folder and — with a token — which of the user's studies to sync, from a
table whose rows are letters (a number typed is always a study ID), confirmed by the
study's title. Without a terminal it takes the flags.

With a token it tries the address at once (one request, no retries): an address that leads
nowhere — no server, https:// to a server that speaks plain http://, a page that is not
JATOS — is asked for again on a terminal, with a better address as the default where one
can be guessed, and stops init without one, so that no file names a server that cannot
work. With `--force`, the answers of the file being replaced are the defaults.

Owns `Session`, `Previous` and the pure helpers of the questions (addresses, study
references, the table). It must never write, print or log the token.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from jatos_sync.client import JatosClient, host_is_loopback
from jatos_sync.config import Config, web_address
from jatos_sync.credentials import DEFAULT_TOKEN_ENV, Token, check_token_format, token_from_file
from jatos_sync.definition import UUID, Definition
from jatos_sync.errors import (
    ConfigError,
    JatosSyncError,
    ServerUnavailableError,
    UnsupportedServerError,
)
from jatos_sync.ignore import literal_pattern
from jatos_sync.init.render import WHERE_TO_CREATE, Answers, one_line, store_token
from jatos_sync.logs import redact
from jatos_sync.model import MAX_ID, StudyInfo
from jatos_sync.paths import is_inside, resolved

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,99}")
_PASTE_ATTEMPTS = 3


class InputEndedError(Exception):
    """stdin closed while a question was open."""


@dataclass(frozen=True)
class Previous:
    """The answers of the file that `init --force` replaces: the defaults of the questions,
    and of the flags left out when nothing can be asked."""

    url: str
    token_file: Path | None = None
    folder: Path | None = None
    study: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, config: Config) -> Previous:
        first = config.mappings[0] if config.mappings else None
        return cls(
            url=config.server.url,
            token_file=config.server.token_file,
            folder=first.folder if first else None,
            study=first.study if first else None,
            name=first.name if first else None,
        )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from, wraps or carries as its reason."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += list(getattr(current, "args", ()))
        pending += [e for e in linked if isinstance(e, BaseException)]


def speaks_no_tls(exc: BaseException) -> bool:
    """Whether a connection failed in the TLS handshake for another reason than an untrusted
    certificate: typically https:// to a server that speaks plain http://."""
    return any(
        isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLCertVerificationError)
        for e in _causes(exc)
    )


def wrong_address(url: str, exc: JatosSyncError) -> tuple[str, str]:
    """(what to tell the user, the address to offer instead) after `url` led nowhere."""
    if url.startswith("https://") and speaks_no_tls(exc):
        plain = "http://" + url[len("https://") :]
        return (
            f"{url} did not answer in TLS (https://): the server may speak plain http://, "
            f"at {plain}",
            plain,
        )
    return redact(str(exc)).rstrip("."), url


def normalize_url(text: str) -> tuple[str, str]:
    """(base URL, a note for the user or "") from what the user typed or pasted.

    Accepts a bare host name (https:// is assumed) and an address copied from the browser
    (`…/jatos/studies/12` → the part before `/jatos/`). Raises ValueError with the reason.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("enter the address of your JATOS server, e.g. https://jatos.example.org")
    note = ""
    if "://" not in raw:
        raw = "https://" + raw
        note = "assumed https://"
    base, path = web_address(raw)
    cut = path.rfind("/jatos/")
    if cut >= 0:
        path = path[:cut]
        note = "used the base address, without /jatos/…"
    if "?" in raw or "#" in raw:
        note = note or "left out the ?query/#fragment"
    return base + path, note


def parse_study_ref(text: str) -> str | None:
    """A study ID ("42") or lower-case UUID from user input; None if it is neither."""
    value = text.strip()
    if value.isdigit() and value.isascii() and 1 <= int(value) <= MAX_ID:
        return str(int(value))
    if UUID.fullmatch(value):
        return value.lower()
    return None


def default_token_file(environ: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/jatos-sync/token`, else `~/.config/jatos-sync/token`."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "jatos-sync" / "token"
    home = environ.get("HOME", "")
    return (Path(home) if home else Path.home()) / ".config" / "jatos-sync" / "token"


def default_name(folder: Path, study: str) -> str:
    """The mapping's name: the folder's name if it is a plain one, else `study-<ref>`."""
    if _SAFE_NAME.fullmatch(folder.name) and folder.name == folder.name.strip():
        return folder.name
    return f"study-{study}"[:100]


class Session:
    """One init conversation (or the flags, when there is no terminal)."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        environ: Mapping[str, str],
        stdin: TextIO,
        out: TextIO,
        read_secret: Callable[[str], str],
        client_factory: Callable[[str, Token], JatosClient],
        here: Path,
        config_path: Path,
        interactive: bool,
        previous: Previous | None = None,
    ) -> None:
        self.args = args
        self.environ = environ
        self.stdin = stdin
        self.out = out
        self.read_secret = read_secret
        self.client_factory = client_factory
        self.here = here
        self.config_path = config_path
        self.interactive = interactive
        self.previous = previous
        self.token_needs_export = False

    def given(self, flag: str) -> str | None:
        """A flag's value (`flag` as in `args`); without a terminal, a flag left out takes
        the answer of the file `--force` replaces."""
        value: str | None = getattr(self.args, flag, None)
        if value or self.interactive or self.previous is None:
            return value
        previous = getattr(self.previous, flag, None)
        return str(previous) if previous is not None else None

    def remembered(self, flag: str) -> str:
        """The replaced file's answer to a question, as its default ("" without one)."""
        value = getattr(self.previous, flag, None) if self.previous is not None else None
        return "" if value is None else str(value)

    # -- talking ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def ask(self, question: str, default: str = "") -> str:
        shown = f" [{default}]" if default else ""
        self.out.write(f"{question}{shown}: ")
        self.out.flush()
        line = self.stdin.readline()
        if not line:
            raise InputEndedError
        return line.strip() or default

    def confirm(self, question: str, *, default: bool) -> bool:
        while True:
            answer = self.ask(f"{question} {'[Y/n]' if default else '[y/N]'}").lower()
            if not answer:
                return default
            if answer in ("y", "yes", "j", "ja"):
                return True
            if answer in ("n", "no", "nein"):
                return False
            self.say("Please answer y or n.")

    # -- the steps ---------------------------------------------------------------------------

    def collect(self) -> Answers:
        if self.interactive:
            self.say("Let's connect a local folder with a study on your JATOS server.")
            self.say("Press Enter to accept the [default]; Ctrl-C to stop without writing.\n")
        url = self.url()
        token_file, token = self.token(url)
        listing = token is not None and not self.given("study")
        url, studies = self.reach(url, token or self.quiet_token(token_file), listing=listing)
        folder = self.folder()
        study, title = self.study(url, studies if listing else None)
        return self.answers(url, token_file, folder, study, title=title)

    def answers(
        self,
        url: str,
        token_file: Path | None,
        folder: Path,
        study: str,
        *,
        title: str = "",
        create: bool = False,
        definition: Definition | None = None,
    ) -> Answers:
        """What the file will say, with the rules that keep the configuration file and the
        token file out of the synced folder."""
        name = self.given("name") or self.remembered("name") or default_name(folder, study)
        ignore: list[str] = []
        if is_inside(self.config_path, folder):
            # The config file sits in the synced folder: never upload it, nor copies of it
            # such as the .bak that --force keeps, as study assets. (Loading the file adds
            # this rule anyway; written out, the user sees it.)
            inner = resolved(self.config_path).relative_to(resolved(folder))
            ignore.append(literal_pattern(inner.as_posix()) + "*")
        if token_file is not None and is_inside(token_file, folder):
            raise ConfigError(
                f"the token file {token_file} is inside the synced folder {folder}, so it "
                f"would be uploaded to the study for anyone to download. Move it, e.g. to "
                f"{default_token_file(self.environ)}, and give that with --token-file."
            )
        return Answers(
            url=url,
            folder=folder,
            study=study,
            name=name,
            token_file=token_file,
            study_title=title,
            ignore=tuple(ignore),
            create=create,
            definition=definition,
        )

    def url(self, *, again: str | None = None) -> str:
        """The server's address: --url, else asked. `again`: the address to offer after one
        that led nowhere; it is asked for then, whatever --url said."""
        given = None if again is not None else self.given("url")
        default = again if again is not None else self.remembered("url")
        while True:
            text = given or self.ask("JATOS address (e.g. https://jatos.example.org)", default)
            try:
                url, note = normalize_url(text)
            except ValueError as exc:
                if given or not self.interactive:
                    raise ConfigError(f"--url: {exc}") from None
                self.say(f"  {exc}")
                continue
            if note:
                self.say(f"  Using {url} ({note}).")
            if url.startswith("http://") and not host_is_loopback(url):
                self.say(
                    "  Warning: with http:// the token travels unencrypted; use https:// if "
                    "your server offers it."
                )
            return url

    def token(self, url: str) -> tuple[Path | None, Token | None]:
        """(token file for the config or None for $JATOS_TOKEN, the token to list studies)."""
        given = self.given("token_file")
        if given:
            path = Path(os.path.abspath(self.here / Path(given).expanduser()))
            if not self.interactive or self.args.study:
                return path, None
            return path, self._load_from_file(path)
        if not self.interactive:
            return None, None
        if self.environ.get(DEFAULT_TOKEN_ENV, "").strip() and self.confirm(
            f"Use the API token in ${DEFAULT_TOKEN_ENV}?", default=True
        ):
            try:
                token = check_token_format(
                    self.environ[DEFAULT_TOKEN_ENV], source=f"${DEFAULT_TOKEN_ENV}"
                )
            except ConfigError as exc:
                self.say(f"  {exc}")
            else:
                return None, token
        before = self.previous.token_file if self.previous is not None else None
        if (
            before is not None
            and before.exists()
            and self.confirm(f"Use the API token stored in {before}?", default=True)
            and (from_file := self._load_from_file(before)) is not None
        ):
            return before, from_file
        stored = default_token_file(self.environ)
        if (
            stored != before
            and stored.exists()
            and self.confirm(f"Use the API token stored in {stored}?", default=True)
        ):
            from_file = self._load_from_file(stored)
            if from_file is not None:
                return stored, from_file
        return self._paste(stored)

    def _load_from_file(self, path: Path) -> Token | None:
        try:
            return token_from_file(path)
        except ConfigError as exc:
            self.say(f"  {exc}")
            return None

    def _paste(self, stored: Path) -> tuple[Path | None, Token | None]:
        self.say(f"jatos-sync needs a JATOS API token. {WHERE_TO_CREATE}")
        token: Token | None = None
        for _attempt in range(_PASTE_ATTEMPTS):
            text = self.read_secret("Paste the token (the input stays hidden), or just Enter: ")
            if not text.strip():
                break
            try:
                token = check_token_format(text, source="the pasted token")
                break
            except ConfigError as exc:
                self.say(f"  {exc}")
        if token is None:
            self.say(
                f"  Going on without a token; the file will read it from ${DEFAULT_TOKEN_ENV}."
            )
            self.token_needs_export = True
            return None, None
        if stored.exists():
            with contextlib.suppress(ConfigError):
                if self._quiet_load(stored) == token:
                    return stored, token  # the same token is already stored there
            if not self.confirm(f"{stored} holds another token. Replace it?", default=False):
                self.token_needs_export = True
                return None, token
        elif not self.confirm(f"Store the token in {stored}, readable only by you?", default=True):
            self.token_needs_export = True
            return None, token
        store_token(stored, token)
        self.say(f"  Stored in {stored} (mode 600).")
        return stored, token

    def _quiet_load(self, path: Path) -> Token | None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return check_token_format(text, source=str(path))

    def folder(self, default: str = ".") -> Path:
        given = self.given("folder")
        default = self.remembered("folder") or default
        while True:
            if given or not self.interactive:
                text = given or default
            else:
                text = self.ask("Local folder to sync", default=default)
            folder = Path(os.path.abspath(self.here / Path(text).expanduser()))
            if folder.is_dir():
                return folder
            if folder.exists():
                if given or not self.interactive:
                    raise ConfigError(f"--folder: {folder} exists but is not a folder")
                self.say(f"  {folder} exists but is not a folder.")
                continue
            if (
                self.interactive
                and not given
                and not self.confirm(f"{folder} does not exist. Create it?", default=True)
            ):
                continue
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from exc
            self.say(f"  Created {folder}")
            return folder

    def study(self, url: str, studies: list[StudyInfo] | None = None) -> tuple[str, str]:
        """(study ID or UUID, its title if known). `studies`: the user's studies, if they
        were listed."""
        given = self.given("study")
        if given:
            ref = parse_study_ref(given)
            if ref is None:
                raise ConfigError(f"--study: expected a study ID (a number) or UUID, got {given!r}")
            return ref, ""
        if studies:
            return self.choose_study(url, studies)
        if studies is not None:
            self.say(
                "  Your JATOS user is not a member of any study yet: create one in JATOS, or "
                "ask a colleague to add you under the study's Members."
            )
        self.say("The study's ID and UUID are shown on its page in JATOS.")
        while True:
            ref = parse_study_ref(self.ask("Study ID or UUID", self.remembered("study")))
            if ref is not None:
                return ref, ""
            self.say("  Expected a number (the ID) or a UUID like 3b0d…-…")

    def choose_study(self, url: str, studies: Sequence[StudyInfo]) -> tuple[str, str]:
        """Pick one of `studies` by its row's letter, its ID or its UUID, and confirm it by
        its title. Rows are letters so that a number always means an ID: "3" can never be
        row 3 and study 3 at once."""
        self.say(f"\nYour studies on {url}:")
        for line in study_table(studies):
            self.say(line)
        last = row_label(len(studies) - 1)
        while True:
            answer = self.ask(
                f"Which study? Its letter in the list (a-{last}), or its ID or UUID",
                self.remembered("study"),
            )
            chosen = pick_study(answer, studies)
            if isinstance(chosen, StudyInfo):
                self._warn_locked(chosen)
                if self.confirm(
                    f'Sync with "{one_line(chosen.title)}" (ID {chosen.id}, UUID {chosen.uuid})?',
                    default=True,
                ):
                    # As typed when it was the ID or the UUID (a UUID stays valid after an
                    # export and import); the ID for a row letter.
                    return parse_study_ref(answer) or str(chosen.id), chosen.title
            elif chosen is not None:
                self.say(
                    f"  Study {chosen} is not in your list of studies on {url} (the letters in "
                    "the first column choose a row)."
                )
                if self.confirm(f"Use study {chosen} anyway?", default=False):
                    return chosen, ""
            else:
                self.say(f"  Type a letter from the list (a-{last}), a study ID or a UUID.")

    def quiet_token(self, token_file: Path | None) -> Token | None:
        """The token from `token_file`, else from the environment, to try the address with;
        None if there is none that looks right (what is wrong with it, `check` says)."""
        with contextlib.suppress(ConfigError):
            if token_file is not None:
                return self._quiet_load(token_file)
            text = self.environ.get(DEFAULT_TOKEN_ENV, "")
            if text.strip():
                return check_token_format(text, source=f"${DEFAULT_TOKEN_ENV}")
        return None

    def reach(
        self, url: str, token: Token | None, *, listing: bool
    ) -> tuple[str, list[StudyInfo] | None]:
        """(the address that works, the user's studies if `listing`). With a token, the
        address is tried at once: the studies are listed, or the token is checked. An
        address that leads nowhere is asked for again on a terminal; without one, init
        stops (nothing is written) and says which --url to give. Without a token nothing
        can be tried, and `check` tells later."""
        while token is not None:
            client = self.client_factory(url, token)
            try:
                if not listing:
                    client.token_info()
                    return url, None
                return url, sorted(client.list_studies(), key=lambda s: (s.title.lower(), s.id))
            except (ServerUnavailableError, UnsupportedServerError) as exc:
                said, better = wrong_address(url, exc)
                if not self.interactive:
                    raise _nothing_written(exc, said, url, better) from None
                self.say(f"  {said}.")
                url = self.url(again=better)
            except JatosSyncError as exc:  # a refused token, say: the address is right
                if listing:
                    self.say(f"  Could not list your studies: {redact(str(exc))}")
                return url, None
            finally:
                client.close()
        return url, None

    def _warn_locked(self, study: StudyInfo) -> None:
        if study.locked:
            self.say(
                f"  Note: {study.title!r} is locked in JATOS; unlock it on its page before "
                "syncing, or uploads will be refused."
            )


def _nothing_written(exc: JatosSyncError, said: str, url: str, better: str) -> JatosSyncError:
    """Why init stopped without a terminal, and what to pass: a wrong scheme or a page that
    is not JATOS is the command line's mistake (exit 2); a server that does not answer may
    just be down (exit 5)."""
    if better != url:
        return ConfigError(f"{said}. Nothing was written; run init again with --url {better}")
    if isinstance(exc, UnsupportedServerError):
        return ConfigError(
            f"{said}. Nothing was written; run init again with the address of your JATOS as "
            "--url (with its path prefix, if it has one)"
        )
    return ServerUnavailableError(
        f"{said}. Nothing was written; run init again once the server answers, or with the "
        "right --url"
    )


def row_label(index: int) -> str:
    """The label of row `index` (from 0): a … z, then aa, ab, … (never a number)."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("a") + rest) + label
    return label


def pick_study(answer: str, studies: Sequence[StudyInfo]) -> StudyInfo | str | None:
    """What the user means by `answer`: the listed study with that row letter, ID or UUID;
    a valid ID or UUID that is not listed (as text); or None for anything else."""
    text = answer.strip().lower()
    for index, study in enumerate(studies):
        if text == row_label(index):
            return study
    ref = parse_study_ref(text)
    if ref is None:
        return None
    for study in studies:
        if ref in (str(study.id), study.uuid.lower()):
            return study
    return ref


def study_table(studies: Sequence[StudyInfo]) -> list[str]:
    """The table of studies init offers, one lettered row each (title, ID, UUID, locked,
    assets folder)."""
    header = ("", "ID", "UUID", "locked", "assets folder", "title")
    rows = [
        (
            row_label(n),
            str(s.id),
            s.uuid,
            "yes" if s.locked else "no",
            one_line(s.dir_name),
            one_line(s.title),
        )
        for n, s in enumerate(studies)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {0, 1}  # labels and numbers align right

    def line(row: Sequence[str]) -> str:
        cells = [
            row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
            for i in range(len(row))
        ]
        return "  " + "  ".join(cells).rstrip()

    return [line(header), *(line(r) for r in rows)]
