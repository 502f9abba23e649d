"""Tests for jatos_sync.config: YAML → frozen dataclasses, messages with file:line:key, tokens."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import string
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jatos_sync import config_spec as spec
from jatos_sync.config import (
    SCHEMA_PATH,
    Config,
    MappingConfig,
    ServerConfig,
    WatchConfig,
    default_config_path,
    load_config,
    parse_config,
)
from jatos_sync.config_reader import NODE_BUDGET
from jatos_sync.credentials import TOKEN_PREFIX, Token, load_token
from jatos_sync.errors import EXIT_CONFIG, ConfigError

JATOS_ENV = "JATOS_TOKEN"  # the default variable (README, "Configuration")
LAB_ENV = "LAB_TOKEN"
NAME = Path("jatos-sync.yaml")  # as a user would pass it: messages start with "jatos-sync.yaml:"
ALPHABET = string.ascii_letters + string.digits


def make_token() -> str:
    """A fresh token in JATOS's format (docs/jatos-api.md §2.1): prefix, 31 random, checksum."""
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(31))
    checksum = hashlib.md5(random_part.encode(), usedforsecurity=False).hexdigest()[:6]
    return TOKEN_PREFIX + random_part + checksum


SCHEMA = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def parse(text: str, *, path: Path = NAME, mode: int = 0o600) -> Config:
    """`parse_config`; every document it accepts must also be valid under the JSON Schema."""
    config = parse_config(text, path=path, mode=mode)
    SCHEMA.validate(yaml.safe_load(text))
    return config


def error_of(text: str, *, path: Path = NAME, mode: int = 0o600) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, path=path, mode=mode)
    return str(info.value)


# The declared defaults of watch: (debounce 0.3 s, delete_delay 2 s, reconcile 10 min, …).
DEFAULT_WATCH = WatchConfig(0.3, 2.0, 600.0, "auto", 1.0)

MINIMAL = """\
server:
  url: https://jatos.example.org
mappings:
  - folder: sample-project
    study: 42
"""

# The example in README, "Configuration", verbatim: these keys must work exactly as shown.
README_EXAMPLE = """\
server:
  url: https://jatos.example.org/prefix   # base URL; a path prefix is allowed
  token_env: JATOS_TOKEN                  # default: the token is read from $JATOS_TOKEN
  # token_file: ~/.config/jatos-sync/token
mappings:
  - name: stroop                          # optional; default: the folder's base name
    folder: sample-project                # relative paths are relative to the config file
    study: 42                             # numeric study ID or study UUID
    ignore: ["*.psd", "drafts/"]          # gitignore syntax, on top of the built-in defaults
    delete: true                          # propagate local deletions (default: true)
"""


# ------------------------------------------------------------------------------------------
# Good documents
# ------------------------------------------------------------------------------------------


def test_the_readme_example_parses_exactly(tmp_path: Path) -> None:
    path = tmp_path / "jatos-sync.yaml"
    config = parse(README_EXAMPLE, path=path)
    assert config == Config(
        path=path,
        server=ServerConfig(
            url="https://jatos.example.org/prefix",
            token_env=JATOS_ENV,
            token_file=None,
            inline_token=None,
            timeout_s=30.0,
            retries=4,
            concurrency=4,
            verify_tls=True,
            ca_bundle=None,
        ),
        mappings=(
            MappingConfig(
                name="stroop",
                folder=tmp_path / "sample-project",
                study="42",
                ignore=("*.psd", "drafts/"),
                delete=True,
                backup=True,
                max_delete=500,
                max_delete_percent=50.0,
                line=6,
            ),
        ),
        state_dir=None,
        watch=DEFAULT_WATCH,
    )


def test_minimal_document_gets_every_default(tmp_path: Path) -> None:
    config = parse(MINIMAL, path=tmp_path / "c.yaml")
    assert config.server.token_env == JATOS_ENV
    assert config.server.token_file is None
    assert config.server.inline_token is None
    assert (config.server.timeout_s, config.server.retries, config.server.concurrency) == (30, 4, 4)
    assert config.server.verify_tls is True
    assert config.watch == DEFAULT_WATCH
    (mapping,) = config.mappings
    assert mapping.name == "sample-project"  # the folder's base name
    assert (mapping.delete, mapping.backup, mapping.ignore) == (True, True, ())
    assert (mapping.max_delete, mapping.max_delete_percent) == (500, 50.0)
    assert mapping.line == 4


def test_config_path_is_stored_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse(MINIMAL, path=Path("jatos-sync.yaml"))
    assert config.path == tmp_path / "jatos-sync.yaml"
    assert config.mappings[0].folder == tmp_path / "sample-project"


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("sample-project", "lab/sample-project"),
        ("./a/../b", "lab/b"),
        ("../elsewhere", "elsewhere"),
        (".", "lab"),
    ],
)
def test_relative_folder_is_resolved_against_the_config_directory(
    tmp_path: Path, folder: str, expected: str
) -> None:
    text = MINIMAL.replace("folder: sample-project", f"folder: '{folder}'")
    config = parse(text, path=tmp_path / "lab" / "jatos-sync.yaml")
    assert config.mappings[0].folder == tmp_path / expected


def test_absolute_and_home_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = MINIMAL.replace("folder: sample-project", "folder: ~/exp") + (
        f"  - folder: {tmp_path / 'abs'}\n    study: 43\n"
    )
    first, second = parse(text, path=tmp_path / "x" / "c.yaml").mappings
    assert first.folder == tmp_path / "home" / "exp"
    assert second.folder == tmp_path / "abs"


def test_missing_folder_is_not_a_config_error(tmp_path: Path) -> None:
    # A missing folder is a per-mapping safety stop at sync time (docs/safety.md, rule 1), not here.
    config = parse(MINIMAL, path=tmp_path / "c.yaml")
    assert not config.mappings[0].folder.exists()


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("42", "42"),
        ("'42'", "42"),
        ("'042'", "42"),
        ("9223372036854775807", "9223372036854775807"),
        ("0x2A", "42"),
        ("5b1cf0a6-2c33-4a8e-9a43-4e0e5c3d8f21", "5b1cf0a6-2c33-4a8e-9a43-4e0e5c3d8f21"),
        ("5B1CF0A6-2C33-4A8E-9A43-4E0E5C3D8F21", "5b1cf0a6-2c33-4a8e-9a43-4e0e5c3d8f21"),
        ("' 42 '", "42"),
    ],
)
def test_study_as_id_or_uuid_is_normalised_to_text(written: str, stored: str) -> None:
    config = parse(MINIMAL.replace("study: 42", f"study: {written}"))
    assert config.mappings[0].study == stored


def test_ignore_accepts_a_single_pattern() -> None:
    text = MINIMAL + "    ignore: '*.psd'\n"
    assert parse(text).mappings[0].ignore == ("*.psd",)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30", 30.0),
        ("2.5", 2.5),
        ("'45'", 45.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("'1.5 s'", 1.5),
    ],
)
def test_timeout_accepts_seconds_or_duration_text(written: str, seconds: float) -> None:
    text = MINIMAL.replace(
        "  url: https://jatos.example.org\n", f"  url: http://h\n  timeout: {written}\n"
    )
    assert parse(text).server.timeout_s == pytest.approx(seconds)


def test_every_key_given(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    text = f"""\
server:
  url: HTTPS://jatos.example.org:8443/prefix///
  token_env: LAB_TOKEN
  token_file: secrets/token
  timeout: 10s
  retries: 0
  concurrency: 32
  verify_tls: no
  ca_bundle: ca.pem
state_dir: state
watch:
  debounce: 0
  delete_delay: 5
  reconcile_interval: 1h
  polling: always
  poll_interval: 250ms
defaults:
  delete: false
  backup: false
  ignore: ["*.psd"]
  max_delete: 0
  max_delete_percent: 10%
mappings:
  - folder: a
    study: 1
  - name: b-mapping
    folder: {tmp_path / "b"}
    study: 2
    ignore: ["!keep.psd"]
    delete: yes
    max_delete: 7
    max_delete_percent: 99.5
"""
    config = parse(text, path=tmp_path / "c.yaml")
    assert config.server == ServerConfig(
        url="https://jatos.example.org:8443/prefix",
        token_env=LAB_ENV,
        token_file=tmp_path / "secrets" / "token",
        inline_token=None,
        timeout_s=10.0,
        retries=0,
        concurrency=32,
        verify_tls=False,
        ca_bundle=tmp_path / "ca.pem",
    )
    assert config.state_dir == tmp_path / "state"
    assert config.watch == WatchConfig(0.0, 5.0, 3600.0, "always", 0.25)
    first, second = config.mappings
    assert (first.delete, first.backup, first.ignore) == (False, False, ("*.psd",))
    assert (first.max_delete, first.max_delete_percent) == (0, 10.0)
    # A mapping's own ignore patterns come after the defaults', so "!…" can re-include.
    assert second.ignore == ("*.psd", "!keep.psd")
    assert (second.delete, second.backup) == (True, False)
    assert (second.max_delete, second.max_delete_percent) == (7, 99.5)
    assert second.name == "b-mapping"


def test_empty_optional_values_take_their_defaults() -> None:
    text = """\
server:
  url: http://h
  token_env:
  timeout: ~
watch:
defaults:
state_dir:
mappings:
  - folder: a
    study: 1
    delete:
    ignore:
"""
    config = parse(text)
    assert config.server.token_env == JATOS_ENV
    assert config.server.timeout_s == 30.0
    assert config.watch == DEFAULT_WATCH
    assert config.state_dir is None
    assert config.mappings[0].delete is True
    assert config.mappings[0].ignore == ()


def test_anchors_and_merge_keys_share_settings() -> None:
    text = """\
server: {url: http://h}
mappings:
  - &common
    folder: a
    study: 1
    delete: false
    ignore: &pats ["*.psd", "*.tmp"]
  - <<: *common
    folder: b
    study: 2
  - <<: [{backup: false}, *common]
    folder: c
    study: 3
    ignore: *pats
"""
    a, b, c = parse(text).mappings
    assert (b.name, b.study, b.delete, b.ignore) == ("b", "2", False, ("*.psd", "*.tmp"))
    assert (c.backup, c.delete, c.ignore) == (False, False, ("*.psd", "*.tmp"))
    assert (a.line, b.line, c.line) == (3, 8, 11)


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://jatos.example.org/", "https://jatos.example.org"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("https://uni.example.edu/jatos-lab/", "https://uni.example.edu/jatos-lab"),
        ("https://[::1]:9000", "https://[::1]:9000"),
    ],
)
def test_url_is_normalised(url: str, stored: str) -> None:
    text = MINIMAL.replace("https://jatos.example.org", url)
    assert parse(text).server.url == stored


def test_boolean_words_that_yaml_reads_as_booleans_are_accepted() -> None:
    text = MINIMAL + "    delete: off\n    backup: Yes\n"
    mapping = parse(text).mappings[0]
    assert (mapping.delete, mapping.backup) == (False, True)


# ------------------------------------------------------------------------------------------
# Bad documents: the exact line and key path
# ------------------------------------------------------------------------------------------

S = "server:\n  url: http://h\n"  # two lines: server, url
M = "mappings:\n  - folder: a\n    study: 1\n"  # three lines: mappings, folder, study


def study(value: str) -> str:
    """S + M with the study on line 5 replaced."""
    return S + M.replace("study: 1", f"study: {value}")


def server(*lines: str) -> str:
    """A server block whose extra lines start at line 3, then M."""
    return S + "".join(f"  {line}\n" for line in lines) + M


def mapping(*lines: str) -> str:
    """S + M with extra lines in the first mapping, starting at line 6."""
    return S + M + "".join(f"    {line}\n" for line in lines)


# (document, line, key path, a fragment of the message)
# fmt: off
BAD_DOCUMENTS = [
    # study
    (S + M + "  - folder: b\n    study: true\n", 7, "mappings[1].study",
     "expected a study ID (a whole number) or a study UUID, got true"),
    (study("0"), 5, "mappings[0].study", "got 0"),
    (study("-3"), 5, "mappings[0].study", "got -3"),
    (study("4.5"), 5, "mappings[0].study", "got 4.5"),
    (study("stroop"), 5, "mappings[0].study", "got the text 'stroop'"),
    (study("9223372036854775808"), 5, "mappings[0].study", "a study ID"),
    (study("'5b1cf0a6-2c33-4a8e-9a43'"), 5, "mappings[0].study", "or a study UUID"),
    (study("[1]"), 5, "mappings[0].study", "got a list"),
    (study(""), 5, "mappings[0].study", "got nothing"),
    (study("!!python/object/apply:os.getpid []"), 5, "mappings[0].study", "got a list"),
    # required keys and shapes
    (S + "mappings:\n  - folder: a\n", 4, "mappings[0].study", "required key is missing"),
    (S + "mappings:\n  - study: 1\n", 4, "mappings[0].folder", "required key is missing"),
    (S + "mappings:\n  - folder: ''\n    study: 1\n", 4, "mappings[0].folder", "empty"),
    (S + "mappings:\n  - folder: 7\n    study: 1\n", 4, "mappings[0].folder", "got 7"),
    (S + "mappings: []\n", 3, "mappings", "got an empty list"),
    (S + "mappings:\n", 3, "mappings", "got nothing"),
    (S + "mappings:\n  folder: a\n  study: 1\n", 4, "mappings", "expected a list"),
    (S + "mappings:\n  - just-a-folder\n", 4, "mappings[0]", "expected a mapping with folder"),
    (S, 1, "mappings", "required key is missing"),
    (M, 1, "server", "required key is missing"),
    ("server:\n" + M, 1, "server", "got nothing"),
    ("server:\n  token_env: X\n" + M, 1, "server.url", "required key is missing"),
    ("server: http://h\n" + M, 1, "server", "expected a mapping with at least url"),
    # unknown, misplaced and duplicate keys
    (mapping("ignor: ['*.psd']"), 6, "mappings[0].ignor", "did you mean 'ignore'?"),
    (mapping("Delete: false"), 6, "mappings[0].Delete", "did you mean 'delete'?"),
    (mapping("max-delete: 3"), 6, "mappings[0].max-delete", "did you mean 'max_delete'?"),
    (mapping("url: http://x"), 6, "mappings[0].url", "url belongs under server:"),
    (mapping("xyzzy: 1"), 6, "mappings[0].xyzzy", "the keys allowed here are: name, folder"),
    (server("tokenfile: t"), 3, "server.tokenfile", "did you mean 'token_file'?"),
    (S + "folder: a\n" + M, 3, "folder", "folder belongs in an entry of mappings:"),
    (S + "debounce: 1\n" + M, 3, "debounce", "under watch:"),
    (S + M + "extra: 1\n", 6, "extra", "unknown key"),
    (server("url: http://i"), 3, "server.url", "duplicate key (first given on line 2)"),
    (mapping("study: 2"), 6, "mappings[0].study", "duplicate key (first given on line 5)"),
    (S + M + "mappings: []\n", 6, "mappings", "duplicate key (first given on line 3)"),
    (S + "mappings:\n  - {folder: a, study: 1, <<: 5}\n", 4, "mappings[0]",
     "a merge key (<<) takes a mapping or a list of mappings, got 5"),
    (S + "mappings:\n  - ? [a]\n    : 1\n", 4, "mappings[0]",
     "keys must be plain names, got a list"),
    # names
    (S + M + "  - folder: b/a\n    study: 2\n", 6, "mappings[1]",
     "the name taken from its folder, 'a' is already used by mappings[0] (line 4)"),
    (S + "mappings:\n  - {name: x, folder: a, study: 1}\n  - {name: x, folder: b, study: 2}\n",
     5, "mappings[1].name", "'x' is already used by mappings[0] (line 4)"),
    (S + M + "  - folder: b\n    study: '1'\n", 7, "mappings[1].study",
     "study 1 is already synced by mappings[0] (line 4)"),
    (mapping("name: ''"), 6, "mappings[0].name", "it is empty"),
    (mapping("name: -x"), 6, "mappings[0].name", "starts with '-'"),
    (mapping("name: a/b"), 6, "mappings[0].name", "slash"),
    (mapping("name: ' a'"), 6, "mappings[0].name", "starts or ends with a space"),
    (mapping("name: 5"), 6, "mappings[0].name", "expected a name"),
    (mapping("name: '" + "n" * 101 + "'"), 6, "mappings[0].name", "longer than 100"),
    (S + M.replace("folder: a", "folder: /"), 4, "mappings[0]", "add name:"),
    # policy keys
    (mapping("delete: 'true'"), 6, "mappings[0].delete", "got the text 'true' (remove the quotes)"),
    (mapping("delete: 1"), 6, "mappings[0].delete", "expected true or false, got 1"),
    (mapping("backup: maybe"), 6, "mappings[0].backup", "expected true or false"),
    (mapping("max_delete: -1"), 6, "mappings[0].max_delete", "a whole number of 0 or more"),
    (mapping("max_delete: true"), 6, "mappings[0].max_delete", "got true"),
    (mapping("max_delete: 1.5"), 6, "mappings[0].max_delete", "got 1.5"),
    (mapping("max_delete_percent: 101"), 6, "mappings[0].max_delete_percent", "from 0 to 100"),
    (mapping("max_delete_percent: .nan"), 6, "mappings[0].max_delete_percent", "got .nan"),
    (mapping("max_delete_percent: lots"), 6, "mappings[0].max_delete_percent", "got the text"),
    (mapping("ignore: {a: 1}"), 6, "mappings[0].ignore", "got a mapping"),
    (mapping("ignore:", "  - ok", "  - 3"), 8, "mappings[0].ignore[1]", "got 3"),
    (mapping("ignore:", "  - ok", "  - 'x\\'"), 8, "mappings[0].ignore[1]",
     "not a valid gitignore pattern: it ends with a lone backslash"),
    (mapping("ignore: ['!']"), 6, "mappings[0].ignore[0]", "'!' needs a pattern after it"),
    (mapping("ignore: '[z-a]'"), 6, "mappings[0].ignore", "not a valid gitignore pattern"),
    (mapping("ignore: '[[:alpha:]]'"), 6, "mappings[0].ignore", "such as [[:alpha:]]"),
    (mapping('ignore: "a\\nb"'), 6, "mappings[0].ignore", "a pattern is one line"),
    # server
    ("server:\n  url: ftp://h\n" + M, 2, "server.url", "expected the base URL of JATOS"),
    ("server:\n  url: jatos.example.org\n" + M, 2, "server.url", "expected the base URL"),
    ("server:\n  url: https://\n" + M, 2, "server.url", "expected the base URL of JATOS"),
    ("server:\n  url: https://h:port\n" + M, 2, "server.url", "expected the base URL of JATOS"),
    ("server:\n  url: https://h/a b\n" + M, 2, "server.url", "must not contain spaces"),
    ("server:\n  url: https://h/?x=1\n" + M, 2, "server.url", "?query or #fragment"),
    ("server:\n  url: https://h/#top\n" + M, 2, "server.url", "?query or #fragment"),
    ("server:\n  url: https://h/lab/jatos/api/v1/\n" + M, 2, "server.url",
     "give the base URL of JATOS, without /jatos/api…: 'https://h/lab'"),
    ("server:\n  url: [http://h]\n" + M, 2, "server.url", "got a list"),
    (server("token_env: 'MY-TOKEN'"), 3, "server.token_env", "name of an environment variable"),
    (server("timeout: 0"), 3, "server.timeout", "from 1ms to 1h"),
    (server("timeout: 3h"), 3, "server.timeout", "got the text '3h'"),
    (server("timeout: 5 minutes"), 3, "server.timeout", '"500ms"'),
    (server("timeout: true"), 3, "server.timeout", "got true"),
    (server("timeout: .inf"), 3, "server.timeout", "got .inf"),
    (server("timeout: 2001-12-14"), 3, "server.timeout", "got the date '2001-12-14'"),
    (server("retries: -1"), 3, "server.retries", "from 0 to 100"),
    (server("concurrency: 0"), 3, "server.concurrency", "from 1 to 32"),
    (server("concurrency: 33"), 3, "server.concurrency", "from 1 to 32"),
    (server("concurrency: '4'"), 3, "server.concurrency", "got the text '4'"),
    (server("verify_tls: 'no'"), 3, "server.verify_tls", "remove the quotes"),
    (server("ca_bundle: /nonexistent/ca.pem"), 3, "server.ca_bundle", "does not exist"),
    (server("token_file: ''"), 3, "server.token_file", "empty"),
    (server("token_file: ~nosuchuser_x9/t"), 3, "server.token_file", "cannot expand ~"),
    (server("token_file: \"a\\0b\""), 3, "server.token_file", "NUL"),
    (server("timeout: !!int abc"), 3, "server.timeout", "cannot read 'abc' as a number"),
    (server("verify_tls: !!bool maybe"), 3, "server.verify_tls", "as true or false"),
    (server("retries: " + "9" * 5000), 3, "server.retries", "too large or malformed"),
    (server("retries: !!binary aGk="), 3, "server.retries", "tagged !!binary"),
    # watch, defaults, state_dir
    (S + "watch:\n  polling: sometimes\n" + M, 4, "watch.polling",
     "expected one of auto, always, never, got the text 'sometimes'"),
    (S + "watch:\n  polling: true\n" + M, 4, "watch.polling", "got true"),
    (S + "watch:\n  debounce: 61\n" + M, 4, "watch.debounce", "from 0s to 1m"),
    (S + "watch:\n  reconcile_interval: 100ms\n" + M, 4, "watch.reconcile_interval", "1s to 168h"),
    (S + "watch:\n  delete: true\n" + M, 4, "watch.delete", "belongs in an entry of mappings:"),
    (S + "watch: [1]\n" + M, 3, "watch", "got a list"),
    (S + "defaults:\n  folder: x\n" + M, 4, "defaults.folder", "belongs in an entry of mappings:"),
    (S + "defaults:\n  delete: 0\n" + M, 4, "defaults.delete", "expected true or false"),
    (S + "defaults:\n  ignore: [[]]\n" + M, 4, "defaults.ignore[0]", "got a list"),
    (S + "state_dir: 3\n" + M, 3, "state_dir", "got 3"),
]
# fmt: on


@pytest.mark.parametrize(("document", "line", "key_path", "fragment"), BAD_DOCUMENTS)
def test_bad_document_names_file_line_and_key(
    document: str, line: int, key_path: str, fragment: str
) -> None:
    message = error_of(document)
    assert message.startswith(f"jatos-sync.yaml:{line}: {key_path}: "), message
    assert fragment in message, message


def test_config_error_exits_with_code_2() -> None:
    assert ConfigError("x").exit_code == EXIT_CONFIG == 2


@pytest.mark.parametrize(
    ("document", "start", "fragment"),
    [
        ("server:\n  url: http://h\n bad: [\n", "jatos-sync.yaml:3:", "YAML syntax error"),
        ("server:\n\turl: x\n", "jatos-sync.yaml:2:1:", "'\\t'"),
        ("a: 'unterminated\n", "jatos-sync.yaml:2:1:", "a quote opened on line 1 is never closed"),
        ("a: *nowhere\n", "jatos-sync.yaml:1:4:", "alias (*) with no anchor (&)"),
        ("a: 1\n---\nb: 2\n", "jatos-sync.yaml:2:1:", "exactly one YAML document"),
        ("a: !!python/object:os.system x\nb: [\n", "jatos-sync.yaml:", "YAML syntax error"),
        ("a: b\x00\n", "jatos-sync.yaml:1:", "U+0000"),
        ("a:\n  b: \x1b\n", "jatos-sync.yaml:2:", "U+001B"),
    ],
)
def test_yaml_syntax_errors_give_line_and_column(document: str, start: str, fragment: str) -> None:
    message = error_of(document)
    assert message.startswith(start), message
    assert fragment in message, message


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (
            "server:\n  url: http://h\n    token_env: X\nmappings: []\n",
            "line 3 is indented more than line 2; keys must line up",
        ),
        (
            "server:\n  url: http://h\nmappings:\n  - name: x\n    folder: a\n   study: 1\n",
            "line 6 is indented 3 spaces and line 5 4; keys of one mapping must line up",
        ),
        (
            "mappings:\n  - folder: a\n  study: 1\n",
            "line 3 lines up with the list above it but does not start with '- '",
        ),
        ("server:\n\turl: http://h\n", "tabs are not allowed in YAML; use spaces"),
        (
            "server:\n  url: http://h: bad\n",
            "the value on line 2 holds ': '; put the value in quotes",
        ),
        (
            "server:\n  url http://h\n  retries: 1\n",
            "line 2 has no ':' after its key, so line 3 reads as part of it",
        ),
        ("mappings: [a, b\nserver: 1\n", "a [ opened on line 1 is not closed with ]"),
    ],
)
def test_yaml_syntax_errors_are_said_plainly(document: str, said: str) -> None:
    message = error_of(document)
    assert said in message, message
    for pyyaml in ("while parsing", "expected <block end>", "block mapping start", "found '?'"):
        assert pyyaml not in message


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "jatos-sync init"),
        ("---\n...\n", "the file is empty"),
        ("- a\n- b\n", "got a list"),
        ("just text\n", "got the text 'just text'"),
        ("42\n", "got 42"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ],
)
def test_documents_that_are_not_a_mapping(document: str, fragment: str) -> None:
    message = error_of(document)
    assert message.startswith("jatos-sync.yaml"), message
    assert fragment in message, message


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    message = error_of("colour: blue\n")
    assert "did you mean" not in message
    assert "server, state_dir, watch, defaults, mappings" in message


def test_unicode_and_huge_values_do_not_crash() -> None:
    text = S + "mappings:\n  - name: Stroop-Über-😀\n    folder: Études/été\n    study: 1\n"
    mapping = parse(text).mappings[0]
    assert mapping.name == "Stroop-Über-😀"
    assert mapping.folder.name == "été"
    message = error_of(S + M + '    name: "\\ud800"\n')
    assert "mappings[0].name" in message
    message = error_of(S + M.replace("study: 1", "study: '" + "1" * 10_000 + "'"))
    assert "mappings[0].study" in message
    assert len(message) < 400  # long values are shortened in messages


# ------------------------------------------------------------------------------------------
# Aliases: allowed, but no alias bombs
# ------------------------------------------------------------------------------------------


def merge_chain(levels: int) -> str:
    """A flow mapping whose merge keys fan out: 2**levels visits from a few bytes per level."""
    chain = "{retries: 1}"
    for level in range(levels):
        chain = f"{{<<: [&a{level} {chain}, *a{level}]}}"
    return chain


def test_alias_bomb_is_stopped_by_the_node_budget() -> None:
    document = f"server:\n  url: http://h\n  <<: {merge_chain(40)}\n" + M  # 2**40 visits
    assert len(document) < 2000
    started = time.monotonic()
    message = error_of(document)
    assert message.startswith("jatos-sync.yaml:3: too many nested aliases"), message
    assert time.monotonic() - started < 30  # generous: the walk ends after NODE_BUDGET visits


def test_moderate_aliasing_is_fine() -> None:
    assert NODE_BUDGET > 4 * 2**8
    config = parse(f"server:\n  url: http://h\n  <<: {merge_chain(8)}\n" + M)
    assert config.server.retries == 1


def test_billion_laughs_where_a_list_of_patterns_is_expected_is_a_plain_type_error() -> None:
    chain = "[lol]"
    for level in range(9):
        chain = f"[&a{level} {chain}" + f", *a{level}" * 8 + "]"  # 9**9 leaves when expanded
    message = error_of(S + M + f"    ignore: {chain}\n")
    assert message.startswith("jatos-sync.yaml:6: mappings[0].ignore[0]: "), message
    assert "got a list" in message


def test_a_very_long_chain_of_merges_is_an_error() -> None:
    links = ["&a0 {retries: 1}"] + [f"&a{i} {{<<: *a{i - 1}}}" for i in range(1, 3000)]
    document = "x: [" + ", ".join(links) + "]\n<<: *a2999\n"
    assert "merge keys (<<) are chained too deeply" in error_of(document)


def test_a_merge_key_that_refers_to_its_own_mapping_is_an_error() -> None:
    document = "server: &s\n  url: http://h\n  <<: *s\n" + M
    message = error_of(document)
    assert "refers to a mapping that contains it" in message
    assert message.startswith("jatos-sync.yaml:")


# ------------------------------------------------------------------------------------------
# The inline token and its permission rule
# ------------------------------------------------------------------------------------------


def inline(token: str) -> str:
    return f"server:\n  url: http://h\n  token: {token}\n" + M


def test_inline_token_is_accepted_from_a_private_file() -> None:
    token = make_token()
    config = parse(inline(token), mode=0o600)
    assert config.server.inline_token == Token(token)
    assert config.server.inline_token is not None
    assert config.server.inline_token.reveal() == token


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o666, 0o601])
def test_inline_token_is_refused_when_group_or_others_have_any_permission(mode: int) -> None:
    token = make_token()
    message = error_of(inline(token), mode=mode)
    assert message.startswith("jatos-sync.yaml:3: server.token: ")
    assert f"mode {mode:04o}" in message
    assert "chmod 600 jatos-sync.yaml" in message
    assert "token_file" in message
    assert token[4:] not in message


def test_a_bad_inline_token_is_reported_without_echoing_it() -> None:
    token = make_token()
    broken = token[:-1] + ("0" if token[-1] != "0" else "1")
    message = error_of(inline(broken))
    assert message.startswith("jatos-sync.yaml:3: server.token: not a valid JATOS API token")
    assert "mistyped or truncated" in message
    assert broken[4:20] not in message


def test_inline_token_of_wrong_type_is_not_echoed() -> None:
    message = error_of(inline("12345678901"))
    assert "12345678901" not in message
    assert "server.token: expected the API token as text" in message


def test_syntax_error_on_the_token_line_does_not_quote_the_line() -> None:
    token = make_token()
    message = error_of(f"server:\n  url: http://h\n  token: {token}: oops\n")
    assert "YAML syntax error" in message
    assert token[4:] not in message


def test_token_pasted_into_token_env_is_not_echoed() -> None:
    token = make_token()
    message = error_of(f"server:\n  url: http://h\n  token_env: {token}\n" + M)
    assert message.startswith("jatos-sync.yaml:3: server.token_env: ")
    assert "looks like the token itself" in message
    assert token[4:] not in message


def test_password_in_url_is_not_echoed() -> None:
    message = error_of("server:\n  url: https://me:hunter2@h/\n" + M)
    assert message.startswith("jatos-sync.yaml:2: server.url: ")
    assert "hunter2" not in message and "must not contain a user name or password" in message
    message = error_of("server:\n  url: ftp://me:hunter2@h/\n" + M)
    assert "hunter2" not in message


def test_reprs_never_show_the_token() -> None:
    token = make_token()
    config = parse(inline(token))
    wrapped = config.server.inline_token
    assert wrapped is not None
    secret = token[4:]
    for text in (
        repr(wrapped),
        str(wrapped),
        f"{wrapped}",
        f"{wrapped!r}",
        f"{wrapped:>60}",
        format(wrapped, "s"),
        "%s" % (wrapped,),  # noqa: UP031 -- the %-operator path must not leak either
        repr(config),
        repr(config.server),
    ):
        assert secret not in text
        assert token[4:10] not in text
    assert repr(wrapped) == "Token(jap_…, 41 chars)"
    assert repr(Token("x" * 12)) == "Token(…, 12 chars)"


def test_tokens_compare_and_hash_by_value() -> None:
    token = make_token()
    assert Token(token) == Token(token)
    assert Token(token) != Token(make_token())
    assert hash(Token(token)) == hash(Token(token))
    assert Token(token) != token  # a Token is not a str
    assert len({parse(inline(token)).server, parse(inline(token)).server}) == 1


# ------------------------------------------------------------------------------------------
# token_file in the configuration
# ------------------------------------------------------------------------------------------


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_token_file_from_the_config_is_relative_to_the_config(tmp_path: Path) -> None:
    token = make_token()
    write_private(tmp_path / "secret" / "token", token + "\n")
    text = "server:\n  url: http://h\n  token_file: secret/token\n" + M
    config = parse(text, path=tmp_path / "jatos-sync.yaml")
    assert load_token(config.server, environ={}).reveal() == token


# ------------------------------------------------------------------------------------------
# load_config: the file itself
# ------------------------------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "jatos-sync.yaml"
    path.write_text(README_EXAMPLE, encoding="utf-8")
    config = load_config(path)
    assert config.path == path
    assert config.mappings[0].folder == tmp_path / "sample-project"


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "jatos-sync.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: no such configuration file")
    assert "jatos-sync init" in str(info.value)


def test_a_path_through_a_file_is_reported_with_the_os_reason(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "c.yaml"
    with pytest.raises(ConfigError, match=f"^{path}: cannot be read: not a directory"):
        load_config(path)


def test_key_that_looks_like_a_token_is_not_echoed() -> None:
    token = make_token()
    message = error_of(f"server:\n  url: http://h\n  {token}: 1\n" + M)
    assert message.startswith("jatos-sync.yaml:3: server")
    assert token[4:] not in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"server:\n  url: http://h\n  # caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:3: not valid UTF-8 (byte 0xe9 in column 8)")


def test_file_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path).server.url == "https://jatos.example.org"


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"#" * (1024 * 1024 + 10))
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX, not root")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match=f"^{path}: cannot be read: permission denied"):
            load_config(path)
    finally:
        path.chmod(0o600)


@pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX")
def test_load_config_applies_the_inline_token_rule_to_the_real_file_mode(tmp_path: Path) -> None:
    token = make_token()
    path = tmp_path / "c.yaml"
    path.write_text(inline(token))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(path)
    path.chmod(0o600)
    assert load_config(path).server.inline_token == Token(token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ------------------------------------------------------------------------------------------
# select() and default_config_path()
# ------------------------------------------------------------------------------------------

THREE = (
    S
    + """\
mappings:
  - folder: a
    study: 1
  - folder: b
    study: 2
  - folder: c
    study: 3
"""
)


def test_select_by_name_keeps_file_order() -> None:
    config = parse(THREE)
    assert [m.name for m in config.select(["c", "a", "c"])] == ["a", "c"]
    assert config.select([]) == config.mappings


def test_select_unknown_name_lists_the_known_ones() -> None:
    config = parse(THREE)
    with pytest.raises(ConfigError) as info:
        config.select(["a", "x", "y"])
    message = str(info.value)
    assert "no mappings named 'x', 'y'" in message
    assert "'a', 'b', 'c'" in message


def test_default_config_path() -> None:
    assert default_config_path({}) == Path("jatos-sync.yaml")
    assert default_config_path({"JATOS_SYNC_CONFIG": ""}) == Path("jatos-sync.yaml")
    assert default_config_path({"JATOS_SYNC_CONFIG": "/etc/j.yaml"}) == Path("/etc/j.yaml")


# ------------------------------------------------------------------------------------------
# Properties: anything in, a Config or a ConfigError out
# ------------------------------------------------------------------------------------------


YAML_ISH = st.text(alphabet=st.sampled_from(list("\n\t :-[]{}&*!|>'\"#%@`,?<~.\\01289aejpstu")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | YAML_ISH)
def test_arbitrary_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        result = parse(text, path=Path("/nonexistent-dir/jatos-sync.yaml"))
    except ConfigError as exc:
        message = str(exc)
    else:
        assert isinstance(result, Config)
        return
    assert message.startswith("/nonexistent-dir/jatos-sync.yaml")


KEYS = [
    "server", "url", "token_env", "token_file", "token", "timeout", "retries", "concurrency",
    "verify_tls", "ca_bundle", "state_dir", "watch", "debounce", "delete_delay",
    "reconcile_interval", "polling", "poll_interval", "defaults", "mappings", "name", "folder",
    "study", "ignore", "delete", "backup", "max_delete", "max_delete_percent", "<<",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        ["http://h", "42", "30s", "auto", "*.psd", "5b1cf0a6-2c33-4a8e-9a43-4e0e5c3d8f21"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_arbitrary_structured_documents_give_a_config_or_a_config_error(document: object) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        result = parse(text, path=Path("/nonexistent-dir/jatos-sync.yaml"))
    except ConfigError as exc:
        message = str(exc)
    else:
        assert isinstance(result, Config)
        return
    assert message.startswith("/nonexistent-dir/jatos-sync.yaml")


# ------------------------------------------------------------------------------------------
# Every declared limit is enforced and reported, for keys added later too
# ------------------------------------------------------------------------------------------

SECTIONS = {
    "server": (spec.Server, server),
    "watch": (spec.Watch, None),
    "mappings[0]": (spec.Mapping, mapping),
}
LIMITED = [
    (section, name, spec.limits(field.type))
    for section, (struct, _) in SECTIONS.items()
    for name, field in spec.fields(struct).items()
    if spec.limits(field.type) != (None, None)
]


@pytest.mark.parametrize(("section", "name", "limits"), LIMITED)
def test_every_declared_limit_is_enforced_with_file_line_and_key(
    section: str, name: str, limits: tuple[float, float | None]
) -> None:
    low, high = limits
    value = int(high * 2) if high is not None else int(low) - 1
    if section == "watch":
        document, line = S + f"watch:\n  {name}: {value}\n" + M, 4
    else:
        write = SECTIONS[section][1]
        assert write is not None
        document, line = write(f"{name}: {value}"), 3 if section == "server" else 6
        if name == "study":  # the mapping has one already: replace it
            document, line = study(str(value)), 5
    message = error_of(document)
    assert message.startswith(f"jatos-sync.yaml:{line}: {section}.{name}: expected "), message
    assert message.endswith(f", got {value}"), message
    assert len(LIMITED) >= 10  # retries, concurrency, timeout, 4 watch durations, 2 deletion
    # limits, study


# ------------------------------------------------------------------------------------------
# Every declared path is relative to the file, for keys added later too
# ------------------------------------------------------------------------------------------

DECLARED_PATHS = [
    (section, name)
    for section, struct in {"": spec.File, **{s: v[0] for s, v in SECTIONS.items()}}.items()
    for name, field in spec.fields(struct).items()
    if spec.info(field.type).get("form") == "path"
]


@pytest.mark.parametrize(("section", "name"), DECLARED_PATHS)
def test_every_declared_path_is_relative_to_the_file_and_public_as_a_path(
    tmp_path: Path, section: str, name: str
) -> None:
    (tmp_path / "lab" / "sub").mkdir(parents=True)
    (tmp_path / "lab" / "sub" / "x").write_text("")  # ca_bundle must exist
    line = f"{name}: ./sub/../sub/x"
    if not section:
        document = S + line + "\n" + M
    elif section == "server":
        document = server(line)
    elif name == "folder":
        document = S + M.replace("folder: a", line)
    else:
        document = mapping(line)
    config = parse(document, path=tmp_path / "lab" / "jatos-sync.yaml")
    holder = {"": config, "server": config.server, "mappings[0]": config.mappings[0]}[section]
    assert getattr(holder, name) == tmp_path / "lab" / "sub" / "x"
    assert len(DECLARED_PATHS) >= 4  # token_file, ca_bundle, folder, state_dir
