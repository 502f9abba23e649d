"""`init`: with flags against the stand-in, interactively through a real pseudo-terminal,
and the pure parts (the rendered file, URL and study input, the table) by table."""

from __future__ import annotations

import argparse
import io
import os
import re
import select
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from jatos_sync import init
from jatos_sync.cli import main
from jatos_sync.cli.parser import add_init_arguments
from jatos_sync.client import JatosClient
from jatos_sync.config import load_config, parse_config
from jatos_sync.credentials import DEFAULT_TOKEN_ENV, Token
from jatos_sync.model import StudyInfo
from jatos_sync.testing import StandInServer, make_token

REPO = Path(__file__).resolve().parents[1]


class FakeTerminal(io.StringIO):
    """Scripted answers on a stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@dataclass
class InitRun:
    code: int
    out: str
    err: str
    checked: list[Path]


@dataclass
class Setup:
    server: StandInServer
    home: Path
    cwd: Path
    env: dict[str, str]

    def run(
        self,
        *argv: str,
        stdin: io.StringIO | None = None,
        secrets: list[str] | None = None,
        check: Callable[[Path], int] | None = None,
    ) -> InitRun:
        parser = argparse.ArgumentParser()
        parser.add_argument("-c", "--config")
        add_init_arguments(parser)
        args = parser.parse_args(list(argv))
        out, err = io.StringIO(), io.StringIO()
        checked: list[Path] = []
        pending = list(secrets or [])

        def read_secret(prompt: str) -> str:
            out.write(prompt + "\n")  # getpass shows the prompt, never the answer
            return pending.pop(0)

        def real_check(path: Path) -> int:
            checked.append(path)
            return main(["-c", str(path), "check"], environ=self.env, stdout=out, stderr=err)

        code = init.run(
            args,
            environ=self.env,
            stdin=stdin if stdin is not None else io.StringIO(),
            out=out,
            err=err,
            client_factory=lambda url, token: JatosClient(url, token, retries=0, timeout_s=5),
            check=check or real_check,
            read_secret=read_secret,
            cwd=self.cwd,
        )
        return InitRun(code, out.getvalue(), err.getvalue(), checked)


@pytest.fixture(params=["3.9", "3.10"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    # `check` finds the default state directory through the process environment.
    monkeypatch.setenv("JATOS_SYNC_STATE_DIR", str(tmp_path / "state"))
    with StandInServer(personality=request.param, data_dir=tmp_path / "server") as server:
        server.populate("alice", study_title="Stroop")
        home = tmp_path / "home"
        cwd = tmp_path / "lab"
        home.mkdir()
        cwd.mkdir()
        yield Setup(server, home, cwd, {"HOME": str(home)})


def token_of(setup: Setup) -> str:
    assert setup.server.token is not None
    return setup.server.token


def write_token_file(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- flags


def test_flags_write_a_config_that_round_trips_and_checks_ok(setup: Setup) -> None:
    token_file = write_token_file(setup.home / "token", token_of(setup))
    study = setup.server.study
    assert study is not None

    result = setup.run(
        "--url",
        setup.server.url + "/",
        "--study",
        str(study.id),
        "--folder",
        "experiment",
        "--token-file",
        str(token_file),
        "--name",
        "stroop",
    )

    assert result.code == 0, result.out + result.err
    path = setup.cwd / "jatos-sync.yaml"
    assert result.checked == [path]
    config = load_config(path)
    assert config.server.url == setup.server.url
    assert config.server.token_file == token_file
    (mapping,) = config.mappings
    assert (mapping.name, mapping.study, mapping.folder) == (
        "stroop",
        str(study.id),
        setup.cwd / "experiment",
    )
    assert mapping.folder.is_dir()  # created, so that `check` finds it
    assert mapping.ignore == ()  # the config file is outside the folder
    text = path.read_text()
    assert token_of(setup) not in text and token_of(setup) not in result.out + result.err
    assert "ok: ready to sync" in result.out
    assert "jatos-sync pull stroop" in result.out  # the new folder is empty


def test_flags_without_a_token_file_read_the_token_from_the_environment(setup: Setup) -> None:
    study = setup.server.study
    assert study is not None
    setup.env["JATOS_TOKEN"] = token_of(setup)

    result = setup.run("--url", setup.server.url, "--study", study.uuid.upper())

    assert result.code == 0, result.out + result.err
    config = load_config(setup.cwd / "jatos-sync.yaml")
    assert config.server.token_file is None and config.server.token_env == DEFAULT_TOKEN_ENV
    (mapping,) = config.mappings
    assert mapping.study == study.uuid and mapping.folder == setup.cwd
    assert mapping.name == "lab"
    # The file lies in the synced folder: it must never be uploaded as a study asset.
    assert mapping.ignore == ("/jatos-sync.yaml*",)  # and copies, e.g. the .bak of --force
    assert main(["-c", str(setup.cwd / "jatos-sync.yaml"), "sync"], environ=setup.env) == 0
    assert setup.server.files(study) == {}


def test_missing_flags_without_a_terminal_is_exit_2_naming_them(setup: Setup) -> None:
    result = setup.run("--folder", "x")
    assert result.code == 2
    assert "--url and --study" in result.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()
    assert result.checked == []


def test_an_existing_config_is_not_overwritten_without_force(setup: Setup) -> None:
    path = setup.cwd / "jatos-sync.yaml"
    path.write_text("# mine\n")
    flags = ("--url", setup.server.url, "--study", "1")

    refused = setup.run(*flags, check=lambda p: 0)
    assert refused.code == 2
    assert "already exists" in refused.err and "--force" in refused.err
    assert path.read_text() == "# mine\n"

    forced = setup.run(*flags, "--force", check=lambda p: 0)
    assert forced.code == 0
    assert (setup.cwd / "jatos-sync.yaml.bak").read_text() == "# mine\n"
    assert load_config(path).mappings[0].study == "1"


def test_the_check_exit_code_is_returned(setup: Setup) -> None:
    study = setup.server.study
    assert study is not None
    setup.server.set_locked(study, True)
    setup.env["JATOS_TOKEN"] = token_of(setup)

    result = setup.run("--url", setup.server.url, "--study", str(study.id))

    assert result.code == 3
    assert "locked" in result.out
    assert "then run `jatos-sync check` again" in result.out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--url", "ftp://x.org", "--study", "1"), "--url: the address must start with https://"),
        (("--url", "https://x.org", "--study", "stroop"), "--study: expected a study ID"),
        (("--url", "https://x.org", "--study", "1", "--name", "a/b"), "mappings[0].name"),
    ],
)
def test_bad_flags_are_exit_2_with_the_reason(
    setup: Setup, flags: tuple[str, ...], message: str
) -> None:
    result = setup.run(*flags, check=lambda p: 0)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()


def test_a_token_file_inside_the_synced_folder_is_refused(setup: Setup) -> None:
    inside = write_token_file(setup.cwd / "token.txt", token_of(setup))
    result = setup.run("--url", setup.server.url, "--study", "1", "--token-file", str(inside))
    assert result.code == 2
    assert "would be uploaded" in result.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()


def test_a_token_file_inside_the_synced_folder_through_a_symlink_is_refused(
    setup: Setup,
) -> None:
    folder = setup.cwd / "exp"
    folder.mkdir()
    (setup.cwd / "alias").symlink_to(folder)
    write_token_file(folder / "token.txt", token_of(setup))
    argv = ["--url", setup.server.url, "--study", "1", "--folder", "exp"]
    result = setup.run(*argv, "--token-file", str(setup.cwd / "alias" / "token.txt"))
    assert result.code == 2
    assert "would be uploaded" in result.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()


def test_a_config_inside_the_folder_through_a_symlink_gets_an_ignore_rule(setup: Setup) -> None:
    folder = setup.cwd / "exp"
    folder.mkdir()
    (setup.cwd / "alias").symlink_to(folder)
    argv = ["-c", "alias/lab.yaml", "--url", setup.server.url, "--study", "1", "--folder", "exp"]
    result = setup.run(*argv, check=lambda p: 0)
    assert result.code == 0, result.err
    assert 'ignore: ["/lab.yaml*"]' in (folder / "lab.yaml").read_text()


def _cli_commands() -> set[str]:
    from jatos_sync.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


@pytest.mark.skipif("init" not in _cli_commands(), reason="init is not wired into the CLI yet")
def test_init_through_the_cli(setup: Setup) -> None:
    study = setup.server.study
    assert study is not None
    path = setup.cwd / "cli.yaml"
    env = {**setup.env, "JATOS_TOKEN": token_of(setup)}
    out, err = io.StringIO(), io.StringIO()
    argv = ["-c", str(path), "init", "--url", setup.server.url, "--study", str(study.id)]
    argv += ["--folder", str(setup.cwd / "exp")]

    code = main(argv, environ=env, stdout=out, stderr=err)

    assert code == 0, out.getvalue() + err.getvalue()
    assert load_config(path).mappings[0].study == str(study.id)
    assert "ok: ready to sync" in out.getvalue()
    assert main(argv, environ=env, stdout=out, stderr=err) == 2  # exists now


# ---------------------------------------------------------------- interactive (scripted)


def test_interactive_lists_the_studies_stores_the_pasted_token_and_writes(setup: Setup) -> None:
    setup.server.add_study("Alpha", members=["alice"], dir_name="alpha_dir")
    setup.server.add_study("Locked one", members=["alice"], locked=True, dir_name="locked_dir")
    setup.server.add_study("Not mine", members=[])
    answers = FakeTerminal("jatos-host:notaport\n" + setup.server.url + "\n\nexp\n\na\n\n")

    result = setup.run(stdin=answers, secrets=["not a token", token_of(setup)])

    assert result.code == 0, result.out + result.err
    assert "port that is not a number" in result.out
    assert "not a valid JATOS API token" in result.out
    assert re.search(r"a\s+2\s+\S+\s+no\s+alpha_dir\s+Alpha", result.out)
    assert re.search(r"b\s+3\s+\S+\s+yes\s+locked_dir\s+Locked one", result.out)
    assert 'Sync with "Alpha" (ID 2, UUID' in result.out
    assert "Stroop" in result.out and "Not mine" not in result.out
    stored = setup.home / ".config" / "jatos-sync" / "token"
    assert stored.read_text().strip() == token_of(setup)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    config = load_config(setup.cwd / "jatos-sync.yaml")
    assert config.server.token_file == stored
    assert config.mappings[0].study == "2"  # Alpha, the first row (sorted by title)
    assert config.mappings[0].folder == setup.cwd / "exp"
    assert token_of(setup) not in result.out + result.err
    assert token_of(setup) not in (setup.cwd / "jatos-sync.yaml").read_text()


def test_interactive_uses_the_token_in_the_environment_when_told(setup: Setup) -> None:
    setup.env["JATOS_TOKEN"] = token_of(setup)
    study = setup.server.study
    assert study is not None
    answers = FakeTerminal(f"\n.\n{study.uuid}\ny\n")

    result = setup.run("--url", setup.server.url, stdin=answers, secrets=[])

    assert result.code == 0, result.out + result.err
    config = load_config(setup.cwd / "jatos-sync.yaml")
    assert config.server.token_file is None
    assert config.mappings[0].study == study.uuid
    assert not (setup.home / ".config").exists()


def _studies_whose_ids_are_row_numbers(setup: Setup) -> dict[str, StudyInfo]:
    """Three studies of alice, sorted by title, where a row number is another study's ID:
    rows Mine (ID 3), Stroop (ID 1), Zeta (ID 2, a colleague's study shared with alice)."""
    server = setup.server
    server.add_study("Zeta", members=["alice"])
    server.add_study("Mine", members=["alice"])
    studies = server_studies(setup)
    assert [(s.title, s.id) for s in studies] == [("Mine", 3), ("Stroop", 1), ("Zeta", 2)]
    return {s.title: s for s in studies}


def server_studies(setup: Setup) -> list[StudyInfo]:
    with JatosClient(setup.server.url, Token(token_of(setup)), retries=0) as client:
        return sorted(client.list_studies(), key=lambda s: s.title)


def interactive_choice(setup: Setup, *typed: str) -> InitRun:
    setup.env["JATOS_TOKEN"] = token_of(setup)
    answers = FakeTerminal("\n".join([setup.server.url, "", ".", *typed, ""]))
    return setup.run(stdin=answers, secrets=[], check=lambda p: 0)


def test_a_number_is_a_study_id_never_a_row(setup: Setup) -> None:
    """Typing 3, the ID of one's own study "Mine", chooses it, not row 3 (the colleague's
    study, ID 2), and its title is shown for confirmation before anything is written."""
    studies = _studies_whose_ids_are_row_numbers(setup)
    result = interactive_choice(setup, "3", "")
    assert result.code == 0, result.out + result.err
    assert load_config(setup.cwd / "jatos-sync.yaml").mappings[0].study == "3"
    assert f'Sync with "Mine" (ID 3, UUID {studies["Mine"].uuid})? [Y/n]' in result.out


@pytest.mark.parametrize(
    ("typed", "title"), [("c", "Zeta"), ("C", "Zeta"), ("1", "Stroop"), ("uuid", "Zeta")]
)
def test_a_row_letter_an_id_or_a_uuid_chooses_what_it_names(
    setup: Setup, typed: str, title: str
) -> None:
    studies = _studies_whose_ids_are_row_numbers(setup)
    answer = studies[title].uuid.upper() if typed == "uuid" else typed
    result = interactive_choice(setup, answer, "y")
    assert result.code == 0, result.out + result.err
    assert f'Sync with "{title}"' in result.out
    study = load_config(setup.cwd / "jatos-sync.yaml").mappings[0].study
    assert study == (studies[title].uuid if typed == "uuid" else str(studies[title].id))


def test_declining_the_confirmation_asks_again_and_writes_only_the_confirmed_study(
    setup: Setup,
) -> None:
    _studies_whose_ids_are_row_numbers(setup)
    result = interactive_choice(setup, "1", "n", "d", "a", "")
    assert result.code == 0, result.out + result.err
    assert 'Sync with "Stroop"' in result.out  # ID 1, declined
    assert "Type a letter from the list (a-c)" in result.out  # "d" is no row
    assert load_config(setup.cwd / "jatos-sync.yaml").mappings[0].study == "3"  # Mine


def test_a_study_not_in_the_list_needs_an_explicit_yes(setup: Setup) -> None:
    _studies_whose_ids_are_row_numbers(setup)
    declined = interactive_choice(setup, "7", "")  # Enter: the default is no
    assert declined.code == 2
    assert "Study 7 is not in your list" in declined.out
    assert not (setup.cwd / "jatos-sync.yaml").exists()
    accepted = interactive_choice(setup, "7", "yes")
    assert accepted.code == 0, accepted.out + accepted.err
    assert load_config(setup.cwd / "jatos-sync.yaml").mappings[0].study == "7"


@pytest.mark.parametrize(
    ("index", "label"), [(0, "a"), (25, "z"), (26, "aa"), (27, "ab"), (701, "zz"), (702, "aaa")]
)
def test_row_labels_are_letters(index: int, label: str) -> None:
    assert init.row_label(index) == label


def test_pick_study_never_reads_a_number_as_a_row() -> None:
    studies = [
        StudyInfo(id=3, uuid="u-3", title="Stroop", locked=False, dir_name="stroop"),
        StudyInfo(id=1, uuid="u-1", title="Flanker", locked=False, dir_name="fl"),
    ]
    assert init.pick_study("1", studies) == studies[1]
    assert init.pick_study(" B ", studies) == studies[1]
    assert init.pick_study("2", studies) == "2"
    assert init.pick_study("c", studies) is None
    assert init.pick_study("", studies) is None


def test_interactive_without_a_token_asks_for_the_study_id(setup: Setup) -> None:
    answers = FakeTerminal(setup.server.url + "\n\nnot-an-id\n7\n")
    result = setup.run(stdin=answers, secrets=[""], check=lambda p: 0)
    assert result.code == 0, result.err
    assert "Going on without a token" in result.out
    assert "export JATOS_TOKEN=" in result.out
    assert load_config(setup.cwd / "jatos-sync.yaml").mappings[0].study == "7"


def test_input_that_ends_early_writes_nothing(setup: Setup) -> None:
    result = setup.run(stdin=FakeTerminal(setup.server.url + "\n"), secrets=[""])
    assert result.code == 2
    assert "nothing was written" in result.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()


# ---------------------------------------------------------------- a wrong address, --force


def https_of(url: str) -> str:
    return "https://" + url.removeprefix("http://")


def test_a_tls_failure_suggests_http_and_asks_again_on_a_terminal(setup: Setup) -> None:
    host = setup.server.url.removeprefix("http://")  # typed bare: https:// is assumed
    # address, store the token [Y], the address again [the suggestion], folder, row a, [Y]
    answers = FakeTerminal(f"{host}\n\n\n\na\n\n")

    result = setup.run(stdin=answers, secrets=[token_of(setup)])

    assert result.code == 0, result.out + result.err
    assert f"{https_of(setup.server.url)} did not answer in TLS (https://)" in result.out
    assert f"may speak plain http://, at {setup.server.url}" in result.out
    assert f"JATOS address (e.g. https://jatos.example.org) [{setup.server.url}]:" in result.out
    config = load_config(setup.cwd / "jatos-sync.yaml")
    assert config.server.url == setup.server.url
    assert result.checked == [setup.cwd / "jatos-sync.yaml"]


def test_a_tls_failure_without_a_terminal_writes_nothing_and_names_the_url_to_pass(
    setup: Setup,
) -> None:
    setup.env["JATOS_TOKEN"] = token_of(setup)
    result = setup.run("--url", https_of(setup.server.url), "--study", "1")
    assert result.code == 2
    assert f"run init again with --url {setup.server.url}" in result.err
    assert "Nothing was written" in result.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()
    assert result.checked == []


def test_a_server_that_does_not_answer_is_asked_again_and_not_written_without_a_terminal(
    setup: Setup,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    setup.env["JATOS_TOKEN"] = token_of(setup)
    stopped = setup.run("--url", dead, "--study", "1")
    assert stopped.code == 5
    assert "Nothing was written" in stopped.err
    assert not (setup.cwd / "jatos-sync.yaml").exists()

    # On a terminal: use $JATOS_TOKEN [Y], the address again, folder, row a, [Y]
    answers = FakeTerminal(f"{dead}\n\n{setup.server.url}\n\na\n\n")
    asked = setup.run(stdin=answers)
    assert asked.code == 0, asked.out + asked.err
    assert f"Cannot reach JATOS at {dead}" in asked.out
    assert load_config(setup.cwd / "jatos-sync.yaml").server.url == setup.server.url


def test_the_dialogue_and_its_closing_check_try_the_server_once(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retries between the questions, nor in the `check` that ends init: once the file
    is written, the server fails every request; `check` tries once and says so."""
    import jatos_sync.init

    study = setup.server.study
    assert study is not None
    written = jatos_sync.init.write_config

    def write_then_fail(path: Path, text: str) -> Path | None:
        backup = written(path, text)
        setup.server.faults.error_rate = 1.0
        setup.server.clear_requests()
        return backup

    monkeypatch.setattr(jatos_sync.init, "write_config", write_then_fail)
    env = {**setup.env, "JATOS_TOKEN": token_of(setup)}
    out, err = io.StringIO(), io.StringIO()
    argv = ["-c", str(setup.cwd / "jatos-sync.yaml"), "init", "--url", setup.server.url]
    argv += ["--study", str(study.id), "--folder", str(setup.cwd)]

    code = main(argv, environ=env, stdout=out, stderr=err)

    assert code == 5, out.getvalue() + err.getvalue()
    assert len(setup.server.requests) == 1  # the check's one try
    assert "503" in err.getvalue()
    assert "http_retry" not in err.getvalue()


def write_answers(setup: Setup, token_file: Path, folder: str, name: str) -> Path:
    study = setup.server.study
    assert study is not None
    result = setup.run(
        "--url", setup.server.url, "--study", str(study.id), "--folder", folder,
        "--token-file", str(token_file), "--name", name, check=lambda p: 0,
    )  # fmt: skip
    assert result.code == 0, result.err
    return setup.cwd / "jatos-sync.yaml"


def test_force_offers_the_old_answers_as_the_defaults(setup: Setup) -> None:
    token_file = write_token_file(setup.home / "token", token_of(setup))
    path = write_answers(setup, token_file, "exp", "stroop")
    old = path.read_text()
    # Every question answered with Enter: address, token file [Y], folder, study, [Y]
    result = setup.run("--force", stdin=FakeTerminal("\n" * 5), check=lambda p: 0)

    assert result.code == 0, result.out + result.err
    assert f"JATOS address (e.g. https://jatos.example.org) [{setup.server.url}]" in result.out
    assert f"Use the API token stored in {token_file}? [Y/n]" in result.out
    assert f"Local folder to sync [{setup.cwd / 'exp'}]" in result.out
    assert re.search(r"Which study\? .*\[1\]:", result.out)
    config = load_config(path)
    assert config.server.url == setup.server.url and config.server.token_file == token_file
    (mapping,) = config.mappings
    assert (mapping.name, mapping.study, mapping.folder) == ("stroop", "1", setup.cwd / "exp")
    assert (setup.cwd / "jatos-sync.yaml.bak").read_text() == old


def test_force_without_a_terminal_keeps_the_old_answers_of_flags_left_out(setup: Setup) -> None:
    token_file = write_token_file(setup.home / "token", token_of(setup))
    path = write_answers(setup, token_file, "exp", "stroop")
    other = setup.server.add_study("Flanker", members=["alice"])

    result = setup.run("--force", "--study", str(other.id), check=lambda p: 0)

    assert result.code == 0, result.err
    config = load_config(path)
    assert (config.server.url, config.server.token_file) == (setup.server.url, token_file)
    (mapping,) = config.mappings
    assert (mapping.name, mapping.study, mapping.folder) == (
        "stroop",
        str(other.id),
        setup.cwd / "exp",
    )
    assert (setup.cwd / "jatos-sync.yaml.bak").exists()


# ---------------------------------------------------------------- a real pseudo-terminal

DRIVER = textwrap.dedent(
    """
    import argparse, fcntl, os, sys, termios
    # Become the session's controlling terminal, so getpass reads /dev/tty as it would
    # in a real terminal window.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    from jatos_sync import init
    from jatos_sync.cli import main
    from jatos_sync.cli.parser import add_init_arguments
    from jatos_sync.client import JatosClient
    from jatos_sync.logs import configure_logging

    configure_logging()  # as the CLI does before any command
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    add_init_arguments(parser)
    args = parser.parse_args(sys.argv[1:])
    sys.exit(
        init.run(
            args,
            environ=os.environ,
            stdin=sys.stdin,
            out=sys.stdout,
            err=sys.stderr,
            client_factory=lambda url, token: JatosClient(url, token, retries=0, timeout_s=10),
            check=lambda path: main(["-c", str(path), "check"]),
        )
    )
    """
)


class Pty:
    """A child process on a pseudo-terminal; bounded waits for its output."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,  # no controlling terminal until the child takes the pty
        )
        os.close(slave)
        self.transcript = b""
        self._seen = 0

    def expect(self, text: str, timeout_s: float = 20.0) -> None:
        """Wait until `text` appears after what earlier expects consumed."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout_s
        more = True
        while True:
            found = self.transcript.find(wanted, self._seen)
            if found >= 0:
                self._seen = found + len(wanted)
                return
            left = deadline - time.monotonic()
            if left <= 0 or not more:
                raise AssertionError(f"{text!r} did not appear; output:\n{self.text}")
            more = self._read(left)

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._read(deadline - time.monotonic()):
            pass
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def _read(self, timeout_s: float) -> bool:
        """Read what arrives within `timeout_s`; False at the end of the output."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, min(timeout_s, 0.5)))
        if not ready:
            return True  # nothing yet: the caller watches its deadline
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.transcript += chunk
        return bool(chunk)

    @property
    def text(self) -> str:
        return self.transcript.decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_interactive_session_through_a_pseudo_terminal(tmp_path: Path) -> None:
    home, folder, state = tmp_path / "home", tmp_path / "experiment", tmp_path / "state"
    home.mkdir()
    folder.mkdir()
    (folder / "index.html").write_text("<html></html>\n")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "JATOS_SYNC_STATE_DIR": str(state),
        "TERM": "xterm",
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
    }
    with StandInServer(personality="3.10", data_dir=tmp_path / "server") as server:
        server.populate("alice", study_title="Test study")
        beta = server.add_study("Beta", members=["alice"], dir_name="beta_assets")
        server.add_study("Alpha", members=["alice"])
        token = server.token
        assert token is not None
        session = Pty([sys.executable, str(driver)], cwd=folder, env=env)
        try:
            session.expect("JATOS address")
            session.send(server.url)
            session.expect("Paste the token")
            session.send(token)
            session.expect("Store the token in")
            session.send("")
            session.expect("Local folder to sync [.]")
            session.send("")
            session.expect("beta_assets")
            session.expect("Which study?")
            session.send("b")  # rows are sorted by title: Alpha, Beta, Test study
            session.expect('Sync with "Beta"')
            session.send("")
            code = session.finish()
        finally:
            session.close()

    transcript = session.text
    assert code == 0, transcript
    assert "Wrote " in transcript and "ok: ready to sync" in transcript
    assert "jatos-sync sync" in transcript
    assert "jatos-sync pull" not in transcript  # the folder already holds the experiment
    assert token not in transcript  # getpass switched the echo off
    written = (folder / "jatos-sync.yaml").read_text()
    assert token not in written
    config = parse_config(written, path=folder / "jatos-sync.yaml")
    assert config.mappings[0].study == str(beta.id)
    assert config.mappings[0].folder == folder
    assert config.server.url == server.url
    assert 'token_file: "~/.config/jatos-sync/token"' in written
    stored = home / ".config" / "jatos-sync" / "token"
    assert stored.read_text().strip() == token
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


# ---------------------------------------------------------------- the pure parts


def _answers(**overrides: object) -> init.Answers:
    values: dict[str, object] = {
        "url": "https://jatos.example.org/prefix",
        "folder": Path("/data/lab/exp"),
        "study": "42",
        "name": "exp",
    }
    values.update(overrides)
    return init.Answers(**values)  # type: ignore[arg-type]


def _uncomment_options(text: str) -> str:
    return re.sub(r"(?m)^([ ]*)# ([ ]*[a-z_]+:(?:[ ].*)?)$", r"\1\2", text)


@pytest.mark.parametrize("token_file", [None, Path("/secrets/token")])
def test_every_commented_out_option_is_valid_when_enabled(token_file: Path | None) -> None:
    answers = _answers(token_file=token_file, study_title="Stroop\n#2", ignore=("/x y.yaml",))
    text = init.render_config(answers, config_path=Path("/data/lab/jatos-sync.yaml"))
    enabled = _uncomment_options(text)
    assert enabled.count("\n") == text.count("\n") and enabled != text
    assert "watch:\n  debounce: 300ms" in enabled

    for variant in (text, enabled):
        config = parse_config(variant, path=Path("/data/lab/jatos-sync.yaml"))
        (mapping,) = config.mappings
        assert config.server.url == "https://jatos.example.org/prefix"
        assert (mapping.name, mapping.study) == ("exp", "42")
        assert mapping.folder == Path("/data/lab/exp")
        assert mapping.ignore == ("/x y.yaml",)
        assert config.server.token_file == token_file or variant is enabled


def test_a_uuid_study_and_an_awkward_folder_round_trip() -> None:
    folder = Path('/data/My "Lab": #1/exp ünï\tcode')
    uuid = "0b3a2c1e-1111-4222-8333-444455556666"
    answers = _answers(folder=folder, study=uuid, name="my exp")
    config = parse_config(
        init.render_config(answers, config_path=Path("/elsewhere/c.yaml")),
        path=Path("/elsewhere/c.yaml"),
    )
    assert config.mappings[0].folder == folder
    assert config.mappings[0].study == uuid
    assert config.mappings[0].name == "my exp"


@given(st.text(st.characters(codec="utf-8")))
def test_yaml_quote_reads_back_as_the_same_text(text: str) -> None:
    assert yaml.safe_load(f"key: {init.yaml_quote(text)}") == {"key": text}


@pytest.mark.parametrize(
    ("typed", "url", "note"),
    [
        ("https://jatos.example.org", "https://jatos.example.org", ""),
        ("  https://jatos.example.org/  ", "https://jatos.example.org", ""),
        ("jatos.example.org", "https://jatos.example.org", "assumed https://"),
        ("HTTP://127.0.0.1:9000/pfx/", "http://127.0.0.1:9000/pfx", ""),
        ("https://uni.de/pfx/jatos/studies/12", "https://uni.de/pfx", "without /jatos/"),
        ("https://uni.de/jatos/home?x=1", "https://uni.de", "without /jatos/"),
        ("https://uni.de/?x=1#y", "https://uni.de", "?query"),
    ],
)
def test_normalize_url_accepts_what_researchers_paste(typed: str, url: str, note: str) -> None:
    got, got_note = init.normalize_url(typed)
    assert got == url
    assert note in got_note if note else got_note == ""


@pytest.mark.parametrize(
    "typed", ["", "ftp://x.org", "https://user:pw@x.org", "https://x.org:port", "https://a b.org"]
)
def test_normalize_url_refuses_what_cannot_work(typed: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        init.normalize_url(typed)


@pytest.mark.parametrize(
    ("typed", "ref"),
    [
        ("42", "42"),
        (" 007 ", "7"),
        ("0", None),
        ("3B0D2C1E-1111-4222-8333-444455556666", "3b0d2c1e-1111-4222-8333-444455556666"),
        ("stroop", None),
        ("٤٢", None),  # Arabic-Indic digits are digits to Python, not to JATOS
        (str(2**63), None),
    ],
)
def test_parse_study_ref(typed: str, ref: str | None) -> None:
    assert init.parse_study_ref(typed) == ref


def test_study_table_has_aligned_columns() -> None:
    studies = [
        StudyInfo(id=3, uuid="u-3", title="Stroop", locked=False, dir_name="stroop"),
        StudyInfo(id=12, uuid="u-12", title="Flanker\ttask", locked=True, dir_name="fl"),
    ]
    lines = init.study_table(studies)
    assert lines[0].split() == ["ID", "UUID", "locked", "assets", "folder", "title"]
    assert lines[1].split() == ["a", "3", "u-3", "no", "stroop", "Stroop"]
    assert lines[2].split() == ["b", "12", "u-12", "yes", "fl", "Flanker", "task"]
    assert len({line.index("u-") for line in lines[1:]}) == 1


@pytest.mark.parametrize(
    ("folder", "name"),
    [("/x/stroop", "stroop"), ("/x/my exp", "my exp"), ("/x/-dash", "study-42"), ("/", "study-42")],
)
def test_default_name(folder: str, name: str) -> None:
    assert init.default_name(Path(folder), "42") == name


def test_store_token_makes_a_private_file(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        target = tmp_path / "cfg" / "jatos-sync" / "token"
        secret = make_token()
        init.store_token(target, Token(secret))
    finally:
        os.umask(old)
    assert target.read_text() == secret + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
