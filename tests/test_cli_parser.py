"""The command line's grammar, from the researcher's side: the help they read, the flags
they put before or after the command, and a start that imports nothing it does not need."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jatos_sync.cli import COMMANDS, build_parser, main
from jatos_sync.cli.parser import DEFAULT_LINK_TYPE, HELP_WIDTH, LINK_TYPES, MAX_LINKS
from tests.conftest import World

ROOT = Path(__file__).resolve().parents[1]
PYTHON_M = [sys.executable, "-X", "importtime", "-m", "jatos_sync"]
ORDER = [
    "init",
    "check",
    "sync",
    "watch",
    "status",
    "pull",
    "results",
    "export",
    "links",
    "config",
    "demo",
]


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=environ or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# ---------------------------------------------------------------- start-up

# What `--version`, `--help` and a usage error may import of jatos_sync: nothing that
# reaches configuration, HTTP, YAML or logging machinery.
LIGHT = {"jatos_sync", "jatos_sync.__main__", "jatos_sync.cli", "jatos_sync.cli.parser"}
LIGHT |= {"jatos_sync.errors", "jatos_sync.logs"}
HEAVY = {"requests", "urllib3", "watchdog", "rich", "yaml", "structlog", "msgspec"}
HEAVY |= {"pathspec", "re2", "asyncio", "jatos_sync.testing"}


def imported_by(*argv: str) -> set[str]:
    """The modules a whole `python -m jatos_sync ARGV` process imports (-X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jatos_sync", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "[us]" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert names, result.stderr
    return names


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["sync", "--help"], ["sync", "-x"]])
def test_version_help_and_usage_errors_import_nothing_heavy(argv: list[str]) -> None:
    names = imported_by(*argv)
    ours = {n for n in names if n == "jatos_sync" or n.startswith("jatos_sync.")}
    assert ours <= LIGHT, ours - LIGHT
    assert not {n for n in names if n.split(".")[0] in HEAVY or n in HEAVY}


def test_config_schema_needs_no_http_and_status_no_watcher(world310: World) -> None:
    assert "requests" not in imported_by("config", "schema")
    env = {**os.environ, "JATOS_TOKEN": world310.token}
    result = subprocess.run(
        [*PYTHON_M, "-c", str(world310.config_path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "requests" in names  # it did talk to the server
    assert not {"watchdog", "jatos_sync.watch", "jatos_sync.testing"} & names


def test_every_command_has_a_module_and_the_modules_import() -> None:
    import importlib

    assert list(COMMANDS) == ORDER
    for target in COMMANDS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(f"jatos_sync.cli.{module}"), function))


# ---------------------------------------------------------------- --help


def test_help_lists_the_commands_in_the_order_people_need_them() -> None:
    code, out, _ = run("--help")
    assert code == 0
    listed = [line.split()[0] for line in out.split("commands:")[1].splitlines()[2:13]]
    assert listed == ORDER
    assert list(subparsers(build_parser())) == ORDER


def test_bare_jatos_sync_prints_the_help_and_exit_2() -> None:
    code, out, err = run()
    assert code == 2
    assert out.startswith("usage: jatos-sync") and "init" in out and "MAPPING" in out
    assert "required" not in out + err


def test_help_explains_mapping_and_where_to_start() -> None:
    _, out, _ = run("--help")
    assert "MAPPING, where a command takes one, is the name: of a mapping in jatos-sync.yaml" in (
        " ".join(out.split())
    )
    assert "jatos-sync init" in out and "jatos-sync COMMAND --help" in out


@pytest.mark.parametrize("command", ORDER)
def test_each_command_has_an_example_and_explains_mapping(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    epilog = out[out.rindex("\nexample") :]
    assert f"jatos-sync {command}" in epilog
    if "MAPPING" in out:
        assert "name: of a mapping in jatos-sync.yaml" in " ".join(out.split())


def test_init_help_says_it_asks_and_which_flags_answer_without_a_terminal() -> None:
    _, out, _ = run("init", "--help")
    words = " ".join(out.split())
    assert "On a terminal, init asks its questions" in words
    assert "Without a terminal (a script, CI) nothing can be asked: give --url and --study" in (
        words
    )


@pytest.mark.parametrize("columns", ["60", "80", "200"])
def test_help_stays_within_80_columns(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    parser = build_parser()
    parsers = [parser, *subparsers(parser).values()]
    parsers += subparsers(subparsers(parser)["config"]).values()
    for each in parsers:
        for line in each.format_help().splitlines():
            assert len(line) < HELP_WIDTH, f"{each.prog}: {line!r}"


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("jatos-sync 0.")


# ---------------------------------------------------------------- flags in both places

GLOBAL_FLAGS = [
    ["-q"],
    ["--quiet"],
    ["-v"],
    ["--verbose"],
    ["-c", "other.yaml"],
    ["--config", "other.yaml"],
    ["--log-format", "json"],
]


@pytest.mark.parametrize("flag", GLOBAL_FLAGS, ids=" ".join)
@pytest.mark.parametrize("command", [["sync"], ["status"], ["check"], ["watch"], ["init"]])
def test_a_global_flag_means_the_same_before_and_after_the_command(
    flag: list[str], command: list[str]
) -> None:
    before = build_parser().parse_args([*flag, *command])
    after = build_parser().parse_args([*command, *flag])
    assert vars(before) == vars(after)
    plain = build_parser().parse_args(command)
    assert vars(before) != vars(plain)


def test_a_flag_before_the_command_is_not_undone_by_the_commands_default() -> None:
    args = build_parser().parse_args(["-q", "-c", "a.yaml", "--log-format", "json", "sync"])
    assert (args.quiet, args.config, args.log_format) == (True, "a.yaml", "json")


def test_v_and_q_together_are_refused_wherever_they_stand() -> None:
    for argv in (["-v", "-q", "sync"], ["-v", "sync", "-q"], ["sync", "-q", "-v"]):
        code, _, err = run(*argv)
        assert code == 2, argv
        assert "-v" in err and "-q" in err


def test_sync_q_after_the_command_quiets_the_log(world310: World) -> None:
    world310.put("a.js", "a")
    loud = world310.run("--log-format", "json", "sync", "--dry-run")
    quiet = world310.run("sync", "--dry-run", "-q", "--log-format", "json")
    assert loud.code == quiet.code == 0
    assert '"level": "info"' in loud.err
    assert '"level": "info"' not in quiet.err


def test_v_and_log_format_after_the_command(world310: World) -> None:
    world310.put("a.js", "a")
    result = world310.run("sync", "-v", "--log-format", "json")
    assert result.code == 0
    events = [json.loads(line)["event"] for line in result.err.splitlines()]
    assert "upload_done" in events
    assert any(json.loads(line)["level"] == "debug" for line in result.err.splitlines())


def test_c_after_the_command_reads_that_file(world310: World) -> None:
    world310.put("a.js", "a")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["sync", "-c", str(world310.config_path), "--json"],
        environ={"JATOS_TOKEN": world310.token},
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue())["mappings"][0]["uploaded"] == ["a.js"]
    assert world310.remote() == {"a.js": b"a"}


# ---------------------------------------------------------------- the parser's constants


def test_link_options_match_what_the_links_command_knows() -> None:
    from jatos_sync import codes, studies

    assert set(LINK_TYPES) == set(studies.WORKER_TYPES)
    assert DEFAULT_LINK_TYPE == codes.DEFAULT_TYPE
    assert MAX_LINKS == studies.MAX_CODES
